"""``hotswap build | inspect | unpack | releases``: make a release tarball, verify it, put it in
the store, list the store."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hotswap.cli import add_command, add_common, add_verify_options, statedir
from hotswap.cli.render import Progress, human_bytes, when

if TYPE_CHECKING:
    from hotswap.cli import Subparsers
    from hotswap.release.store import ReleaseStore
    from hotswap.release.verify import Limits


def register(sub: Subparsers) -> None:
    _register_build(sub)
    _register_inspect(sub)
    _register_unpack(sub)
    _register_releases(sub)


def open_store(
    args: argparse.Namespace, *, writes: bool = True, app: str | None = None
) -> ReleaseStore:
    """The release store of the state dir (see :mod:`~hotswap.cli.statedir`; ``app``'s own
    by default when it is known), bounded by ``--max-bytes`` / ``--max-files``. A command that
    ``writes`` nothing (``inspect``) needs no state dir and gets a store never created."""
    from hotswap.release.store import ReleaseStore

    limits = limits_of(args)
    if not writes and not statedir.given(args.state_dir):
        return ReleaseStore(statedir.base_dir() / "unused", limits=limits)
    return ReleaseStore(statedir.resolve(args.state_dir, app=app), limits=limits)


def limits_of(args: argparse.Namespace) -> Limits:
    """The verification limits, with ``--max-bytes`` / ``--max-files`` where given."""
    from hotswap.release.verify import Limits

    return Limits(
        max_bytes=getattr(args, "max_bytes", None) or Limits.max_bytes,
        max_files=getattr(args, "max_files", None) or Limits.max_files,
    )


# -- build ------------------------------------------------------------------------------------


def _register_build(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "build",
        cmd_build,
        render_build,
        example="hotswap build . -o dist",
        help="build a release tarball of a project",
    )
    p.add_argument("project", nargs="?", default=".", help="project dir (default: .)")
    p.add_argument("-o", "--output", metavar="DIR", help="output dir (default: PROJECT/dist)")
    p.add_argument(
        "--installer",
        choices=("auto", "uv", "pip"),
        default="auto",
        help="what installs the dependencies (default: uv when present, else pip)",
    )
    p.add_argument(
        "--no-import-check",
        action="store_true",
        help="do not import the entry, hooks and services from the built tree",
    )
    add_common(p, state=False)


def cmd_build(args: argparse.Namespace) -> dict[str, Any]:
    from hotswap.release.build import build

    result = build(
        args.project,
        args.output,
        installer=args.installer,
        progress=Progress(args.quiet),
        check_imports=not args.no_import_check,
    )
    return result.to_json()


def render_build(data: dict[str, Any]) -> str:
    return (
        f"{data['tarball']}\n"
        f"  release  {data['release_id']}  ({data['name']} {data['version']})\n"
        f"  sha256   {data['sha256']}\n"
        f"  content  {data['files']} files, {human_bytes(data['bytes'])}"
        f"  (installed with {data['installer']} in {data['seconds']:.1f}s)"
    )


# -- inspect ----------------------------------------------------------------------------------


def _register_inspect(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "inspect",
        cmd_inspect,
        render_inspect,
        example="hotswap inspect dist/myapp-1.0.0-3ac7f1a07546.tar.gz",
        help="print a tarball's manifest and run every check",
    )
    add_verify_options(p)
    add_common(p)


def cmd_inspect(args: argparse.Namespace) -> dict[str, Any]:
    result = open_store(args, writes=False).inspect(Path(args.tarball), expected_sha256=args.sha256)
    manifest: dict[str, Any] = result.manifest.raw
    return {
        "ok": True,
        "tarball": str(Path(args.tarball).absolute()),
        "sha256": result.sha256,
        "checks": result.checks,
        "files": len(result.record),  # as `hotswap build` counts: the files RECORD lists
        "bytes": result.bytes,
        "manifest": manifest,
    }


def render_inspect(data: dict[str, Any]) -> str:
    m = data["manifest"]
    py = m["python"]
    app = m["app"]
    lines = [
        f"{m['name']} {m['version']}  (release {m['release_id']})",
        f"  built       {when(m['created'])} by hotswap {m['builder']['hotswap']}"
        f" with {m['builder']['installer']}",
        f"  python      {py['implementation']} {py['version']} ({py['soabi']}, {py['platform']})",
        f"  entry       {app['entry']}  server={app['server']}  health={app['health_path'] or '-'}",
        f"  content     {data['files']} files, {human_bytes(data['bytes'])}",
        f"  sha256      {data['sha256']}",
        "  distributions:",
    ]
    for d in m["distributions"]:
        kind = "pure" if d["purelib"] else "native"
        lines.append(f"    {d['name']:<28} {d['version']:<14} {kind}")
    lines.append("  checks passed: " + ", ".join(data["checks"]))
    return "\n".join(lines)


# -- unpack -----------------------------------------------------------------------------------


def _register_unpack(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "unpack",
        cmd_unpack,
        render_unpack,
        example="hotswap unpack dist/myapp-1.0.0-3ac7f1a07546.tar.gz --state-dir /srv/myapp/state",
        help="verify a tarball and unpack it into the release store",
    )
    add_verify_options(p)
    add_common(p, state_help=statedir.APP_HELP)


def cmd_unpack(args: argparse.Namespace) -> dict[str, Any]:
    app = None
    if not statedir.given(args.state_dir):  # the tarball's app names the store
        app = statedir.app_of(args.tarball, args.sha256, limits_of(args))
    release = open_store(args, app=app).unpack(
        Path(args.tarball), expected_sha256=args.sha256, progress=Progress(args.quiet)
    )
    return {"ok": True, **release.summary()}


def render_unpack(data: dict[str, Any]) -> str:
    return f"unpacked {data['id']} ({data['name']} {data['version']}) into {data['path']}"


# -- releases ---------------------------------------------------------------------------------


def _register_releases(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "releases",
        cmd_releases,
        render_releases,
        example="hotswap releases --state-dir /srv/myapp/state",
        help="list the releases in the store",
    )
    add_common(p)


def cmd_releases(args: argparse.Namespace) -> dict[str, Any]:
    store = open_store(args)
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


def render_releases(data: dict[str, Any]) -> str:
    if not data["releases"]:
        return f"no releases in {data['state_dir']}"
    lines = [f"{'':2}{'RELEASE':<34} {'VERSION':<14} BUILT"]
    for r in data["releases"]:
        mark = "*" if r["current"] else ("-" if r["previous"] else " ")
        lines.append(f"{mark} {r['id']:<34} {r['version']:<14} {when(r['created'])}")
    lines.append("(* current, - previous)")
    return "\n".join(lines)
