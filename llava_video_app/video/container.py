"""Opening a file for reading with PyAV, across the PyAV versions we support (14 through 19).

PyAV up to 18 takes `metadata_errors="ignore"`, so that a title or comment in a legacy encoding does not
make the open fail; PyAV 19 removed the keyword (av.open then raises TypeError). Which one this PyAV is
is found out by the first open and remembered, not read from a version number."""

from __future__ import annotations

from typing import Any

import av

_LENIENT_METADATA: dict[str, Any] = {"metadata_errors": "ignore"}
_takes_metadata_errors: bool | None = None  # None until the first open has found out


def open_input(path: str, **options: Any) -> Any:
    """av.open(path, **options) for reading (an InputContainer), tolerant of undecodable metadata where PyAV
    has the choice."""
    global _takes_metadata_errors
    if _takes_metadata_errors is False:
        return av.open(path, **options)
    try:
        container = av.open(path, **options, **_LENIENT_METADATA)
    except TypeError as err:
        if "metadata_errors" not in str(err):
            raise
        _takes_metadata_errors = False
        return av.open(path, **options)
    _takes_metadata_errors = True
    return container
