"""Moved to `integrations.untrusted`, the floor both the integrations and the app clean outside text
with. Temporary, for the merge with the app/ package move (branch a13): the integrator points these
imports at `integrations.untrusted` and deletes this module."""

from integrations.untrusted import (
    Storable,
    UnusableJson,
    first_problem,
    json_safe,
    storable,
    storable_text,
    strict_json,
    validation_errors,
)

__all__ = [
    "Storable",
    "UnusableJson",
    "first_problem",
    "json_safe",
    "storable",
    "storable_text",
    "strict_json",
    "validation_errors",
]
