"""What ran while the worker started: code a hot upgrade cannot run again.

A fresh start of the new release runs the app's start-up with the new code: an app factory
the server calls (aiohttp's ``make_app()``), the start-up half of an ASGI lifespan, start-up
handlers, a callable server's set-up before it says ready. A hot upgrade patches code after
all of that ran and runs none of it again, so what start-up built (routes, a pool, a client,
a cache) stays as the old code made it. Module-level statements are another matter: the
analysis sees them and runs again what read or called what changed (:mod:`.derive`); what
runs after import, only the process can tell.

So a worker records, from the moment ``app.entry`` is imported until it reports ready, which
functions ran (a profile hook on the thread that starts the app and on threads started
meanwhile; it removes itself at ready, and costs nothing after), keeping ``(module,
qualname)`` of each; and the upgrade refuses (``startup_code``) a change to the code of any
of them, naming it, before anything changes. Only a change to what the function runs itself
counts (not to the bodies of the functions it defines, which get their new code in place),
and nested functions that ran count for the function that defines them.

:func:`recording` does the same around any block, for an in-process upgrader (the glue of
another server) and tests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hotswap.child.startup import Ran, begin, end, forget, ran, recording
from hotswap.hot.names import last_name, own_code_changed
from hotswap.hot.plan import BodyPlan, Exec, PatchClass, PatchDef
from hotswap.hot.verdict import Reason

if TYPE_CHECKING:
    from hotswap.hot.check import Analysis

__all__ = ["Ran", "begin", "end", "forget", "ran", "recording", "startup_refusals"]


def startup_refusals(analysis: Analysis, record: Ran | None = None) -> list[Reason]:
    """One ``startup_code`` reason per function of the upgrade's plan whose code changes and
    that ran at start-up (``record``, default :func:`ran`)."""
    record = ran() if record is None else record
    out: list[Reason] = []
    for module, md in analysis.modules.items():
        names = record.get(module)
        if names:
            _walk(md.plan, "", module, names, out)
        out += _app_config_ready(module, md.plan)
    named = {r.subject for r in out}
    for module, stores in analysis.stores.items():
        names = record.get(module, frozenset())
        for qualname in sorted(names & stores):
            if f"{module}.{qualname}" not in named:
                out.append(
                    Reason(
                        "startup_code",
                        f"{module}.{qualname} ran while the worker started (before it was "
                        "ready) and stored a value computed from one this upgrade rebinds; a "
                        "hot upgrade does not start the app again, so what it stored would "
                        "stay as the old value made it",
                        subject=f"{module}.{qualname}",
                    )
                )
    return out


def _app_config_ready(module: str, plan: BodyPlan) -> list[Reason]:
    """Django runs each ``AppConfig.ready()`` once, from ``django.setup()``, while the entry
    (``get_wsgi_application()``) is imported: before the record starts, and called by the
    framework, not by a statement the analysis could run again. A change to its own code is
    start-up code all the same (the signals it connects, the checks it registers)."""
    out = []
    for op in plan.ops:
        if not isinstance(op, PatchClass):
            continue
        if "AppConfig" not in map(last_name, op.node.bases):
            continue
        for inner in op.body.ops:
            if (
                isinstance(inner, PatchDef)
                and inner.qualname == f"{op.qualname}.ready"
                and own_code_changed(inner.old_node, inner.node)
            ):
                out.append(
                    Reason(
                        "startup_code",
                        f"{module}.{inner.qualname} is a Django AppConfig.ready(), run once by "
                        "django.setup() as the app was imported; a hot upgrade does not run it "
                        "again, so what it connected or set up would stay as the old code made it",
                        subject=f"{module}.{inner.qualname}",
                    )
                )
    return out


def _walk(
    plan: BodyPlan, prefix: str, module: str, names: frozenset[str], out: list[Reason]
) -> None:
    for op in plan.ops:
        if isinstance(op, PatchClass):
            _walk(op.body, op.qualname + ".", module, names, out)
            continue
        if isinstance(op, PatchDef):
            qualname = op.qualname
            own = qualname in names and (
                op.why != "changed" or own_code_changed(op.old_node, op.node)
            )
        elif isinstance(op, Exec) and op.why in ("redecorated", "replaced"):
            qualname = prefix + getattr(op.node, "name", "")
            own = qualname in names
        else:
            continue
        inner = any(n.startswith(qualname + ".") for n in names)
        if own or inner:
            out.append(
                Reason(
                    "startup_code",
                    f"{module}.{qualname} ran while the worker started (an app factory, a "
                    "lifespan's start-up, a start-up handler: before it was ready); a hot "
                    "upgrade does not start the app again, so what it built would stay as the "
                    "old code made it",
                    subject=f"{module}.{qualname}",
                )
            )
