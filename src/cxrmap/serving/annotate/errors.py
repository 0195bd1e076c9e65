"""Errors of the annotation workflow: what kind of refusal each is (see :mod:`cxrmap.core.errors`), with a
stable code; :mod:`cxrmap.serving.http.errors` alone decides the HTTP status each kind gets."""

from __future__ import annotations

from cxrmap.core.errors import ConflictError, CxrmapError, NotFoundError


class WorkflowError(CxrmapError):
    """A setting or submission the workflow refuses (a bad fold count, an unknown candidate token...).

    The message says what was expected, what came and how to fix it, and never names a candidate's origin.
    """


class WorkflowConflict(WorkflowError, ConflictError):
    """A request the project's state forbids now: a stage job running, a review already submitted."""


def not_found(what: str) -> NotFoundError:
    """The refusal for an unknown id, worded so that it does not tell "absent" from "not yours"."""
    return NotFoundError(f"{what} was not found (or is not yours)")
