"""User-facing errors.

Every error a user can cause (bad data, bad options, missing files) is a :class:`CxrmapError` whose
message says what was expected, what came, and how to fix it. The CLI prints these without a traceback.
"""


class CxrmapError(Exception):
    """Base class of all errors caused by input or configuration, not by a bug."""


class DataError(CxrmapError):
    """An image, mask, folder or manifest that cannot be used as it is."""


class ModelError(CxrmapError):
    """An unknown architecture or encoder, a wrong weights file, an input the model cannot take."""


class CheckpointError(CxrmapError):
    """A checkpoint that is missing, truncated, corrupt or from another architecture."""


class OptionError(CxrmapError):
    """A command-line option or argument that is malformed, out of range or not usable on this machine."""
