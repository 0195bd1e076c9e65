"""User-facing errors.

Every error a user can cause (bad data, bad options, missing files) is a :class:`CxrmapError` whose
message says what was expected, what came, and how to fix it. The CLI prints these without a traceback.

The classes say what kind of refusal an error is (not found, not allowed, in conflict, too large...), never
how a server answers it: the web servers map each kind to an HTTP status in one place
(:mod:`cxrmap.serving.http.errors`). Each error also carries a short stable ``code`` (default: its class's),
e.g. ``"already_submitted"``, for programs that react to one reason.
"""

from __future__ import annotations


class CxrmapError(Exception):
    """Base class of all errors caused by input or configuration, not by a bug.

    Args:
        message: what was expected, what came, and how to fix it.
        code: a short stable identifier of the reason (default: the class's :attr:`code`).
    """

    code = "invalid_request"

    def __init__(self, message: str = "", *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class DataError(CxrmapError):
    """An image, mask, folder or manifest that cannot be used as it is."""


class ModelError(CxrmapError):
    """An unknown architecture or encoder, a wrong weights file, an input the model cannot take."""


class CheckpointError(CxrmapError):
    """A checkpoint that is missing, truncated, corrupt or from another architecture."""


class OptionError(CxrmapError):
    """A command-line option or argument that is malformed, out of range or not usable on this machine."""


class MalformedRequestError(CxrmapError):
    """A request that is empty or cut wrong before its content can be judged (an empty upload)."""

    code = "bad_request"


class NotFoundError(CxrmapError):
    """Something asked for by name or id that does not exist (or that the asker may not know of)."""

    code = "not_found"


class AuthenticationError(CxrmapError):
    """Who is asking is unknown: not logged in, a session that expired, a wrong password at login."""

    code = "not_authenticated"


class PermissionDeniedError(CxrmapError):
    """The asker is known but may not do this (wrong role, missing CSRF token, wrong current password)."""

    code = "forbidden"


class ConflictError(CxrmapError):
    """A request that clashes with the current state: a name taken, a job running, a review submitted."""

    code = "conflict"


class TooLargeError(DataError):
    """An input over a size limit: an image's declared pixel count, a request body, a draft."""

    code = "too_large"


class UnsupportedFormatError(DataError):
    """A file in a format that is not read at all (told by its content, never by its name)."""

    code = "unsupported_format"


class RetryLaterError(CxrmapError):
    """A request refused for now, that may succeed after ``retry_after`` seconds.

    Args:
        message: why, and when to retry.
        retry_after: seconds to wait before retrying.
        code: as for :class:`CxrmapError`.
    """

    def __init__(self, message: str = "", *, retry_after: int, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = int(retry_after)


class RateLimitedError(RetryLaterError):
    """Too many attempts from one account or address (failed logins)."""

    code = "too_many_requests"


class BusyError(RetryLaterError):
    """Every worker and queue place is taken; the work was not started."""

    code = "busy"
