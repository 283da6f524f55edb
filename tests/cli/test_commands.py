"""The CLI package's plumbing, in-process: each command group registers its commands with a
handler and a renderer, and an error's exit status follows its fault class along the MRO."""

from __future__ import annotations

import argparse

import pytest

from hotswap.cli import (
    EXIT_CHILD,
    EXIT_RELEASE,
    EXIT_RESOURCE,
    EXIT_USAGE,
    exit_status,
    make_parser,
)
from hotswap.errors import ChildError, HotswapError, ReleaseError, ResourceError, UsageError

COMMANDS = {
    "build": [],
    "inspect": ["x.tar.gz"],
    "unpack": ["x.tar.gz"],
    "releases": [],
    "run": [],
    "upgrade": ["x.tar.gz"],
    "rollback": [],
    "status": [],
    "hot-upgrade": ["x.tar.gz"],
    "check": ["a", "b"],
    "handoff": ["list"],
    "restart": [],
    "publish": ["x.tar.gz", "s3://bucket/prefix/"],
    "fetch": ["s3://bucket/prefix/"],
    "systemd-unit": ["--name", "app"],
}


def _subcommands(parser: argparse.ArgumentParser) -> set[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    raise AssertionError("no subcommands")


def test_every_command_group_registers_its_commands() -> None:
    assert _subcommands(make_parser()) == set(COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_command_has_a_handler_and_a_renderer(command: str) -> None:
    args = make_parser().parse_args([command, *COMMANDS[command]])
    assert callable(args.handler)
    assert callable(args.render)
    assert args.command == command


@pytest.mark.parametrize(
    ("cls", "status"),
    [
        (UsageError, EXIT_USAGE),
        (ReleaseError, EXIT_RELEASE),
        (ChildError, EXIT_CHILD),
        (ResourceError, EXIT_RESOURCE),
    ],
)
def test_a_subclass_exits_as_its_fault_class_does(cls: type[HotswapError], status: int) -> None:
    sub = type(f"Special{cls.__name__}", (cls,), {})
    code = sorted(cls.codes)[0]
    assert exit_status(cls(code, "base")) == status
    assert exit_status(sub(code, "subclass")) == status
