"""The ``hotswap`` command.

Every subcommand prints human text by default and one JSON object with ``--json`` (progress
goes to stderr either way, so stdout stays parseable). Errors print their stable code; the
exit status says whose fault it was (see ``EXIT_*``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import hotswap
from hotswap.errors import ChildError, HotswapError, ReleaseError, ResourceError, UsageError

EXIT_OK = 0
EXIT_USAGE = 2  # the caller asked for something wrong
EXIT_RELEASE = 3  # the release artifact is bad
EXIT_CHILD = 4  # a generation failed; the old one keeps serving
EXIT_RESOURCE = 5  # a tool, the disk, the supervisor
_EXITS: dict[type[HotswapError], int] = {
    UsageError: EXIT_USAGE,
    ReleaseError: EXIT_RELEASE,
    ChildError: EXIT_CHILD,
    ResourceError: EXIT_RESOURCE,
}

Handler = Callable[[argparse.Namespace], dict[str, Any]]


class Progress:
    """Phase lines on stderr with the time since start: ``[  1.2s] building the wheel``."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        if not self.quiet:
            elapsed = time.monotonic() - self.started
            print(f"[{elapsed:6.1f}s] {message}", file=sys.stderr, flush=True)


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return f"{n} B"


def _store(args: argparse.Namespace) -> Any:
    from hotswap.release.store import ReleaseStore, resolve_state_dir
    from hotswap.release.verify import Limits

    limits = Limits(
        max_bytes=getattr(args, "max_bytes", None) or Limits.max_bytes,
        max_files=getattr(args, "max_files", None) or Limits.max_files,
    )
    return ReleaseStore(resolve_state_dir(args.state_dir), limits=limits)


# -- build ------------------------------------------------------------------------------------


def cmd_build(args: argparse.Namespace) -> dict[str, Any]:
    from hotswap.release.build import build

    result = build(
        args.project, args.output, installer=args.installer, progress=Progress(args.quiet)
    )
    return result.to_json()


def _render_build(data: dict[str, Any]) -> str:
    return (
        f"{data['tarball']}\n"
        f"  release  {data['release_id']}  ({data['name']} {data['version']})\n"
        f"  sha256   {data['sha256']}\n"
        f"  content  {data['files']} files, {_human_bytes(data['bytes'])}"
        f"  (installed with {data['installer']} in {data['seconds']:.1f}s)"
    )


# -- inspect / unpack / releases --------------------------------------------------------------


def _manifest_json(manifest: Any) -> dict[str, Any]:
    raw: dict[str, Any] = manifest.raw
    return raw


def cmd_inspect(args: argparse.Namespace) -> dict[str, Any]:
    result = _store(args).inspect(Path(args.tarball), expected_sha256=args.sha256)
    return {
        "ok": True,
        "tarball": str(Path(args.tarball).absolute()),
        "sha256": result.sha256,
        "checks": result.checks,
        "files": len(result.record),  # as `hotswap build` counts: the files RECORD lists
        "bytes": result.bytes,
        "manifest": _manifest_json(result.manifest),
    }


def _render_inspect(data: dict[str, Any]) -> str:
    m = data["manifest"]
    py = m["python"]
    app = m["app"]
    lines = [
        f"{m['name']} {m['version']}  (release {m['release_id']})",
        f"  built       {_when(m['created'])} by hotswap {m['builder']['hotswap']}"
        f" with {m['builder']['installer']}",
        f"  python      {py['implementation']} {py['version']} ({py['soabi']}, {py['platform']})",
        f"  entry       {app['entry']}  server={app['server']}  health={app['health_path'] or '-'}",
        f"  content     {data['files']} files, {_human_bytes(data['bytes'])}",
        f"  sha256      {data['sha256']}",
        "  distributions:",
    ]
    for d in m["distributions"]:
        kind = "pure" if d["purelib"] else "native"
        lines.append(f"    {d['name']:<28} {d['version']:<14} {kind}")
    lines.append("  checks passed: " + ", ".join(data["checks"]))
    return "\n".join(lines)


def _when(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def cmd_unpack(args: argparse.Namespace) -> dict[str, Any]:
    release = _store(args).unpack(
        Path(args.tarball), expected_sha256=args.sha256, progress=Progress(args.quiet)
    )
    return {"ok": True, **release.summary()}


def cmd_releases(args: argparse.Namespace) -> dict[str, Any]:
    store = _store(args)
    state = store.read_state()
    releases = []
    for release in store.releases():
        summary = release.summary()
        summary["current"] = release.id == state["current"]
        summary["previous"] = release.id == state["previous"]
        releases.append(summary)
    return {
        "state_dir": str(store.state_dir),
        "current": state["current"],
        "previous": state["previous"],
        "releases": releases,
    }


def _render_releases(data: dict[str, Any]) -> str:
    if not data["releases"]:
        return f"no releases in {data['state_dir']}"
    lines = [f"{'':2}{'RELEASE':<34} {'VERSION':<14} BUILT"]
    for r in data["releases"]:
        mark = "*" if r["current"] else ("-" if r["previous"] else " ")
        lines.append(f"{mark} {r['id']:<34} {r['version']:<14} {_when(r['created'])}")
    lines.append("(* current, - previous)")
    return "\n".join(lines)


# -- supervisor -------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> dict[str, Any]:
    import asyncio

    from hotswap.release.store import absolute_ref, resolve_state_dir
    from hotswap.supervisor.core import Supervisor
    from hotswap.supervisor.listeners import parse_bind

    ref = absolute_ref(args.release) if args.release is not None else None
    from hotswap.supervisor.policy import RestartPolicy

    binds = [parse_bind(b) for b in (args.bind or ["127.0.0.1:8000"])]
    policy = RestartPolicy(
        initial=args.restart_backoff, max_restarts=args.max_restarts, window=args.restart_window
    )
    supervisor = Supervisor(
        resolve_state_dir(args.state_dir), binds, release=ref, sha256=args.sha256, policy=policy
    )
    code = asyncio.run(supervisor.run())
    raise SystemExit(code)


class PhasePrinter:
    """Prints each swap phase as it finishes, with its duration."""

    def __init__(self, quiet: bool) -> None:
        self.progress = Progress(quiet)

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("state") == "started":
            self.progress(f"{event['phase']} ...")
        elif event.get("state") == "done" and event.get("ms") is not None:
            self.progress(f"{event['phase']}: done in {event['ms']:.0f} ms")
        elif event.get("state") == "failed" and event.get("ms") is not None:
            self.progress(f"{event['phase']}: FAILED after {event['ms']:.0f} ms")


def cmd_upgrade(args: argparse.Namespace) -> dict[str, Any]:
    from hotswap import api

    result = api.upgrade(
        args.release,
        sha256=args.sha256,
        state_dir=args.state_dir,
        on_phase=PhasePrinter(args.quiet or args.json),
    )
    return result


def cmd_rollback(args: argparse.Namespace) -> dict[str, Any]:
    from hotswap import api

    return api.rollback(state_dir=args.state_dir, on_phase=PhasePrinter(args.quiet or args.json))


def _render_swap(data: dict[str, Any]) -> str:
    timings = "  ".join(f"{k} {v:.0f}ms" for k, v in data.get("timings_ms", {}).items())
    line = (
        f"{data['how']}: now serving {data['release']} as generation {data['generation']}"
        f" (pid {data['pid']}) in {data['total_ms']:.0f} ms"
    )
    return line + (f"\n  {timings}" if timings else "")


def cmd_hot_upgrade(args: argparse.Namespace) -> dict[str, Any]:
    from hotswap.control import client

    progress = Progress(args.quiet or args.json)
    progress("hot upgrade: verify, prepare, quiesce, commit ...")
    from hotswap.release.store import absolute_ref

    ref = absolute_ref(args.release)
    result: dict[str, Any] = client.call(
        "hot_upgrade",
        state_dir=args.state_dir,
        timeout=None,
        release=ref,
        sha256=args.sha256,
        suspend_timeout=args.suspend_timeout,
        allow_dependency_changes=args.allow_dependency_changes,
    )
    return result


def _render_hot(data: dict[str, Any]) -> str:
    st = data.get("stats") or {}
    return (
        f"hot: generation {data['generation']} (pid {data['pid']}) now runs {data['release']}"
        f" in {data['total_ms']:.0f} ms\n"
        f"  modules changed {len(st.get('modules_changed', []))}, added"
        f" {len(st.get('modules_added', []))}, removed {len(st.get('modules_removed', []))};"
        f" functions patched {st.get('functions_patched')}, classes patched"
        f" {st.get('classes_patched')}, instances migrated {st.get('instances_migrated')}\n"
        f"  prepare {st.get('prepare_ms', 0):.1f} ms, suspension window"
        f" {st.get('window_ms', 0):.2f} ms"
    )


def _release_dir(ref: str, store: Any, scratch: Any) -> Path:
    """A release directory from a dir, a release id in the store, or a tarball (unpacked into
    a scratch store that is thrown away)."""
    path = Path(ref)
    if path.is_dir():
        return path
    from hotswap.release.store import ReleaseStore, is_tarball_ref

    if is_tarball_ref(ref):
        root: Path = ReleaseStore(scratch).unpack(path).root
        return root
    found: Path = store.get(ref).root
    return found


def cmd_check(args: argparse.Namespace) -> dict[str, Any]:
    import tempfile

    from hotswap.hot import check

    store = _store(args)
    with tempfile.TemporaryDirectory(prefix="hotswap-check-") as scratch:
        try:
            old = _release_dir(args.old, store, scratch)
            new = _release_dir(args.new, store, scratch)
            verdict = check(old, new, allow_dependency_changes=args.allow_dependency_changes)
        finally:
            from hotswap.release.store import remove_tree

            remove_tree(Path(scratch) / "releases")
    out: dict[str, Any] = verdict.to_json()
    out["text"] = str(verdict)
    if not verdict.ok:
        args.exit_status = EXIT_CHILD
    return out


def cmd_status(args: argparse.Namespace) -> dict[str, Any]:
    from hotswap import api

    return api.status(state_dir=args.state_dir)


def _render_status(data: dict[str, Any]) -> str:
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
            lines.append(
                f"            generation {gen['generation']} {gen['state']} (pid {gen['pid']})"
            )
    if data["recent"]:
        lines.append("recent swaps:")
        for rec in data["recent"][:5]:
            mark = "ok  " if rec["ok"] else "FAIL"
            what = rec["release"] or rec.get("ref")
            extra = "" if rec["ok"] else f"  [{rec['error']['code']}]"
            lines.append(f"  {mark} {rec['how']:<10} {what}  {rec['total_ms']:.0f} ms{extra}")
    return "\n".join(lines)


def cmd_handoff(args: argparse.Namespace) -> dict[str, Any]:
    from hotswap import api

    if args.action == "get":
        return {"key": args.key, "value": api.get_handoff(args.key, state_dir=args.state_dir)}
    if args.action == "put":
        try:
            value = json.loads(args.value)
        except json.JSONDecodeError:
            value = args.value  # a bare string
        api.put_handoff(args.key, value, state_dir=args.state_dir)
        return {"key": args.key, "stored": True}
    if args.action == "delete":
        return {"key": args.key, "deleted": api.delete_handoff(args.key, state_dir=args.state_dir)}
    return {"handoff": api.get_all_handoff(state_dir=args.state_dir)}


def _render_handoff(data: dict[str, Any]) -> str:
    if "handoff" in data:
        items = data["handoff"]
        if not items:
            return "(the handoff store is empty)"
        return "\n".join(f"{k} = {_show(v)}" for k, v in sorted(items.items()))
    if "value" in data:
        return _show(data["value"])
    return json.dumps(data)


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return json.dumps(value)


# -- plumbing ---------------------------------------------------------------------------------

_RENDER: dict[str, Callable[[dict[str, Any]], str]] = {
    "build": _render_build,
    "inspect": _render_inspect,
    "unpack": lambda d: f"unpacked {d['id']} ({d['name']} {d['version']}) into {d['path']}",
    "releases": _render_releases,
    "upgrade": _render_swap,
    "rollback": _render_swap,
    "status": _render_status,
    "hot-upgrade": _render_hot,
    "check": lambda d: str(d["text"]),
    "handoff": _render_handoff,
}


def _add_common(p: argparse.ArgumentParser, *, state: bool = True) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    if state:
        p.add_argument(
            "--state-dir",
            metavar="DIR",
            help="the app's state dir (default: $HOTSWAP_STATE_DIR, else "
            "~/.local/state/hotswap/default)",
        )


def _add_verify_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("tarball", help="a release .tar.gz made by `hotswap build`")
    p.add_argument("--sha256", metavar="HEX", help="expected sha256 (default: read TARBALL.sha256)")
    p.add_argument("--max-bytes", type=int, metavar="N", help="refuse above N unpacked bytes")
    p.add_argument("--max-files", type=int, metavar="N", help="refuse above N entries")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hotswap",
        description="Blue-green release swaps and in-process hot upgrades for Python services.",
    )
    parser.add_argument("--version", action="version", version=f"hotswap {hotswap.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("build", help="build a release tarball of a project")
    p.add_argument("project", nargs="?", default=".", help="project dir (default: .)")
    p.add_argument("-o", "--output", metavar="DIR", help="output dir (default: PROJECT/dist)")
    p.add_argument(
        "--installer",
        choices=("auto", "uv", "pip"),
        default="auto",
        help="what installs the dependencies (default: uv when present, else pip)",
    )
    _add_common(p, state=False)
    p.set_defaults(handler=cmd_build)

    p = sub.add_parser("inspect", help="print a tarball's manifest and run every check")
    _add_verify_options(p)
    _add_common(p)
    p.set_defaults(handler=cmd_inspect)

    p = sub.add_parser("unpack", help="verify a tarball and unpack it into the release store")
    _add_verify_options(p)
    _add_common(p)
    p.set_defaults(handler=cmd_unpack)

    p = sub.add_parser("releases", help="list the releases in the store")
    _add_common(p)
    p.set_defaults(handler=cmd_releases)

    p = sub.add_parser(
        "run",
        help="run the supervisor in the foreground",
        description="Bind the listeners once and serve RELEASE (a tarball or a release id; "
        "default: the current release of the state dir) from a child generation. "
        "SIGTERM/SIGINT drain and exit; SIGHUP restarts the current release blue-green.",
    )
    p.add_argument("release", nargs="?", help="release tarball or id (default: current)")
    p.add_argument(
        "-b",
        "--bind",
        action="append",
        metavar="[NAME=]ADDR",
        help="HOST:PORT, [IPV6]:PORT, :PORT or unix:PATH; repeatable (default 127.0.0.1:8000)",
    )
    p.add_argument("--sha256", metavar="HEX", help="expected tarball sha256")
    p.add_argument(
        "--restart-backoff",
        type=float,
        default=1.0,
        metavar="S",
        help="first delay before restarting a generation that died (doubles to 30 s; default 1)",
    )
    p.add_argument(
        "--max-restarts",
        type=int,
        default=5,
        metavar="N",
        help="give up (exit 1) after N restarts within --restart-window (default 5)",
    )
    p.add_argument("--restart-window", type=float, default=60.0, metavar="S", help="default 60 s")
    _add_common(p)
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser("upgrade", help="blue-green swap the running app to a release")
    p.add_argument("release", help="release tarball, or the id of a release in the store")
    p.add_argument("--sha256", metavar="HEX", help="expected tarball sha256")
    _add_common(p)
    p.set_defaults(handler=cmd_upgrade)

    p = sub.add_parser(
        "hot-upgrade",
        help="upgrade the running generation's code in place (through the supervisor)",
        description="Verify RELEASE, check it can be hot-applied (else: use `hotswap upgrade`),"
        " then patch the active generation in place, all or nothing. On success the release"
        " becomes current, so a restarted generation boots it.",
    )
    p.add_argument("release", help="release tarball, or the id of a release in the store")
    p.add_argument("--sha256", metavar="HEX", help="expected tarball sha256")
    p.add_argument(
        "--suspend-timeout",
        type=float,
        default=3.0,
        metavar="S",
        help="abort, changing nothing, if the process cannot quiesce within S (default 3)",
    )
    p.add_argument(
        "--allow-dependency-changes",
        action="store_true",
        help="allow pure-Python dependencies to change version",
    )
    _add_common(p)
    p.set_defaults(handler=cmd_hot_upgrade)

    p = sub.add_parser(
        "check",
        help="can NEW be hot-applied to a process running OLD? (exit 4 when not)",
    )
    p.add_argument("old", help="release dir, release id, or tarball")
    p.add_argument("new", help="release dir, release id, or tarball")
    p.add_argument("--allow-dependency-changes", action="store_true")
    _add_common(p)
    p.set_defaults(handler=cmd_check)

    p = sub.add_parser("rollback", help="blue-green swap back to the previous release")
    _add_common(p)
    p.set_defaults(handler=cmd_rollback)

    p = sub.add_parser("status", help="the supervisor, its active generation and recent swaps")
    _add_common(p)
    p.set_defaults(handler=cmd_status)

    p = sub.add_parser("handoff", help="read and write the handoff store")
    p.add_argument("action", choices=("get", "put", "list", "delete"))
    p.add_argument("key", nargs="?")
    p.add_argument("value", nargs="?", help="JSON (a bare word is stored as a string)")
    _add_common(p)
    p.set_defaults(handler=cmd_handoff)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    if args.command == "handoff" and args.action != "list" and not args.key:
        parser.error(f"handoff {args.action} needs a KEY")
    if args.command == "handoff" and args.action == "put" and args.value is None:
        parser.error("handoff put needs a KEY and a VALUE")
    try:
        data = handler(args)
    except HotswapError as e:
        if args.json:
            print(json.dumps({"ok": False, "error": e.to_json()}, indent=2))
        else:
            print(f"hotswap: error [{e.code}]: {e.message}", file=sys.stderr)
        return _EXITS.get(type(e), EXIT_RESOURCE)
    except KeyboardInterrupt:
        return 130
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        render = _RENDER.get(args.command)
        print(render(data) if render else json.dumps(data, indent=2))
    return int(getattr(args, "exit_status", EXIT_OK))


if __name__ == "__main__":
    sys.exit(main())
