"""What ``hotswap check OLD NEW`` answers: can this change be applied in place, and if not, why.

A :class:`Verdict` is plain data (JSON-able through :meth:`Verdict.to_json`). Each refusal is a
:class:`Reason` with a stable ``code`` (one of :data:`hotswap.errors.HOT_REFUSAL_CODES`):

=====================  ====================================================================
code                   meaning
=====================  ====================================================================
``different_app``      the two releases are not the same application
``interpreter``        built for another interpreter (implementation, version, ABI, magic)
``native_extension``   a compiled extension was added, changed or removed
``dependencies``       the set or the versions of bundled distributions changed
``wiring``             the entry point, server or listeners changed, or a statement rebinds
                       the entry object the server holds
``class_layout``       a class changed bases, metaclass, class decorators or ``__slots__``
``enum_members``       an enum member was removed or changed value (or a Flag changed)
``dataclass_fields``   a dataclass gained a field old instances cannot be given a value for
``stale_registration`` unchanged decorators registered on an object the upgrade rebinds
``derived_state``      an unchanged statement computed from a rebound name cannot be re-run
``instance_state``     changed methods shape instance state anew and live instances exist
``data_files``         data files of an imported package changed and it has no hook
``module_layout``      an imported module became a package, or the reverse
``no_quiescence``      the process registered no event loop or gate (and no ``no_quiesce``)
``syntax_error``       a changed module does not compile
``closure``            live closures would need a value for a new free variable
``not_found``          the running process does not hold what the old release defines
``metaclass_state``    a class whose metaclass derives state at creation changed its fields
``startup_code``       a function that ran while the worker started (factory, lifespan) changed
=====================  ====================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hotswap.errors import HOT_REFUSAL_CODES

BLUE_GREEN = "use a blue-green upgrade"


@dataclass(frozen=True)
class Reason:
    """Why a change cannot be hot-applied."""

    code: str
    message: str
    subject: str = ""

    def __post_init__(self) -> None:
        if self.code not in HOT_REFUSAL_CODES:
            raise ValueError(f"unknown hot refusal code {self.code!r}")

    def to_json(self) -> dict[str, str]:
        out = {"code": self.code, "message": self.message}
        if self.subject:
            out["subject"] = self.subject
        return out


@dataclass(frozen=True)
class Verdict:
    """The answer of :func:`hotswap.hot.check`."""

    old_release: str
    new_release: str
    reasons: tuple[Reason, ...] = ()
    warnings: tuple[str, ...] = ()
    modules_changed: tuple[str, ...] = ()
    modules_added: tuple[str, ...] = ()
    modules_removed: tuple[str, ...] = ()
    files_changed: tuple[str, ...] = field(default=(), repr=False)

    @property
    def ok(self) -> bool:
        return not self.reasons

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "verdict": "hot upgrade possible" if self.ok else BLUE_GREEN,
            "old_release": self.old_release,
            "new_release": self.new_release,
            "reasons": [r.to_json() for r in self.reasons],
            "warnings": list(self.warnings),
            "modules_changed": list(self.modules_changed),
            "modules_added": list(self.modules_added),
            "modules_removed": list(self.modules_removed),
            "files_changed": len(self.files_changed),
        }

    def __str__(self) -> str:
        head = f"{self.old_release} -> {self.new_release}: "
        if self.ok:
            lines = [
                head + "hot upgrade possible "
                f"({len(self.modules_changed)} changed, {len(self.modules_added)} added, "
                f"{len(self.modules_removed)} removed modules)"
            ]
        else:
            lines = [head + f"cannot hot-upgrade; {BLUE_GREEN}, because:"]
            lines += [f"  - {r.message}" for r in self.reasons]
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)
