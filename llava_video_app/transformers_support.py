"""Which transformers releases the model code runs on, and the one difference between them it has to bridge.

The range is stated here and nowhere else (requirements.txt pins the highest). 5.17 is what the GPU machine's
image has; 5.24 is the highest the tests have run on. Outside it the app stops at start-up with one line
(`check_transformers`), because a transformers that takes the KV cache under another name ignores ours
without a word (the model then answers with no context) and later releases may change more.

The KV cache argument: transformers 5.24 calls it `cache` (`past_key_values` still works there, with a
deprecation warning); 5.17-5.23 call it `past_key_values` and swallow an unknown `cache=` in **kwargs. So
the name is read once from the installed Qwen2 forward's signature (`cache_argument`).
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from packaging.version import InvalidVersion, Version

LOWEST = "5.17"  # the GPU machine's image
HIGHEST = "5.24"  # highest tested: any 5.24.x


def _next_minor(release: str) -> Version:
    major, minor = release.split(".")[:2]
    return Version(f"{major}.{int(minor) + 1}")


SPEC = f"transformers>={LOWEST},<{_next_minor(HIGHEST)}"  # as pip writes it: 5.17.0 up to any 5.24.x


class UnsupportedTransformersError(RuntimeError):
    """The installed transformers is outside the range the model code runs on."""


def unsupported_reason(version: str) -> str | None:
    """None when `version` is in the supported range, else the one line to stop with."""
    try:
        found: Version | None = Version(Version(version).base_version)  # 5.24.1rc1 counts as 5.24.1
    except InvalidVersion:
        found = None
    if found is not None and Version(LOWEST) <= found < _next_minor(HIGHEST):
        return None
    return (f"transformers {version} is installed, but llava-video needs {LOWEST} to {HIGHEST}.x: "
            f"pip install '{SPEC}'")


def installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("transformers")
    except PackageNotFoundError:
        return "(none)"


def check_transformers(version: str | None = None) -> None:
    """Raise UnsupportedTransformersError (one line: the version found, the range needed) outside the range.
    Reads the installed distribution's metadata only: importing transformers takes seconds."""
    reason = unsupported_reason(installed_version() if version is None else version)
    if reason is not None:
        raise UnsupportedTransformersError(reason)


@functools.lru_cache(maxsize=None)
def cache_argument() -> str:
    """The keyword the installed Qwen2ForCausalLM.forward takes its KV cache by: "cache" or "past_key_values"."""
    from transformers import Qwen2ForCausalLM

    parameters = inspect.signature(Qwen2ForCausalLM.forward).parameters
    for name in ("cache", "past_key_values"):
        if name in parameters:
            return name
    raise UnsupportedTransformersError(f"transformers {installed_version()}: Qwen2ForCausalLM.forward takes no KV "
                                       f"cache argument that llava-video knows; it needs {SPEC}")


def with_cache(cache: Any) -> dict[str, Any]:
    """`lm(..., **with_cache(cache))`: the KV cache under the name this transformers reads."""
    return {cache_argument(): cache}
