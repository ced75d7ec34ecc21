"""Notion's block JSON both ways, as pure functions: markdown-ish text into blocks that stay under
Notion's request limits, and page properties and blocks back into plain text."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

TEXT_LIMIT = 2000  # characters per rich-text item, counted in UTF-16 units as Notion does
RICH_TEXT_ITEMS = 100  # items per rich_text array
CHILDREN_PER_REQUEST = 100  # blocks per create or append request
REQUEST_BYTES = 400_000  # blocks' JSON per request: under Notion's 500 KB cap, with room for the rest

Block = dict[str, Any]


# --- the body as blocks --------------------------------------------------------------------------
def text_pieces(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Cut text into pieces of at most `limit` UTF-16 units, never inside a character."""
    pieces: list[str] = []
    start = units = 0
    for index, char in enumerate(text):
        width = 2 if ord(char) > 0xFFFF else 1
        if units + width > limit:
            pieces.append(text[start:index])
            start, units = index, 0
        units += width
    pieces.append(text[start:])
    return pieces


def rich_text(text: str) -> list[Block]:
    return [{"type": "text", "text": {"content": piece}} for piece in text_pieces(text)]


def _text_blocks(kind: str, text: str, **extra: Any) -> list[Block]:
    """One block, or several of the same kind when the text needs more than 100 rich-text items."""
    items = rich_text(text)
    return [
        {"object": "block", "type": kind, kind: {"rich_text": items[i : i + RICH_TEXT_ITEMS], **extra}}
        for i in range(0, len(items), RICH_TEXT_ITEMS)
    ]


_LINE_KINDS = (
    ("### ", "heading_3"),
    ("## ", "heading_2"),
    ("# ", "heading_1"),
    ("- ", "bulleted_list_item"),
    ("* ", "bulleted_list_item"),
    ("> ", "quote"),
)
_NUMBERED = re.compile(r"^\d+[.)]\s+(.+)$")


def body_blocks(body: str) -> list[Block]:
    """Markdown-ish text as Notion blocks: #/##/### headings, - or * bullets, 1. numbered items,
    > quotes, ``` code fences, --- dividers; other lines form paragraphs split by blank lines."""
    blocks: list[Block] = []
    paragraph: list[str] = []
    code: list[str] | None = None

    def flush() -> None:
        if paragraph:
            blocks.extend(_text_blocks("paragraph", "\n".join(paragraph)))
            paragraph.clear()

    for line in body.splitlines():
        stripped = line.strip()
        if code is not None:
            if stripped.startswith("```"):
                blocks.extend(_text_blocks("code", "\n".join(code), language="plain text"))
                code = None
            else:
                code.append(line)
            continue
        if stripped.startswith("```"):
            flush()
            code = []
        elif not stripped:
            flush()
        elif stripped in ("---", "***"):
            flush()
            blocks.append({"object": "block", "type": "divider", "divider": {}})
        elif kind := next((k for prefix, k in _LINE_KINDS if stripped.startswith(prefix)), None):
            flush()
            blocks.extend(_text_blocks(kind, stripped.split(" ", 1)[1].strip()))
        elif numbered := _NUMBERED.match(stripped):
            flush()
            blocks.extend(_text_blocks("numbered_list_item", numbered.group(1)))
        else:
            paragraph.append(line.rstrip())
    if code is not None:  # an unclosed fence keeps its text
        blocks.extend(_text_blocks("code", "\n".join(code), language="plain text"))
    flush()
    return blocks


def request_batches(blocks: list[Block]) -> Iterator[list[Block]]:
    """Blocks grouped under Notion's limits per request: 100 children and the payload size."""
    batch: list[Block] = []
    size = 0
    for block in blocks:
        block_size = len(json.dumps(block, ensure_ascii=False).encode())
        if batch and (len(batch) == CHILDREN_PER_REQUEST or size + block_size > REQUEST_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(block)
        size += block_size
    if batch:
        yield batch


# --- reading pages as text -----------------------------------------------------------------------
def plain_text(rich_text: list[Block] | None) -> str:
    return "".join(item.get("plain_text") or item.get("text", {}).get("content", "") for item in rich_text or [])


def property_text(prop: Block) -> str:
    """A page property's value as text ('' for the kinds that carry none worth indexing)."""
    kind = prop.get("type", "")
    value = prop.get(kind)
    if value is None:
        return ""
    if kind in ("title", "rich_text"):
        return plain_text(value)
    if kind in ("select", "status"):
        return str(value.get("name", ""))
    if kind == "multi_select":
        return ", ".join(option.get("name", "") for option in value)
    if kind == "people":
        return ", ".join(person.get("name") or "" for person in value)
    if kind == "date":
        return " to ".join(part for part in (value.get("start"), value.get("end")) if part)
    if kind == "checkbox":
        return "yes" if value else "no"
    if kind in ("number", "url", "email", "phone_number"):
        return str(value)
    if kind == "formula":
        result = value.get(value.get("type", ""))
        return "" if result is None else str(result)
    return ""


_BLOCK_PREFIX = {
    "heading_1": "# ",
    "heading_2": "## ",
    "heading_3": "### ",
    "bulleted_list_item": "- ",
    "numbered_list_item": "1. ",
    "quote": "> ",
    "to_do": "[ ] ",
    "toggle": "",
    "callout": "",
}


def block_text(block: Block) -> str:
    kind = block.get("type", "")
    data = block.get(kind) or {}
    if kind == "table_row":
        return " | ".join(plain_text(cell) for cell in data.get("cells", []))
    if kind == "to_do" and data.get("checked"):
        return "[x] " + plain_text(data.get("rich_text"))
    if kind in _BLOCK_PREFIX or kind in ("paragraph", "code"):
        text = plain_text(data.get("rich_text"))
        return _BLOCK_PREFIX.get(kind, "") + text if text else ""
    return ""
