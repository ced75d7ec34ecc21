"""Small text helpers the agents share: turning a model's plain text into payload fields, and
turning untrusted text into a memory search."""

from __future__ import annotations

import html
import re

# Common English words that would make every memory row match (the full-text search drops its own
# stop words too, but these carry no topic either).
_FILLER = frozenset({
    "about", "after", "again", "also", "because", "been", "before", "being", "between", "could", "does",
    "doing", "from", "have", "having", "here", "hello", "into", "just", "like", "more", "most", "much",
    "need", "needs", "only", "other", "over", "please", "same", "should", "some", "such", "than",
    "that", "their", "them", "then", "there", "these", "they", "this", "those", "thanks", "through",
    "under", "very", "want", "wants", "were", "what", "when", "where", "which", "while", "will", "with",
    "would", "your", "yours", "youre", "dont", "cant", "wont", "isnt",
})
_WORD = re.compile(r"[a-z0-9]+")


def one_line(text: str, limit: int) -> str:
    """A subject or title: whitespace (newlines included) collapsed, cut to `limit` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "\u2026"


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "\u2026"


def email_html(body: str) -> str:
    """Plain text as simple HTML: escaped (the model's words are never markup), a paragraph per
    blank-line-separated block, line breaks kept."""
    blocks = [block.strip() for block in re.split(r"\n\s*\n", body.strip()) if block.strip()]
    return "".join(f"<p>{html.escape(block).replace(chr(10), '<br>')}</p>" for block in blocks)


def search_words(text: str, *, limit: int = 12) -> str:
    """A full-text query from untrusted text: its distinctive words joined by `or`, so a row
    matching some of them ranks (websearch syntax would otherwise need every word). Only letters
    and digits survive, so the text cannot inject search operators."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(text.lower()):
        if len(word) >= 4 and word not in _FILLER and not word.isdigit():
            seen.setdefault(word)
        if len(seen) >= limit:
            break
    return " or ".join(seen)
