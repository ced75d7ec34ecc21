"""The one registry of action kinds: every kind opsdesk can run, by name. A new kind is one entry
in `KINDS` (and its module beside the others)."""

from __future__ import annotations

from collections.abc import Mapping

from app.core.errors import InvalidInput
from app.kinds.base import ActionKind
from app.kinds.builtin import BUILTIN_KINDS
from app.kinds.email import EMAIL_KINDS
from app.kinds.hubspot import HUBSPOT_KINDS
from app.kinds.notion import NOTION_KINDS
from app.kinds.social import SOCIAL_KINDS

KINDS: tuple[ActionKind, ...] = (*BUILTIN_KINDS, *EMAIL_KINDS, *HUBSPOT_KINDS, *NOTION_KINDS, *SOCIAL_KINDS)


def kind_registry() -> dict[str, ActionKind]:
    """A fresh mapping each call: a caller may add or replace kinds in its own copy."""
    return {kind.name: kind for kind in KINDS}


def lookup(kinds: Mapping[str, ActionKind], name: str) -> ActionKind:
    try:
        return kinds[name]
    except KeyError:
        raise InvalidInput(f"unknown action kind {name!r}", details={"known_kinds": sorted(kinds)}) from None
