"""A deterministic stand-in for an embeddings model: one dimension per topic, fed by the topic's
words (including synonyms no stemmer joins), so tests decide exactly which rows are "close".
The real model is tested on its own (tests/test_embeddings.py) and in the paraphrase tests."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

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
