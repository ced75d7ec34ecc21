"""schema.sql's layout: the contents list names the sections as their headers do, and only §2
changes what an earlier release created (tests/test_upgrade.py checks that it does so correctly)."""

from __future__ import annotations

import re

from app.core.database import schema_sql

CONTENTS_LINE = re.compile(r"^--\s+§(\d+)\s+(.+?)\s*$")
HEADER = re.compile(r"^-- §(\d+) (.+?)\s*$")
RULE = "-- " + "-" * 93
# Top-level statements that change an existing object: only §2 may hold them.
CHANGES = re.compile(r"^(alter|drop|update|delete|truncate)\b", re.IGNORECASE)
GUARDED = re.compile(r"^(alter table if exists \w+ add column if not exists |drop function if exists )", re.IGNORECASE)


def contents() -> list[tuple[int, str]]:
    lines = schema_sql().splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith("-- Contents"))
    entries = []
    for line in lines[start + 2 :]:
        match = CONTENTS_LINE.match(line)
        if match is None:
            break
        entries.append((int(match[1]), match[2]))
    return entries


def sections() -> list[tuple[int, str, list[str]]]:
    """(number, title, the section's lines) for each `-- §N Title` header that opens a section."""
    lines = schema_sql().splitlines()
    found: list[tuple[int, str, list[str]]] = []
    for index, line in enumerate(lines):
        match = HEADER.match(line)
        if match is not None and lines[index - 1] == RULE:
            found.append((int(match[1]), match[2], []))
        elif found:
            found[-1][2].append(line)
    return found


def test_the_contents_list_and_the_section_headers_agree() -> None:
    listed = contents()
    headers = [(number, title) for number, title, _ in sections()]
    assert listed, "schema.sql opens with a contents list"
    assert headers == listed
    assert [number for number, _ in headers] == list(range(1, len(headers) + 1))


def test_every_section_header_is_ruled_above_and_below() -> None:
    lines = schema_sql().splitlines()
    for index, line in enumerate(lines):
        if HEADER.match(line) and lines[index - 1] == RULE:
            following = lines[index + 1 :]
            closing = next(i for i, text in enumerate(following) if not text.startswith("--") or text == RULE)
            assert following[closing] == RULE, f"the header of {line!r} is not closed by a rule"


def test_only_the_upgrade_section_changes_what_exists_and_every_change_there_is_guarded() -> None:
    by_section = {number: body for number, _, body in sections()}
    assert by_section, "schema.sql has numbered sections"
    upgrades = [number for number, title, _ in sections() if title == "Upgrades from earlier releases"]
    assert upgrades == [2]
    for number, body in by_section.items():
        changes = [line for line in body if CHANGES.match(line)]
        if number == 2:
            assert changes, "§2 holds the upgrade statements"
            assert [line for line in changes if not GUARDED.match(line)] == []
        else:
            assert changes == [], f"§{number} changes existing objects: move them to §2"
    # `do` blocks outside §2 only where nothing an earlier release made is changed
    blocks = {number for number, body in by_section.items() if any(line.startswith("do $$") for line in body)}
    assert blocks <= {1, 2, 20}, blocks  # §20 Access: grants and row level security, guarded
