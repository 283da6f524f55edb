"""``hotswap env set | unset | list``: the state dir's environment file (secrets and
per-deploy settings, read at every spawn; see :mod:`hotswap.envfile`)."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

from hotswap.cli import add_command, add_common, statedir

if TYPE_CHECKING:
    from hotswap.cli import Subparsers


def register(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "env",
        cmd_env,
        render_env,
        help="set, unset or list the variables every new generation gets (next swap on)",
        example="hotswap env set DATABASE_URL=postgres://db/shop --state-dir /srv/shop/state",
    )
    p.add_argument("action", choices=("set", "unset", "list"))
    p.add_argument("items", nargs="*", metavar="NAME[=VALUE]")
    p.add_argument("--values", action="store_true", help="list: show values too (secrets!)")
    add_common(p)
    p.set_defaults(validate=validate_env)


def validate_env(args: argparse.Namespace) -> str | None:
    if args.action == "set" and (not args.items or not all("=" in i for i in args.items)):
        return "env set needs NAME=VALUE arguments"
    if args.action == "unset" and not args.items:
        return "env unset needs NAME arguments"
    if args.action == "list" and args.items:
        return "env list takes no arguments"
    return None


def cmd_env(args: argparse.Namespace) -> dict[str, Any]:
    from hotswap import envfile

    state_dir = statedir.resolve(args.state_dir)
    if args.action == "set":
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        pairs = dict(item.split("=", 1) for item in args.items)
        envfile.set_variables(state_dir, pairs)
        return {"file": str(envfile.path(state_dir)), "set": sorted(pairs)}
    if args.action == "unset":
        removed = envfile.unset_variables(state_dir, list(args.items))
        return {"file": str(envfile.path(state_dir)), "unset": removed}
    variables = envfile.read(state_dir)
    out: dict[str, Any] = {"file": str(envfile.path(state_dir)), "names": sorted(variables)}
    if args.values:
        out["variables"] = variables
    return out


def render_env(data: dict[str, Any]) -> str:
    if "set" in data:
        return f"set {', '.join(data['set'])} in {data['file']} (new generations get it)"
    if "unset" in data:
        if not data["unset"]:
            return "nothing to unset"
        return f"unset {', '.join(data['unset'])} in {data['file']}"
    if "variables" in data:
        return "\n".join(f"{k}={v}" for k, v in sorted(data["variables"].items())) or "(empty)"
    return "\n".join(data["names"]) or f"(no variables in {data['file']})"
