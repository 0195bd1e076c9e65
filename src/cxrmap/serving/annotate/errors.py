"""Errors of the annotation workflow, each with the HTTP status and stable code the API answers with."""

from __future__ import annotations

from cxrmap.core.errors import CxrmapError


class WorkflowError(CxrmapError):
    """A request the workflow refuses (unknown project, a stage that cannot start yet, a bad submission).

    Args:
        message: what was expected, what came, how to fix it (never a candidate's origin).
        status: the HTTP status the API answers with (404, 409, 422...).
        code: a short stable identifier, e.g. ``"already_submitted"``.
    """

    def __init__(self, message: str, status: int = 409, code: str = "conflict") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def not_found(what: str) -> WorkflowError:
    return WorkflowError(f"{what} was not found (or is not yours)", 404, "not_found")
