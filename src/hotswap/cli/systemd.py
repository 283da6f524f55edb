"""``hotswap systemd-unit``: the unit files that run a supervisor under systemd."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hotswap.cli import add_command, add_common
from hotswap.cli.supervisor import workers_arg

if TYPE_CHECKING:
    from hotswap.cli import Subparsers


def register(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "systemd-unit",
        cmd_systemd_unit,
        render_units,
        help="print systemd units that run the supervisor (Type=notify, reload = blue-green)",
        description="Print NAME.service (and with --socket one NAME.socket per listener name) "
        "for a supervisor of this state dir (default /var/lib/NAME). With --release the unit "
        "boots that tarball the first time, the current release every later time, and takes "
        "its shutdown_timeout.",
        example="hotswap systemd-unit --name shop --bind 127.0.0.1:8000"
        " --state-dir /var/lib/shop --release dist/shop-1.0.0-*.tar.gz -o /etc/systemd/system",
    )
    p.add_argument("--name", required=True, help="the unit's name (NAME.service)")
    p.add_argument(
        "-b",
        "--bind",
        action="append",
        metavar="[NAME=]ADDR",
        help="as for `hotswap run`; repeatable (default 127.0.0.1:8000)",
    )
    p.add_argument("--release", metavar="TARBALL", help="the release the first start boots")
    p.add_argument("--user", help="User= (default: none, i.e. root)")
    p.add_argument("--group", help="Group=")
    p.add_argument(
        "--socket",
        action="store_true",
        help="socket activation: the ports belong to NAME.socket and outlive the service",
    )
    p.add_argument(
        "--shutdown-timeout",
        type=float,
        metavar="S",
        help="for TimeoutStopSec (default: the release's shutdown_timeout, else 30)",
    )
    p.add_argument(
        "--hotswap",
        metavar="PATH",
        help="the hotswap executable (default: the one running this command)",
    )
    p.add_argument(
        "--workers",
        type=workers_arg,
        metavar="N",
        help="ExecStart runs `hotswap run --workers N` (default: the release's workers)",
    )
    p.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help="ExecStart runs `hotswap run --metrics HOST:PORT`",
    )
    p.add_argument("-o", "--output", metavar="DIR", help="write the files into DIR")
    add_common(p)


def _executable() -> str:
    beside = Path(sys.executable).with_name("hotswap")
    if beside.exists():
        return str(beside)
    return shutil.which("hotswap") or str(beside)


def cmd_systemd_unit(args: argparse.Namespace) -> dict[str, Any]:
    from hotswap.release.config import (
        DEFAULT_BOOT_TIMEOUT,
        DEFAULT_HEALTH_TIMEOUT,
        DEFAULT_SHUTDOWN_TIMEOUT,
    )
    from hotswap.release.store import ReleaseStore, absolute_ref
    from hotswap.systemd import UnitOptions, service_unit, socket_units, warnings

    # a system service keeps its state in /var/lib/NAME (StateDirectory=), not in a home dir
    state_dir = Path(
        args.state_dir or os.environ.get("HOTSWAP_STATE_DIR") or f"/var/lib/{args.name}"
    ).absolute()
    timeouts: dict[str, float] = {
        "shutdown_timeout": DEFAULT_SHUTDOWN_TIMEOUT,
        "boot_timeout": DEFAULT_BOOT_TIMEOUT,
        "health_timeout": DEFAULT_HEALTH_TIMEOUT,
    }
    extra: list[str] = []
    if args.release:
        tarball = absolute_ref(args.release)
        app = ReleaseStore(state_dir).inspect(Path(tarball)).manifest.app
        timeouts.update({k: float(app[k]) for k in timeouts if k in app})
        extra = ["--initial", tarball]
    if args.workers is not None:
        extra += ["--workers", str(args.workers)]
    if args.metrics:
        from hotswap.release.config import parse_metrics_address

        parse_metrics_address(args.metrics, "--metrics")  # bad_config now, not at the start
        extra += ["--metrics", args.metrics]
    if args.shutdown_timeout is not None:
        timeouts["shutdown_timeout"] = args.shutdown_timeout
    opts = UnitOptions(
        name=args.name,
        state_dir=state_dir,
        binds=args.bind or ["127.0.0.1:8000"],
        hotswap=args.hotswap or _executable(),
        user=args.user,
        group=args.group,
        socket_activation=args.socket,
        extra_args=extra,
        shutdown_timeout=timeouts["shutdown_timeout"],
        boot_timeout=timeouts["boot_timeout"],
        health_timeout=timeouts["health_timeout"],
    )
    files = {f"{args.name}.service": service_unit(opts)}
    if args.socket:
        files.update(socket_units(opts))
    written: list[str] = []
    if args.output:
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (out / name).write_text(text)
            written.append(str(out / name))
    problems = warnings(opts)
    for problem in problems:
        print(f"hotswap: warning: {problem}", file=sys.stderr)
    return {"files": files, "written": written, "warnings": problems}


def render_units(data: dict[str, Any]) -> str:
    if data["written"]:
        lines = [f"wrote {path}" for path in data["written"]]
        names = " ".join(Path(p).name for p in data["written"])
        lines.append(f"then: systemctl daemon-reload && systemctl enable --now {names}")
        return "\n".join(lines)
    return "\n".join(f"# {name}\n{text}" for name, text in data["files"].items()).rstrip()
