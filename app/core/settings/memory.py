"""The memory part: embeddings (app.memory.store, integrations.embeddings), search tuning and
retention. `MemoryStore` makes its embedder itself, lazily, from `embeddings_config()`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, NonNegativeInt, PositiveInt, field_validator, model_validator
from pydantic_settings import NoDecode

from app.core import setting_values as values
from app.core.settings.part import HttpUrl, Secret, SettingsPart, rule_broken

if TYPE_CHECKING:
    from integrations.embeddings import EmbeddingsConfig

RETENTION_DAYS: dict[str, int] = {
    "decision": 2557,
    "feedback": 2557,
    "action": 1095,
    "email_sent": 1095,
    "ticket": 1095,
    "report": 1095,
    "note": 1095,
}


class MemorySettings(SettingsPart):
    part: ClassVar[str] = "memory"
    always_on: ClassVar[bool] = True

    # unset: local (all-MiniLM-L6-v2 on ONNX Runtime, in the base install), or none when its
    # packages are missing (full-text search only); voyage and openai need their API key (below)
    embeddings_provider: Literal["local", "voyage", "openai", "none"] | None = None
    embeddings_model: str | None = None  # voyage-3.5 / text-embedding-3-small when unset
    embeddings_dimension: int | None = Field(None, ge=1, le=2000)  # HNSW indexes `vector` up to 2,000
    embeddings_batch_size: int = Field(64, ge=1, le=1000)
    embeddings_max_chars: int = Field(8000, ge=100, le=200_000)  # per text; the rest is not embedded
    embeddings_timeout_seconds: float = Field(30.0, gt=0)
    embeddings_query_timeout_seconds: float = Field(5.0, gt=0)  # a search's query: one try, then full text
    voyage_api_key: Secret = None
    voyage_base_url: HttpUrl = "https://api.voyageai.com/v1"
    openai_api_key: Secret = None
    openai_base_url: HttpUrl = "https://api.openai.com/v1"
    memory_search_candidates: int = Field(30, ge=1, le=1000)  # rows each method brings to the fusion
    memory_rrf_k: PositiveInt = 60
    memory_fts_weight: float = Field(1.0, ge=0)
    memory_vector_weight: float = Field(1.0, ge=0)
    memory_hnsw_ef_search: int = Field(100, ge=1, le=1000)
    memory_fts_rank_limit: int = Field(200, ge=10, le=100_000)  # more matches: rank the newest only
    memory_embed_interval_seconds: float = Field(60.0, gt=0)
    # kinds often searched on their own get a partial HNSW index each (comma-separated)
    memory_vector_index_kinds: Annotated[list[str], NoDecode, BeforeValidator(values.memory_kinds)] = Field(
        default_factory=lambda: ["kb_article", "decision", "feedback", "ticket", "report"]
    )
    # days per kind, merged over these defaults ("ticket=365,email_sent=0"); 0 keeps forever
    memory_retention_days: Annotated[dict[str, NonNegativeInt], NoDecode] = Field(
        default_factory=lambda: dict(RETENTION_DAYS)
    )
    audit_retention_days: NonNegativeInt = 2557  # 7 years; 0 keeps the audit log forever
    memory_archive_dir: Path | None = None  # <data dir>/archive when unset

    @field_validator("memory_retention_days", mode="before")
    @classmethod
    def _retention_days(cls, value: object) -> object:
        return values.retention_days(value, defaults=RETENTION_DAYS)

    @model_validator(mode="after")
    def _provider_has_its_key(self) -> Any:
        # after the fields: the keys are shown after the provider, so a field validator could not see them
        provider = self.embeddings_provider
        if provider in ("voyage", "openai") and getattr(self, f"{provider}_api_key") is None:
            raise rule_broken(f"{provider} needs {provider.upper()}_API_KEY", "embeddings_provider")
        return self

    def embeddings_config(self) -> EmbeddingsConfig:
        from integrations.embeddings import EmbeddingsConfig

        return EmbeddingsConfig(
            provider=self.embeddings_provider,
            model=self.embeddings_model,
            dimension=self.embeddings_dimension,
            batch_size=self.embeddings_batch_size,
            max_chars=self.embeddings_max_chars,
            timeout_seconds=self.embeddings_timeout_seconds,
            query_timeout_seconds=self.embeddings_query_timeout_seconds,
            voyage_api_key=self.voyage_api_key,
            voyage_base_url=self.voyage_base_url,
            openai_api_key=self.openai_api_key,
            openai_base_url=self.openai_base_url,
        )
