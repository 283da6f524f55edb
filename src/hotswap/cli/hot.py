"""``hotswap hot-upgrade | check``: patch the running generation's code in place, and ask
beforehand whether a release can be hot-applied at all."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hotswap.cli import EXIT_CHILD, add_command, add_common, statedir
from hotswap.cli.release import open_store
from hotswap.cli.render import Progress
from hotswap.contract import SUSPEND_TIMEOUT

if TYPE_CHECKING:
    from hotswap.cli import Subparsers
    from hotswap.release.store import ReleaseStore


def register(sub: Subparsers) -> None:
    _register_hot_upgrade(sub)
    _register_check(sub)


# -- hot-upgrade ------------------------------------------------------------------------------


def _register_hot_upgrade(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "hot-upgrade",
        cmd_hot_upgrade,
        render_hot,
        example="hotswap hot-upgrade dist/myapp-1.2.0-a82f230ed8e7.tar.gz",
        help="upgrade the running generation's code in place (through the supervisor)",
        description="Verify RELEASE, check it can be hot-applied (else: use `hotswap upgrade`),"
        " then patch the active generation in place, all or nothing. On success the release"
        " becomes current, so a restarted generation boots it.",
    )
    p.add_argument(
        "release", help="release tarball, the id of a release in the store, or an s3:// URL"
    )
    p.add_argument("--sha256", metavar="HEX", help="expected tarball sha256")
    p.add_argument(
        "--suspend-timeout",
        type=float,
        default=SUSPEND_TIMEOUT,
        metavar="S",
        help="abort, changing nothing, if the process cannot quiesce within S (default "
        f"{SUSPEND_TIMEOUT:g})",
    )
    p.add_argument(
        "--allow-dependency-changes",
        action="store_true",
        help="allow pure-Python dependencies to change version",
    )
    p.add_argument(
        "--no-quiesce",
        action="store_true",
        help="patch even if the process registered no quiescence (no event loop, no"
        " UpgradeGate): only when nothing runs concurrently",
    )
    add_common(p)


def cmd_hot_upgrade(args: argparse.Namespace) -> dict[str, Any]:
    from hotswap import api

    Progress(args.quiet or args.json)("hot upgrade: verify, prepare, quiesce, commit ...")
    return api.hot_upgrade_generation(
        args.release,
        sha256=args.sha256,
        state_dir=statedir.resolve(args.state_dir, tarball=args.release),
        suspend_timeout=args.suspend_timeout,
        allow_dependency_changes=args.allow_dependency_changes,
        no_quiesce=args.no_quiesce,
    )


def render_hot(data: dict[str, Any]) -> str:
    st = data.get("stats") or {}
    workers = st.get("workers") or []
    who = f"{len(workers)} workers, each" if len(workers) > 1 else f"pid {data['pid']}"
    return (
        f"hot: generation {data['generation']} ({who}) now runs {data['release']}"
        f" in {data['total_ms']:.0f} ms\n"
        f"  modules changed {len(st.get('modules_changed', []))}, added"
        f" {len(st.get('modules_added', []))}, removed {len(st.get('modules_removed', []))};"
        f" functions patched {st.get('functions_patched')}, classes patched"
        f" {st.get('classes_patched')}, instances migrated {st.get('instances_migrated')}\n"
        f"  prepare {st.get('prepare_ms', 0):.1f} ms, suspension window"
        f" {st.get('window_ms', 0):.2f} ms"
    )


# -- check ------------------------------------------------------------------------------------


def _register_check(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "check",
        cmd_check,
        render_check,
        example="hotswap check 1.1.0-f6612c7111d9 dist/myapp-1.2.0-a82f230ed8e7.tar.gz",
        help="can NEW be hot-applied to a process running OLD? (exit 4 when not)",
    )
    p.add_argument("old", help="release dir, release id, or tarball")
    p.add_argument("new", help="release dir, release id, or tarball")
    p.add_argument(
        "--allow-dependency-changes",
        action="store_true",
        help="allow pure-Python dependencies to change version",
    )
    p.add_argument(
        "--static",
        action="store_true",
        help="analyse the sources only, importing nothing (stricter where a module the app never"
        " imports changed; blind to what only live objects tell)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="give up (check_failed) if importing OLD in the check's child takes longer than S",
    )
    add_common(p)


def _release_dir(ref: str, store: Callable[[], ReleaseStore], scratch: str) -> Path:
    """A release directory from a dir, a release id in the store, or a tarball (unpacked into
    a scratch store that is thrown away)."""
    path = Path(ref)
    if path.is_dir():
        return path
    from hotswap.release.store import ReleaseStore, is_tarball_ref

    if is_tarball_ref(ref):
        return ReleaseStore(scratch).unpack(path).root
    return store().get(ref).root


def _startup_of(state_dir: Path, old: Path) -> dict[str, Any] | None:
    """What ran while the active generation of the supervisor of ``state_dir`` started, if
    it runs release ``old`` (what the live engine refuses to change); else None."""
    from hotswap.control import client
    from hotswap.errors import HotswapError
    from hotswap.release.manifest import Manifest

    try:
        active = client.call("status", state_dir=state_dir, timeout=10).get("active") or {}
        release_id = Manifest.load(old).release_id
    except (HotswapError, OSError, ValueError):
        return None  # no supervisor there: the verdict says what it could not know
    if active.get("release") != release_id or not isinstance(active.get("startup_code"), dict):
        return None
    startup: dict[str, Any] = active["startup_code"]
    return startup


def cmd_check(args: argparse.Namespace) -> dict[str, Any]:
    import tempfile

    from hotswap import envfile
    from hotswap.hot import check
    from hotswap.hot.check import static_check
    from hotswap.release.store import remove_tree

    def store() -> ReleaseStore:  # only a release id needs the state dir
        return open_store(args)

    with tempfile.TemporaryDirectory(prefix="hotswap-check-") as scratch:
        try:
            old = _release_dir(args.old, store, scratch)
            new = _release_dir(args.new, store, scratch)
            allow = args.allow_dependency_changes
            if args.static:
                verdict = static_check(old, new, allow_dependency_changes=allow)
            else:
                env, startup = None, None
                if statedir.given(args.state_dir):
                    state = statedir.resolve(args.state_dir)
                    env = envfile.read(state)  # a generation of this state dir gets it
                    startup = _startup_of(state, old)
                verdict = check(
                    old,
                    new,
                    allow_dependency_changes=allow,
                    timeout=args.timeout,
                    env=env,
                    startup=startup,
                )
        finally:
            remove_tree(Path(scratch) / "releases")
    out: dict[str, Any] = verdict.to_json()
    out["text"] = str(verdict)
    if not verdict.ok:
        args.exit_status = EXIT_CHILD
    return out


def render_check(data: dict[str, Any]) -> str:
    return str(data["text"])
