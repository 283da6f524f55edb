"""Errors with stable codes, grouped by whose fault they are.

Every error hotswap raises is a :class:`HotswapError` with a ``code`` that never changes
between versions (scripts match on it; ``--json`` output carries it), a human message that
names the member, field or step at fault, and optional ``details`` (JSON-compatible).

The subclasses say whose fault it was, after h11's Local/RemoteProtocolError and trio's
Closed/Broken/Busy split:

- :class:`UsageError`: the caller asked for something wrong (bad config, unknown release,
  an upgrade while one runs). Fix the call.
- :class:`ReleaseError`: the release artifact is bad or hostile (checksum, unsafe member,
  wrong interpreter). Fix the artifact; nothing was changed.
- :class:`ChildError`: a generation failed (crashed at import, never ready, health probe
  failed). The old generation keeps serving.
- :class:`ResourceError`: the environment broke (disk, permissions, a peer hung up).
"""

from __future__ import annotations

from typing import Any, ClassVar

# Stable codes, one place. Grouped by class; a code is never reused with another meaning.
USAGE_CODES = frozenset(
    {
        "bad_config",  # [tool.hotswap] or an option is wrong (names the key)
        "unknown_config_key",  # [tool.hotswap] has a key we do not know
        "no_entry_point",  # project declares no [tool.hotswap] entry
        "not_a_project",  # no pyproject.toml where a project was expected
        "release_not_found",  # no such tarball or release id
        "state_dir_invalid",  # state dir unusable (not a dir, bad permissions)
        "state_dir_unknown",  # no state dir given, and none (or several) to default to
        "bad_arguments",  # the command line does not parse (unknown option, missing value)
        "upgrade_in_progress",  # one upgrade at a time
        "worker_restarting",  # a hot upgrade waits until every worker serves
        "same_release",  # a hot upgrade to the release that already runs
        "no_previous_release",  # rollback with nothing to roll back to
        "not_running",  # no supervisor answers on the control socket
        "bad_request",  # malformed control request
        "handoff_too_large",  # handoff value over the size limit
        "handoff_invalid",  # handoff value not JSON-compatible or bytes
        "different_app",  # upgrade to a release of another app (allow_other_app to mean it)
        "service_not_found",  # no service of that name runs under the supervisor
        "bad_url",  # not a valid s3:// URL (bucket name, '..' in the key)
        "import_failed",  # at build: the entry, a hook, a service or the server won't import
    }
)
RELEASE_CODES = frozenset(
    {
        "checksum_missing",  # no .sha256 beside the tarball and none given
        "checksum_mismatch",  # tarball sha256 differs from its .sha256
        "corrupt_archive",  # not gzip, not tar, truncated, bad CRC, empty
        "unsafe_member",  # link, device, fifo, absolute, '..', setuid, odd name
        "duplicate_member",  # the same name twice
        "member_not_in_record",  # a file in the archive that RECORD does not list
        "record_entry_missing",  # RECORD lists a file the archive lacks
        "record_invalid",  # RECORD unreadable or malformed
        "hash_mismatch",  # a file's bytes differ from RECORD
        "too_large",  # over the unpacked size or file-count limit
        "manifest_invalid",  # RELEASE.json missing, unreadable or malformed
        "interpreter_mismatch",  # built for another interpreter
        "unpack_timeout",  # verify + unpack took longer than its limit
        "pointer_invalid",  # a release store's current.json is unreadable or malformed
    }
)
CHILD_CODES = frozenset(
    {
        "boot_failed",  # generation exited before it was ready
        "not_ready",  # generation did not report ready within boot_timeout
        "health_failed",  # health probe failed or timed out
        "drain_timeout",  # old generation killed at shutdown_timeout (informational)
        "hot_upgrade_failed",  # a hot upgrade step failed and was rolled back
        "hot_upgrade_refused",  # the change cannot be hot-applied; use blue-green
        "service_failed",  # a service method raised, or the service failed to start
        "check_failed",  # the child of `hotswap check` died or timed out before a verdict
    }
)
RESOURCE_CODES = frozenset(
    {
        "build_failed",  # the wheel build or dependency install failed
        "tool_missing",  # neither uv nor pip could be found
        "io_error",  # disk full, permission denied, ...
        "protocol_error",  # the control peer spoke something else
        "version_mismatch",  # control protocol versions do not agree
        "permission_denied",  # control socket peer is another user
        "supervisor_failed",  # the supervisor reported an internal failure
        "state_dir_locked",  # another supervisor holds the state dir (names its pid)
        "unencodable_result",  # a reply could not be sent (not JSON or bytes, or too large)
        "extra_missing",  # an optional extra is not installed (boto3 for s3://: hotswap[s3])
        "storage_error",  # object storage refused or failed (credentials, network, permission)
        "commit_failed",  # the new release serves, but state.json could not record it
    }
)
ALL_CODES = USAGE_CODES | RELEASE_CODES | CHILD_CODES | RESOURCE_CODES

# Why a hot upgrade is refused: the ``code`` of each reason of a ``hot_upgrade_refused`` error
# (``details["reasons"]``) and of ``hotswap check``'s verdict (docs/hot-upgrade.md has the table).
HOT_REFUSAL_CODES = frozenset(
    {
        "different_app",  # the releases are of different applications
        "interpreter",  # built for another interpreter
        "native_extension",  # a compiled extension was added, changed or removed
        "dependencies",  # the set or the versions of bundled distributions changed
        "wiring",  # entry/server/listeners/services changed, or the entry object is rebound
        "class_layout",  # bases, metaclass, class decorators, __slots__, NamedTuple fields
        "enum_members",  # an enum member was removed or changed value (or a Flag changed)
        "dataclass_fields",  # a dataclass field live instances cannot be given a value for
        "stale_registration",  # unchanged decorators registered on an object that is rebound
        "derived_state",  # an unchanged statement computed from a rebound name; not re-runnable
        "instance_state",  # changed methods shape instance state anew; live instances, no hook
        "data_files",  # changed data files in an imported package without __data_change__
        "module_layout",  # an imported module became a package, or a package a module
        "no_quiescence",  # no event loop or UpgradeGate registered, and no no_quiesce
        "syntax_error",  # a changed module does not compile
        "closure",  # live closures would need a value for a new free variable
        "not_found",  # the running process does not hold what the old release defines
        "metaclass_state",  # a class whose metaclass derives state at creation changed
        "startup_code",  # a function that ran while the worker started changed
    }
)


class HotswapError(Exception):
    """Base of every hotswap error: ``code`` (stable), message, ``details``."""

    codes: ClassVar[frozenset[str]] = ALL_CODES
    kind: ClassVar[str] = "error"

    def __init__(self, code: str, message: str, **details: Any) -> None:
        if code not in self.codes:
            raise ValueError(f"{type(self).__name__} does not use code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.details: dict[str, Any] = details

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "kind": self.kind, "message": self.message}
        if self.details:
            out["details"] = self.details
        return out

    @staticmethod
    def from_json(data: dict[str, Any]) -> HotswapError:
        """Rebuild an error sent over the control socket, keeping its class and code."""
        code = str(data.get("code", "supervisor_failed"))
        message = str(data.get("message", ""))
        details = data.get("details")
        error: HotswapError = ResourceError("supervisor_failed", f"{code}: {message}")
        for cls in (UsageError, ReleaseError, ChildError, ResourceError):
            if code in cls.codes:
                error = cls(code, message)
                break
        # set, not passed as keywords: a peer's details may hold a "code" or "message" key
        error.details = dict(details) if isinstance(details, dict) else {}
        return error


class UsageError(HotswapError):
    """The caller asked for something wrong. Nothing was changed."""

    codes = USAGE_CODES
    kind = "usage"


class ReleaseError(HotswapError):
    """The release artifact is bad or hostile. Nothing was written outside staging."""

    codes = RELEASE_CODES
    kind = "release"


class ChildError(HotswapError):
    """A generation failed. The previous generation keeps serving."""

    codes = CHILD_CODES
    kind = "child"


class ResourceError(HotswapError):
    """The environment failed: a tool, the disk, a peer."""

    codes = RESOURCE_CODES
    kind = "resource"
