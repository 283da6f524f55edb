"""``hotswap status [--watch]``: what a running supervisor serves, its workers, its recent swaps."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from hotswap.cli import add_command, add_common, statedir

if TYPE_CHECKING:
    from hotswap.cli import Subparsers


def register(sub: Subparsers) -> None:
    _register_status(sub)


def _register_status(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "status",
        cmd_status,
        render_status,
        example="hotswap status --json --state-dir /srv/myapp/state",
        help="the supervisor, its active generation and recent swaps",
    )
    p.add_argument(
        "-w",
        "--watch",
        action="store_true",
        help="keep watching: on a terminal redraw it (with a running swap's progress) on each "
        "change; else (or with --json) print one JSON line per change, until Ctrl-C or the "
        "supervisor stops",
    )
    p.add_argument(
        "--interval",
        type=float,
        default=0.1,
        metavar="S",
        help="with --watch, ask this often (default 0.1 s)",
    )
    add_common(p)
    p.set_defaults(
        validate=lambda a: None if 0 < a.interval <= 3600 else "--interval must be in (0, 3600]"
    )


def cmd_status(args: argparse.Namespace) -> dict[str, Any] | None:
    from hotswap import api

    if args.watch:
        from hotswap.cli.logs import watch_status

        watch_status(args, render_status)
        return None

    return api.status(state_dir=statedir.resolve(args.state_dir))


def render_status(data: dict[str, Any]) -> str:
    sup = data["supervisor"]
    lines = [
        f"supervisor  pid {sup['pid']}, hotswap {sup['hotswap']}, up {sup['uptime_s']:.0f}s,"
        f" {', '.join(sup['listeners'])}",
    ]
    active = data["active"]
    if active:
        lines.append(
            f"active      generation {active['generation']} (pid {active['pid']}),"
            f" {active['release']} ({active['version']}), up {active['uptime_s']:.0f}s"
        )
        workers = active.get("workers", [])
        if len(workers) > 1:
            for w in workers:
                release = "" if w["release"] == active["release"] else f", runs {w['release']}"
                lines.append(
                    f"  worker {w['worker']}  pid {w['pid']}, {w['state']},"
                    f" up {w['uptime_s']:.0f}s, restarts {w['restarts']}{release}"
                )
        ran = active.get("startup_code") or {}
        if ran:
            count = sum(len(names) for names in ran.values())
            lines.append(
                f"  start-up  {count} functions of {len(ran)} modules ran before ready: a hot"
                " upgrade refuses to change them (startup_code)"
            )
    else:
        lines.append("active      none")
    upgrade = data.get("upgrade")
    if upgrade:
        lines.append(
            f"upgrading   {upgrade['how']} to {upgrade['release'] or '?'}:"
            f" phase {upgrade['phase']}, {upgrade['elapsed_ms']:.0f} ms so far"
        )
    else:
        lines.append("upgrading   no")
    for svc in data.get("services", []):
        pid = f"pid {svc['pid']}" if svc["pid"] else "restarting"
        lines.append(
            f"service     {svc['name']} ({pid}), {svc['state']}, restarts {svc['restarts']}"
        )
    for gen in data["generations"]:
        if active is None or gen["generation"] != active["generation"]:
            pid = f"pid {gen['pid']}" if gen.get("pid") else "spawning"
            lines.append(f"            generation {gen['generation']} {gen['state']} ({pid})")
    if data["recent"]:
        lines.append("recent swaps:")
        for rec in data["recent"][:5]:
            mark = "ok  " if rec["ok"] else "FAIL"
            what = rec["release"] or rec.get("ref")
            extra = "" if rec["ok"] else f"  [{rec['error']['code']}]"
            swap = rec.get("id") or "-" * 8  # the swap's id, as in the log
            lines.append(
                f"  {mark} {swap} {rec['how']:<10} {what}  {rec['total_ms']:.0f} ms{extra}"
            )
    return "\n".join(lines)
