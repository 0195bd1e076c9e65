"""Option checks shared by the commands (cxrmap.cli.options)."""

from __future__ import annotations

import pytest

from cxrmap.cli.options import check_phantom_kind
from cxrmap.core.errors import OptionError
from cxrmap.data.phantom import GENERATORS


def test_phantom_kinds_are_the_generators():
    for kind in GENERATORS:
        assert check_phantom_kind(kind) == kind
    with pytest.raises(OptionError, match="--phantom 'drawn' is no phantom kind; choose from shapes, ct"):
        check_phantom_kind("drawn")
