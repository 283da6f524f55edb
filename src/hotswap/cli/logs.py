"""``hotswap logs``: the supervisor's recent log lines (its own and its children's), read from
the ring it keeps (so they are there without journald); ``-f`` follows, and
``status --watch`` (:func:`watch_status`): the status, again on each change.

Both follow a running supervisor through one control connection and end the same ways:
Ctrl-C (status 130), a reader that went away (141, quietly), or the supervisor stopping
(``not_running``, status 2, saying so).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any

from hotswap import contract
from hotswap.cli import add_command, add_common, statedir
from hotswap.cli.render import steady_status, watch_screen
from hotswap.errors import HotswapError, UsageError

if TYPE_CHECKING:
    from hotswap.cli import Subparsers
    from hotswap.control.client import Client

FOLLOW_WAIT = 10.0  # each `logs` request of -f waits this long for a new line
WATCH_INTERVAL = 0.1  # status --watch asks this often


def register(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "logs",
        cmd_logs,
        render_logs,
        help="the supervisor's recent log lines, its generations' output included",
        description="Print the last N lines the supervisor logged, its own and its generations'"
        " and services' output, from the ring it keeps in memory (2,000 lines, 1 MiB): what a"
        " failed boot printed is there without journald. With -f, then print new lines as they"
        " come, until Ctrl-C or the supervisor stops (status 2, not_running). With --json, one"
        " object (`lines`, each as `hotswap run --log-format json` prints it); with -f, one"
        " JSON object per line.",
        example="hotswap logs -n 50 --state-dir /srv/myapp/state",
    )
    p.add_argument(
        "-n",
        "--lines",
        type=int,
        default=100,
        metavar="N",
        help="the last N lines (default 100; 0 with -f: only new ones)",
    )
    p.add_argument("-f", "--follow", action="store_true", help="then print new lines as they come")
    add_common(p)
    p.set_defaults(validate=_validate)


def _validate(args: argparse.Namespace) -> str | None:
    return "-n must be 0 or more" if args.lines < 0 else None


def _client(args: argparse.Namespace, timeout: float) -> Client:
    from hotswap.control.client import Client, control_path

    return Client(control_path(statedir.resolve(args.state_dir)), timeout=timeout)


def _public(line: dict[str, Any]) -> dict[str, Any]:
    """An entry as ``--log-format json`` prints it (the ring also keeps its human text)."""
    return {k: v for k, v in line.items() if k != "text"}


def human_line(line: dict[str, Any]) -> str:
    """``2026-12-02 02:31:07.532 [gen 2] Started server process [3301]``."""
    return f"{str(line['time'])[:23].replace('T', ' ')} {line['text']}"


def cmd_logs(args: argparse.Namespace) -> dict[str, Any] | None:
    limit = min(args.lines, 2000)
    if not args.follow:
        with _client(args, 30.0) as client:
            data = client.call(contract.OP_LOGS, limit=limit)
        return {**data, "lines": [_public(x) for x in data["lines"]]} if args.json else data
    with _client(args, FOLLOW_WAIT + 20.0) as client:
        data = client.call(contract.OP_LOGS, limit=limit)
        while True:
            for line in data["lines"]:
                print(json.dumps(_public(line)) if args.json else human_line(line), flush=True)
            cursor = data["next"]
            try:
                data = client.call(contract.OP_LOGS, after=cursor, wait=FOLLOW_WAIT)
            except HotswapError as e:
                raise _gone(e) from None
            if data["missed"]:  # more came between two reads than the ring holds
                print(f"hotswap: {data['missed']} lines were not kept", file=sys.stderr)


def render_logs(data: dict[str, Any]) -> str:
    return "\n".join(human_line(x) for x in data["lines"]) if data["lines"] else ""


def _gone(error: HotswapError) -> HotswapError:
    """What a follow ends with when a request fails: a supervisor that went away mid-follow
    (its connection closed) is ``not_running``."""
    if error.code in ("protocol_error", "not_running"):
        return UsageError("not_running", "the supervisor stopped")
    return error


# -- status --watch ---------------------------------------------------------------------------


def watch_status(args: argparse.Namespace, render: Any) -> None:
    """Ask for the status every ``--interval`` seconds; on a TTY (and without --json) redraw
    it (``render``, and a running swap's progress line), else print it as one JSON line each
    time it changed (the status without its ever-ticking fields: uptimes, elapsed times)."""
    screen = sys.stdout.isatty() and not args.json
    last: Any = None
    with _client(args, 10.0) as client:
        status = client.call(contract.OP_STATUS)  # not running: refused as plain status is
        while True:
            key = steady_status(status)
            if screen:
                if key != last or status["upgrading"]:
                    sys.stdout.write(watch_screen(render(status), status))
                    sys.stdout.flush()
            elif key != last:
                print(json.dumps(status, sort_keys=True), flush=True)
            last = key
            time.sleep(args.interval)
            try:
                status = client.call(contract.OP_STATUS)
            except HotswapError as e:
                raise _gone(e) from None
