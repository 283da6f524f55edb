"""``hotswap run | upgrade | rollback | restart``: the supervisor in the foreground, and the
commands that swap a running one through its control socket (``status``: :mod:`.status`)."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hotswap import contract
from hotswap.cli import add_command, add_common, statedir
from hotswap.cli.fleet import add_follow_option, follow
from hotswap.cli.render import PhasePrinter
from hotswap.errors import ResourceError, UsageError

if TYPE_CHECKING:
    import socket

    from hotswap.cli import Subparsers
    from hotswap.release.store import Release, ReleaseStore
    from hotswap.supervisor.listeners import BindSpec


def register(sub: Subparsers) -> None:
    _register_run(sub)
    _register_upgrade(sub)
    _register_rollback(sub)
    _register_restart(sub)


# -- run --------------------------------------------------------------------------------------


RUN_STATE_HELP = statedir.APP_HELP[:-1] + ", else the only state dir there)"


def _register_run(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "run",
        cmd_run,
        help="run the supervisor in the foreground",
        description="Verify RELEASE (a tarball or a release id; default: the current release"
        " of the state dir) and unpack it into the store, then bind the listeners once and"
        " serve it from a child generation. A release that cannot be found or verified fails"
        " before anything is bound. SIGTERM/SIGINT drain and exit; SIGHUP restarts the current"
        " release blue-green. Started by systemd with LISTEN_FDS (socket activation), it"
        " serves on the sockets passed instead of binding. Exit status: 0 after a drain, 1"
        " when a generation kept dying (too many restarts), else the first boot's error"
        " status (2 usage, 3 release, 4 the generation failed, 5 resource).",
        example="hotswap run dist/myapp-1.0.0-3ac7f1a07546.tar.gz --bind 127.0.0.1:8000",
    )
    p.add_argument("release", nargs="?", help="release tarball or id (default: current)")
    p.add_argument(
        "--initial",
        metavar="TARBALL",
        help="boot this release only when the state dir has none deployed yet (what a unit "
        "file wants: the first start boots it, every later start boots the current release)",
    )
    p.add_argument(
        "-b",
        "--bind",
        action="append",
        metavar="[NAME=]ADDR",
        help="HOST:PORT, [IPV6]:PORT, :PORT or unix:PATH; repeatable (default 127.0.0.1:8000)",
    )
    p.add_argument("--sha256", metavar="HEX", help="expected tarball sha256")
    p.add_argument(
        "--workers",
        type=workers_arg,
        metavar="N",
        help="worker processes per generation, or 'auto' (the CPU count); overrides the "
        "release's [tool.hotswap] workers (default: the release's, else 1)",
    )
    p.add_argument(
        "--restart-backoff",
        type=float,
        default=contract.RESTART_INITIAL,
        metavar="S",
        help="first delay before restarting a generation that died (doubles to "
        f"{contract.RESTART_MAXIMUM:g} s; default {contract.RESTART_INITIAL:g})",
    )
    p.add_argument(
        "--max-restarts",
        type=int,
        default=contract.MAX_RESTARTS,
        metavar="N",
        help="give up (exit 1) after N restarts within --restart-window (default "
        f"{contract.MAX_RESTARTS})",
    )
    p.add_argument(
        "--restart-window",
        type=float,
        default=contract.RESTART_WINDOW,
        metavar="S",
        help=f"default {contract.RESTART_WINDOW:g} s",
    )
    p.add_argument(
        "--stability-window",
        type=float,
        default=contract.STABILITY_WINDOW,
        metavar="S",
        help="a new release dying within S seconds of its cutover is rolled back to the one it "
        f"replaced (0: never; default {contract.STABILITY_WINDOW:g})",
    )
    p.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics from the supervisor (needs "
        "hotswap[metrics]; default: the release's [tool.hotswap] metrics, else none)",
    )
    p.add_argument(
        "--log-format",
        choices=("human", "json"),
        default="human",
        help="the supervisor's log on stderr: lines for people (default), or one JSON object a "
        "line (time, level, source, worker, event, message, swap, fields) for a collector",
    )
    add_follow_option(p)
    add_common(p, state_help=RUN_STATE_HELP)
    p.set_defaults(error_tail=0)  # the supervisor's log already shows the generation's output


def workers_arg(text: str) -> int | str:
    from hotswap.release.config import MAX_WORKERS

    if text == "auto":
        return text
    with contextlib.suppress(ValueError):
        if 1 <= (value := int(text)) <= MAX_WORKERS:
            return value
    raise argparse.ArgumentTypeError(
        f'must be an integer in [1, {MAX_WORKERS}] or "auto", not {text!r}'
    )


def _binds(args: argparse.Namespace) -> list[BindSpec]:
    """The sockets systemd passed (LISTEN_FDS), else ``--bind``'s, parsed: none bound yet."""
    import os

    from hotswap import systemd
    from hotswap.supervisor.listeners import parse_bind

    activated = systemd.activated_binds(os.environ, os.getpid())
    if activated and args.bind:
        raise UsageError(
            "bad_config",
            f"systemd passed {len(activated)} listening socket(s) (LISTEN_FDS): --bind is not "
            "used with socket activation",
            key="bind",
        )
    return activated or [parse_bind(b) for b in (args.bind or ["127.0.0.1:8000"])]


def prepare_run(args: argparse.Namespace) -> tuple[ReleaseStore, str | None, str | None]:
    """The store, the release ``run`` serves and its sha256, verified and unpacked: everything
    that can be refused is refused here, before a listener is bound."""
    store, ref, sha256, _release = _prepare_run(args)
    return store, ref, sha256


def _prepare_run(
    args: argparse.Namespace,
) -> tuple[ReleaseStore, str | None, str | None, Release]:
    from hotswap.release.store import ReleaseStore, absolute_ref, is_tarball_ref

    store = None
    release, sha256 = args.release, args.sha256
    if args.follow:  # --follow s3://...: what current.json names, downloaded into the store
        store = ReleaseStore(statedir.resolve(args.state_dir))
        release, sha256 = follow(args, store.state_dir)
    ref = absolute_ref(release) if release else None  # "" is the current one too
    initial = absolute_ref(args.initial) if args.initial else None
    if store is None:
        named = ref or initial  # a tarball names its app, and so the app's state dir
        app = None
        if named is not None and is_tarball_ref(named) and not statedir.given(args.state_dir):
            app = statedir.app_of(named, sha256)
        store = ReleaseStore(statedir.resolve(args.state_dir, app=app))
    if ref is None and initial is not None and not store.read_state()["current"]:
        ref = initial
    if ref is None:
        current = store.read_state()["current"]
        if not current:
            raise UsageError(
                "release_not_found",
                f"nothing is deployed in {store.state_dir} yet: give a release tarball to run",
            )
        release = store.get(str(current))
    elif is_tarball_ref(ref):
        release = store.unpack(Path(ref), expected_sha256=sha256)  # quiet: the supervisor logs
    else:
        release = store.get(ref)
    return store, ref, sha256, release


def _metrics_address(text: object, where: str) -> tuple[str, int]:
    """``--metrics`` (or the release's ``metrics``), parsed; ``extra_missing`` without
    prometheus_client. Refused before anything is bound."""
    from hotswap.release.config import parse_metrics_address

    address = parse_metrics_address(text, where)
    try:
        import prometheus_client  # noqa: F401
    except ImportError as e:
        raise ResourceError(
            "extra_missing",
            f"{where} needs prometheus_client, which cannot be imported ({e}): "
            "pip install 'hotswap[metrics]'",
            extra="metrics",
        ) from None
    return address


def _bind_metrics(address: tuple[str, int]) -> socket.socket:
    import socket

    from hotswap.supervisor import listeners

    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    return listeners.bind(listeners.BindSpec("metrics", family, address)).sock


def cmd_run(args: argparse.Namespace) -> dict[str, Any]:
    import asyncio

    from hotswap.supervisor.core import Supervisor
    from hotswap.supervisor.policy import RestartPolicy

    metrics = _metrics_address(args.metrics, "--metrics") if args.metrics else None
    binds = _binds(args)
    store, ref, sha256, release = _prepare_run(args)
    configured = release.manifest.app_config().metrics
    if metrics is None and configured is not None:  # --metrics wins over the release's
        metrics = _metrics_address(configured, "[tool.hotswap] metrics")
    policy = RestartPolicy(
        initial=args.restart_backoff, max_restarts=args.max_restarts, window=args.restart_window
    )
    supervisor = Supervisor(
        store.state_dir,
        binds,
        release=ref,
        sha256=sha256,
        policy=policy,
        stability_window=args.stability_window,
        workers=args.workers,
    )
    supervisor.logs.format = args.log_format
    try:
        if metrics is None:
            code = asyncio.run(supervisor.run())
        else:
            from hotswap.supervisor import metrics_endpoint as metrics_mod

            code = asyncio.run(metrics_mod.serve(supervisor, _bind_metrics(metrics)))
    except OSError as e:  # e.g. control.sock cannot be replaced: a code, not a trace
        raise ResourceError("io_error", f"the supervisor could not start: {e}") from e
    if supervisor.start_error is not None:
        raise supervisor.start_error  # exits with its class's status, printed as every error
    raise SystemExit(code)


# -- upgrade / rollback -----------------------------------------------------------------------


def _register_upgrade(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "upgrade",
        cmd_upgrade,
        render_swap,
        example="hotswap upgrade dist/myapp-1.1.0-f6612c7111d9.tar.gz --state-dir /srv/myapp/state",
        help="blue-green swap the running app to a release",
    )
    p.add_argument(
        "release", help="release tarball, the id of a release in the store, or an s3:// URL"
    )
    p.add_argument("--sha256", metavar="HEX", help="expected tarball sha256")
    p.add_argument(
        "--allow-other-app",
        action="store_true",
        help="swap to a release of another app than the one serving (refused otherwise)",
    )
    add_common(p)


def cmd_upgrade(args: argparse.Namespace) -> dict[str, Any]:
    from hotswap import api

    return api.upgrade(
        args.release,
        sha256=args.sha256,
        state_dir=statedir.resolve(args.state_dir, tarball=args.release),
        on_phase=PhasePrinter(args.quiet or args.json),
        allow_other_app=args.allow_other_app,
    )


def _register_rollback(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "rollback",
        cmd_rollback,
        render_swap,
        help="blue-green swap back to the previous release",
        description="Blue-green swap the running app back to the previous release (the one"
        " state.json names as previous). The swap makes the release it leaves the new"
        " previous, so a second rollback rolls forward again: rollback toggles between the"
        " last two releases. To go further back, `hotswap upgrade RELEASE_ID` (see"
        " `hotswap releases`).",
        example="hotswap rollback --state-dir /srv/myapp/state",
    )
    add_common(p)


def cmd_rollback(args: argparse.Namespace) -> dict[str, Any]:
    from hotswap import api

    state = statedir.resolve(args.state_dir)
    return api.rollback(state_dir=state, on_phase=PhasePrinter(args.quiet or args.json))


def _register_restart(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "restart",
        cmd_restart,
        render_swap,
        example="hotswap restart --state-dir /srv/myapp/state",
        help="blue-green restart of the current release (what SIGHUP does, but it waits)",
        description="Boot a new generation from the current release, gate it, cut over and "
        "drain the old one; returns when it serves, or fails with the error while the old one "
        "keeps serving. The ExecReload= of `hotswap systemd-unit`.",
    )
    add_common(p)


def cmd_restart(args: argparse.Namespace) -> dict[str, Any]:
    from hotswap import api

    state = statedir.resolve(args.state_dir)
    current = api.status(state_dir=state)["current"]
    if not current:
        raise UsageError(
            "release_not_found", "nothing is deployed yet: there is nothing to restart"
        )
    return api.upgrade(
        str(current), state_dir=state, on_phase=PhasePrinter(args.quiet or args.json)
    )


def pids(data: dict[str, Any]) -> str:
    """``pid 41`` or ``3 workers, pids 41, 42, 43``."""
    many = data.get("pids") or []
    if len(many) > 1:
        return f"{len(many)} workers, pids {', '.join(map(str, many))}"
    return f"pid {data['pid']}"


def render_swap(data: dict[str, Any]) -> str:
    timings = "  ".join(f"{k} {v:.0f}ms" for k, v in data.get("timings_ms", {}).items())
    line = (
        f"{data['how']}: now serving {data['release']} as generation {data['generation']}"
        f" ({pids(data)}) in {data['total_ms']:.0f} ms"
    )
    return line + (f"\n  {timings}" if timings else "")
