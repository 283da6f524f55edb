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

CORE = {
    "build",
    "inspect",
    "unpack",
    "releases",
    "run",
    "upgrade",
    "rollback",
    "restart",
    "status",
    "hot-upgrade",
    "check",
    "handoff",
}


def commands() -> dict[str, argparse.ArgumentParser]:
    """Every registered command and its parser."""
    for action in make_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


COMMANDS = sorted(commands())


def test_every_command_group_registers_its_commands() -> None:
    assert set(COMMANDS) >= CORE


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_a_handler_and_a_renderer(command: str) -> None:
    parser = commands()[command]
    assert callable(parser.get_default("handler"))
    assert callable(parser.get_default("render"))


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
