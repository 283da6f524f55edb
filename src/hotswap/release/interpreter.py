"""Interpreter identity: what a release was built for, and whether this interpreter can run it.

A release holds compiled bytecode and maybe native extensions, so it is tied to the interpreter
that built it, as a ``mix release`` is tied to its OTP version. The rule:

- must equal: implementation, cache tag, bytecode magic, SOABI, abiflags, free-threading,
  platform, pointer size, byte order;
- ``same-minor`` (default) or ``exact`` for the version;
- every bundled distribution has at least one wheel tag this interpreter supports
  (``packaging.tags``, pip's own rule).
"""

from __future__ import annotations

import importlib.util
import platform
import sys
import sysconfig
from typing import Any

from hotswap.errors import ReleaseError

MUST_EQUAL = (
    "implementation",
    "cache_tag",
    "magic",
    "soabi",
    "abiflags",
    "gil_disabled",
    "platform",
    "pointer_bits",
    "byteorder",
)
POLICIES = ("same-minor", "exact")


def identity() -> dict[str, Any]:
    """This interpreter's identity, as recorded in a manifest's ``python`` block."""
    libc, libc_version = platform.libc_ver()
    return {
        "implementation": sys.implementation.name,
        "version": platform.python_version(),
        "cache_tag": sys.implementation.cache_tag,
        "magic": importlib.util.MAGIC_NUMBER.hex(),
        "soabi": sysconfig.get_config_var("SOABI"),
        "ext_suffix": sysconfig.get_config_var("EXT_SUFFIX"),
        "abiflags": getattr(sys, "abiflags", ""),
        "gil_disabled": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
        "platform": sysconfig.get_platform(),
        "machine": platform.machine(),
        "pointer_bits": 64 if sys.maxsize > 2**32 else 32,
        "byteorder": sys.byteorder,
        "libc": f"{libc} {libc_version}".strip(),
        "compat": "same-minor",
    }


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def check(
    built_for: dict[str, Any],
    distributions: list[dict[str, Any]],
    *,
    here: dict[str, Any] | None = None,
    supported_tags: set[str] | None = None,
) -> None:
    """Raise ``interpreter_mismatch`` naming the first field this interpreter cannot honour."""
    here = here if here is not None else identity()
    for key in MUST_EQUAL:
        if built_for.get(key) != here.get(key):
            raise ReleaseError(
                "interpreter_mismatch",
                f"release built for {key}={built_for.get(key)!r}, "
                f"this interpreter has {here.get(key)!r}",
                field=key,
                built_for=built_for.get(key),
                here=here.get(key),
            )
    policy = built_for.get("compat", "same-minor")
    if policy not in POLICIES:
        raise ReleaseError("manifest_invalid", f"python.compat {policy!r} is not one of {POLICIES}")
    built_version = str(built_for.get("version", ""))
    here_version = str(here.get("version", ""))
    same = (
        built_version == here_version
        if policy == "exact"
        else _minor(built_version) == _minor(here_version)
    )
    if not same:
        raise ReleaseError(
            "interpreter_mismatch",
            f"release built for Python {built_version} ({policy}), this is {here_version}",
            field="version",
            built_for=built_version,
            here=here_version,
        )
    if supported_tags is None:
        from packaging.tags import sys_tags

        supported_tags = {str(t) for t in sys_tags()}
    for dist in distributions:
        tags = dist.get("tags") or []
        if tags and not any(t in supported_tags for t in tags):
            raise ReleaseError(
                "interpreter_mismatch",
                f"distribution {dist.get('name')} {dist.get('version')} has wheel tags "
                f"{', '.join(tags)}, none supported by this interpreter",
                field="tags",
                distribution=dist.get("name"),
            )
