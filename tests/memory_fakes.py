"""A deterministic stand-in for an embeddings model: one dimension per topic, fed by the topic's
words (including synonyms no stemmer joins), so tests decide exactly which rows are "close".
The real model is tested on its own (tests/test_embeddings.py) and in the paraphrase tests."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence

import numpy as np

from integrations.embeddings import EmbeddingSpec

TOPICS: tuple[frozenset[str], ...] = (
    frozenset({"shipping", "ship", "ships", "delivery", "deliver", "courier", "parcel", "arrive", "arrives"}),
    frozenset({"refund", "refunds", "money", "reimburse", "return", "returns"}),
    frozenset({"warranty", "guarantee", "defect", "defects", "repair"}),
    frozenset({"invoice", "billing", "payment", "pay"}),
    frozenset({"newsletter", "campaign", "email", "subscribers"}),
)


class WordTopicEmbedder:
    def __init__(self, model: str = "word-topics", dimension: int = 8) -> None:
        assert dimension > len(TOPICS)
        self.spec = EmbeddingSpec("local", model, dimension)
        self.calls: list[list[str]] = []

    def vector(self, text: str) -> list[float]:
        words = re.findall(r"[a-z]+", text.lower())
        values = [float(sum(word in topic for word in words)) for topic in TOPICS]
        values += [0.0] * (self.spec.dimension - len(TOPICS) - 1) + [0.05]  # never the zero vector
        norm = math.sqrt(sum(value * value for value in values))
        return [value / norm for value in values]

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        return [self.vector(text) for text in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.vector(text)

    def close(self) -> None:
        """Nothing to release."""


class SeededEmbedder:
    """Random unit vectors of any spec, the same for the same text (the shape of a real model's
    output, without its cost); `fail_after` batches it raises, as a crash or an outage would."""

    def __init__(self, spec: EmbeddingSpec, *, fail_after: int | None = None) -> None:
        self.spec = spec
        self.batches = 0
        self.fail_after = fail_after

    def vector(self, text: str) -> list[float]:
        rng = np.random.default_rng(int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big"))
        values = rng.standard_normal(self.spec.dimension)
        return (values / np.linalg.norm(values)).tolist()

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        if self.fail_after is not None and self.batches >= self.fail_after:
            raise RuntimeError("the embedding process died")
        self.batches += 1
        return [self.vector(text) for text in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.vector(text)

    def close(self) -> None:
        """Nothing to release."""
