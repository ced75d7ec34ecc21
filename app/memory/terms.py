"""Memory's vocabulary without its models: the search modes and what a kind may be called, for
the command line to offer before anything heavier is imported (app.memory.models uses them)."""

from __future__ import annotations

from typing import Literal

SearchMode = Literal["fts", "vector", "hybrid"]
KIND_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"
