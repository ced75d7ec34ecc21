"""What an action kind is: its payload shape, editable fields, facts the policy must assume whatever
the caller says, what an edit may not change, and the handler that performs it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from app.core.errors import InvalidInput
from app.core.models import Impact
from app.kinds.context import HandlerContext
from integrations.untrusted import validation_errors


def impact_as_given(payload: Mapping[str, Any], impact: Impact) -> Impact:
    return impact


def any_edit(before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
    """Every edit of the editable fields is fine: nothing in them carries a fact."""


@dataclass(frozen=True)
class ActionKind:
    name: str
    description: str
    payload_model: type[BaseModel]
    handler: Callable[[HandlerContext], dict[str, Any]]
    editable: frozenset[str] = frozenset()
    always_public: bool = False
    always_irreversible: bool = False
    # facts only the payload shows (a deal stage moving backwards is irreversible): computed by
    # code at submission, so the policy never relies on the caller's word for them
    impact_for: Callable[[Mapping[str, Any], Impact], Impact] = impact_as_given
    # an edit that would make the draft's text and its facts disagree raises InvalidInput, naming
    # the field (a task's text given money it does not carry); given the draft before and after
    check_edit: Callable[[Mapping[str, Any], Mapping[str, Any]], None] = any_edit

    def validate_payload(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        try:
            return self.payload_model.model_validate(payload).model_dump(mode="json")
        except ValidationError as exc:
            raise InvalidInput(
                f"payload does not fit {self.name}",
                details={"errors": validation_errors(exc)},
            ) from exc

    def enforce(self, impact: Impact) -> Impact:
        """A caller can make an action riskier, never less risky than its kind is."""
        return impact.model_copy(
            update={
                "public": impact.public or self.always_public,
                "reversible": impact.reversible and not self.always_irreversible,
            }
        )
