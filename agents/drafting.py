"""Small text helpers the agents share: turning a model's plain text into payload fields, turning
untrusted text into a memory search, and finding addresses and links no trusted source gave."""

from __future__ import annotations

import html
import re
from collections.abc import Iterable

from app.core.models import Reason, Tier
from app.core.settings import Settings
from app.memory.models import SearchHit

# Memory kinds the business writes itself: a link or address in one may appear in outbound text.
# Every other kind (tickets, replies, CRM notes, decisions quoting drafts) holds outsiders' words.
BUSINESS_WRITTEN_KINDS = frozenset({"kb_article"})

# Common English words that would make every memory row match (the full-text search drops its own
# stop words too, but these carry no topic either).
_FILLER = frozenset(
    {
        "about",
        "after",
        "again",
        "also",
        "because",
        "been",
        "before",
        "being",
        "between",
        "could",
        "does",
        "doing",
        "from",
        "have",
        "having",
        "here",
        "hello",
        "into",
        "just",
        "like",
        "more",
        "most",
        "much",
        "need",
        "needs",
        "only",
        "other",
        "over",
        "please",
        "same",
        "should",
        "some",
        "such",
        "than",
        "that",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "thanks",
        "through",
        "under",
        "very",
        "want",
        "wants",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "will",
        "with",
        "would",
        "your",
        "yours",
        "youre",
        "dont",
        "cant",
        "wont",
        "isnt",
    }
)
_WORD = re.compile(r"[a-z0-9]+")
MAX_SEARCH_WORD = 40
# What a reader could write to or follow: an email address, or a link with a scheme or "www.".
# Bare domains ("example.com") are left alone: too much ordinary text looks like one.
_CONTACT_POINT = re.compile(
    r"[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)+"
    r"|\b(?:https?://|ftp://|www\.)[^\s<>\"'()\[\]{}]+",
    re.IGNORECASE,
)


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
        # a "word" longer than any real one (a pasted token, a key, 200,000 x's) is no topic, and
        # would make the search too long to run
        if 4 <= len(word) <= MAX_SEARCH_WORD and word not in _FILLER and not word.isdigit():
            seen.setdefault(word)
        if len(seen) >= limit:
            break
    return " or ".join(seen)


def contact_points(text: str) -> set[str]:
    """The email addresses and links in `text`, lowercased, without trailing punctuation."""
    return {match.rstrip(".,;:!?'\"").lower() for match in _CONTACT_POINT.findall(text)}


def unsourced_contact_points(written: str, trusted: Iterable[str]) -> list[str]:
    """Addresses and links in model-written text that none of the `trusted` texts contains: the
    model made them up, or was told to by the data it read."""
    known = set().union(*(contact_points(text) for text in trusted))
    return sorted(contact_points(written) - known)


def business_written(hits: Iterable[SearchHit]) -> list[str]:
    """The texts among memory's `hits` that the business wrote itself (BUSINESS_WRITTEN_KINDS),
    each with its own address: the only memory a link or address in outbound text may come from."""
    return [
        f"{hit.title}\n{hit.content or hit.snippet}\n{hit.metadata.get('url') or ''}"
        for hit in hits
        if hit.kind in BUSINESS_WRITTEN_KINDS
    ]


def unsourced_flags(settings: Settings, written: str, trusted: Iterable[str]) -> list[Reason]:
    """A MEDIUM flag, for the reviewer, when model-written text has an email address or link that
    no trusted source gives: the business's own settings (brand voice, sender) and the `trusted`
    texts, which only ever hold what the business wrote (its knowledge-base articles). What
    customers and CRM users wrote (tickets, their replies, CRM records and notes) is never
    trusted, even when the model was shown it: a link planted there is exactly what this catches.
    The prompt forbids inventing them; this is where code checks it."""
    found = unsourced_contact_points(written, [*trusted, settings.brand_voice, settings.brevo_sender_email or ""])
    if not found:
        return []
    shown = ", ".join(clip(point, 80) for point in found[:5])
    if len(found) > 5:
        shown += f" and {len(found) - 5} more"
    return [
        Reason(
            dimension="content",
            tier=Tier.MEDIUM,
            detail=f"the draft has an address or link the data did not give: {shown}",
        )
    ]
