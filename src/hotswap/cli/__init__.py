"""The ``hotswap`` command.

Every subcommand prints human text by default and one JSON object with ``--json`` (progress
goes to stderr either way, so stdout stays parseable). Errors print their stable code; the
exit status says whose fault it was (see ``EXIT_*``).

Each command group is a module (:mod:`~hotswap.cli.release`, :mod:`~hotswap.cli.supervisor`,
:mod:`~hotswap.cli.status`,
:mod:`~hotswap.cli.hot`, :mod:`~hotswap.cli.handoff`) with a ``register(subparsers)`` that
adds its commands: each command's parser sits beside its handler and its human renderer, and
:func:`add_command` ties the three together. A new group is a new module plus one entry in
:data:`COMMAND_GROUPS`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import hotswap
from hotswap.cli import statedir
from hotswap.cli.render import as_json, error_text
from hotswap.errors import ChildError, HotswapError, ReleaseError, ResourceError, UsageError

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

EXIT_OK = 0
EXIT_USAGE = 2  # the caller asked for something wrong
EXIT_RELEASE = 3  # the release artifact is bad
EXIT_CHILD = 4  # a generation failed; the old one keeps serving
EXIT_RESOURCE = 5  # a tool, the disk, the supervisor
EXIT_INTERRUPTED = 128 + signal.SIGINT  # Ctrl-C
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE  # stdout closed early (`| head`), as a shell reports it
_EXITS: dict[type[HotswapError], int] = {
    UsageError: EXIT_USAGE,
    ReleaseError: EXIT_RELEASE,
    ChildError: EXIT_CHILD,
    ResourceError: EXIT_RESOURCE,
}

# The modules under hotswap.cli whose register(subparsers) adds commands, in --help order.
COMMAND_GROUPS = (
    "release",
    "supervisor",
    "status",
    "hot",
    "handoff",
    "env",
    "fleet",
    "systemd",
    "logs",
)

ERROR_TAIL = 15  # lines of a failed generation's output shown under a human error

# returns the JSON object; None when it printed its output itself (a stream: logs -f)
Handler = Callable[[argparse.Namespace], dict[str, Any] | None]
Renderer = Callable[[dict[str, Any]], str]


def exit_status(error: HotswapError) -> int:
    """The exit status of an error: its fault class's, found along the MRO, so a subclass
    maps as its base does."""
    for cls in type(error).__mro__:
        if cls in _EXITS:
            return _EXITS[cls]
    return EXIT_RESOURCE


# -- shared option helpers --------------------------------------------------------------------


class HelpFormatter(argparse.HelpFormatter):
    """argparse's, but an ``example:`` line is printed as it is, never wrapped, so it can be
    copied."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("example: "):
            return indent + text
        return super()._fill_text(text, width, indent)


def add_command(
    sub: Subparsers,
    name: str,
    handler: Handler,
    render: Renderer = as_json,
    *,
    example: str | None = None,
    **kwargs: Any,
) -> argparse.ArgumentParser:
    """Add the command ``name``: ``handler(args)`` returns the JSON object; ``render(data)``
    turns it into the human text (default: the JSON, indented); ``example`` is a command
    line shown at the end of ``--help``. ``kwargs`` go to ``add_parser`` (``help``,
    ``description``, ...)."""
    if example is not None:
        kwargs.setdefault("epilog", f"example: {example}")
    kwargs.setdefault("formatter_class", HelpFormatter)
    p = sub.add_parser(name, **kwargs)
    p.set_defaults(handler=handler, render=render, command_parser=p)
    return p


def add_common(
    p: argparse.ArgumentParser, *, state: bool = True, state_help: str = statedir.HELP
) -> None:
    """``--json``, ``--quiet`` and (with ``state``) ``--state-dir``."""
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    if state:
        p.add_argument("--state-dir", metavar="DIR", help=state_help)


def add_verify_options(p: argparse.ArgumentParser) -> None:
    """TARBALL and the options that bound its verification."""
    p.add_argument("tarball", help="a release .tar.gz made by `hotswap build`")
    p.add_argument("--sha256", metavar="HEX", help="expected sha256 (default: read TARBALL.sha256)")
    p.add_argument("--max-bytes", type=int, metavar="N", help="refuse above N unpacked bytes")
    p.add_argument("--max-files", type=int, metavar="N", help="refuse above N entries")


# -- plumbing ---------------------------------------------------------------------------------


class BadArguments(Exception):
    """The command line does not parse: raised instead of argparse's print-and-exit, so that
    ``--json`` gets its JSON error as every other refusal does."""

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser
        self.message = message


class Parser(argparse.ArgumentParser):
    """argparse, with errors raised as :class:`BadArguments` (subparsers inherit the class)."""

    def error(self, message: str) -> NoReturn:
        raise BadArguments(self, message)


def make_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="hotswap",
        description="Blue-green release swaps and in-process hot upgrades for Python services.",
    )
    parser.add_argument("--version", action="version", version=f"hotswap {hotswap.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in COMMAND_GROUPS:
        importlib.import_module(f"hotswap.cli.{group}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status. A reader that goes away early (``| head``)
    ends the command quietly, as other Unix tools do, without a traceback."""
    try:
        status = _main(argv)
        sys.stdout.flush()  # here, not at interpreter exit, so a closed pipe is caught
    except BrokenPipeError:
        # nothing more can be written; point stdout at /dev/null so the final flush is quiet
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE
    return status


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = make_parser()
    try:
        args = parser.parse_args(argv)
        validate: Callable[[argparse.Namespace], str | None] | None
        validate = getattr(args, "validate", None)
        problem = validate(args) if validate is not None else None
        if problem:
            getattr(args, "command_parser", parser).error(problem)
    except BadArguments as e:
        if "--json" in argv:
            error = UsageError("bad_arguments", e.message, usage=e.parser.format_usage().strip())
            print(json.dumps({"ok": False, "error": error.to_json()}, indent=2))
        e.parser.print_usage(sys.stderr)
        print(f"{e.parser.prog}: error: {e.message}", file=sys.stderr)
        return EXIT_USAGE
    handler: Handler = args.handler
    try:
        data = handler(args)
    except HotswapError as e:
        return _refuse(args, e)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        raise
    except OSError as e:  # what no layer below mapped: still a code, never a traceback
        return _refuse(args, ResourceError("io_error", f"{type(e).__name__}: {e}"))
    if data is None:
        pass
    elif args.json:
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        render: Renderer = args.render
        print(render(data))
    return int(getattr(args, "exit_status", EXIT_OK))


def _refuse(args: argparse.Namespace, error: HotswapError) -> int:
    """Print ``error`` (JSON on stdout with ``--json``, else text on stderr); its status."""
    if args.json:
        print(json.dumps({"ok": False, "error": error.to_json()}, indent=2))
    else:
        print(error_text(error, tail=int(getattr(args, "error_tail", ERROR_TAIL))), file=sys.stderr)
    return exit_status(error)
