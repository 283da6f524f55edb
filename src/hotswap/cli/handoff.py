"""``hotswap handoff get | put | list | delete``: the running supervisor's handoff store."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from hotswap.cli import add_command, add_common, statedir
from hotswap.cli.render import show

if TYPE_CHECKING:
    from hotswap.cli import Subparsers


def register(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "handoff",
        cmd_handoff,
        render_handoff,
        example="hotswap handoff put sessions '{\"users\": 3}'",
        help="read and write the handoff store",
    )
    p.add_argument("action", choices=("get", "put", "list", "delete"))
    p.add_argument("key", nargs="?")
    p.add_argument("value", nargs="?", help="JSON (a bare word is stored as a string)")
    add_common(p)
    p.set_defaults(validate=validate_handoff)


def validate_handoff(args: argparse.Namespace) -> str | None:
    """What is missing from the arguments, or None."""
    if args.action != "list" and not args.key:
        return f"handoff {args.action} needs a KEY"
    if args.action == "put" and args.value is None:
        return "handoff put needs a KEY and a VALUE"
    return None


def cmd_handoff(args: argparse.Namespace) -> dict[str, Any]:
    from hotswap import api

    state = statedir.resolve(args.state_dir)
    if args.action == "get":
        return {"key": args.key, "value": api.get_handoff(args.key, state_dir=state)}
    if args.action == "put":
        try:
            value = json.loads(args.value)
        except json.JSONDecodeError:
            value = args.value  # a bare string
        api.put_handoff(args.key, value, state_dir=state)
        return {"key": args.key, "stored": True}
    if args.action == "delete":
        return {"key": args.key, "deleted": api.delete_handoff(args.key, state_dir=state)}
    return {"handoff": api.get_all_handoff(state_dir=state)}


def render_handoff(data: dict[str, Any]) -> str:
    if "handoff" in data:
        items = data["handoff"]
        if not items:
            return "(the handoff store is empty)"
        return "\n".join(f"{k} = {show(v)}" for k, v in sorted(items.items()))
    if "value" in data:
        return show(data["value"])
    return json.dumps(data)
