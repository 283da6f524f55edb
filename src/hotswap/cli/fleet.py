"""``hotswap publish | fetch``: the release store on S3-compatible object storage, and
``run --follow``'s start-up resolution (see :mod:`hotswap.fleet`). ``upgrade`` and
``hot-upgrade`` take ``s3://`` URLs through :func:`hotswap.api.local_release`."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from hotswap.cli import add_command, add_common, statedir

if TYPE_CHECKING:
    from pathlib import Path

    from hotswap.cli import Subparsers


def register(sub: Subparsers) -> None:
    _register_publish(sub)
    _register_promote(sub)
    _register_fetch(sub)


def add_follow_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--follow",
        metavar="S3_URL",
        help="at start, boot the release s3://bucket/prefix/current.json names (downloaded and "
        "verified first); if the store cannot be reached, RELEASE or the current one",
    )


def follow(args: argparse.Namespace, state_dir: Path) -> tuple[str | None, str | None]:
    """The release and sha256 ``run`` boots: RELEASE and --sha256, or with ``--follow`` what
    the pointer names (:func:`hotswap.fleet.follow.resolve_follow`)."""
    if not args.follow:
        return args.release, args.sha256
    from hotswap.fleet.follow import resolve_follow

    boot = resolve_follow(args.follow, state_dir, release=args.release, sha256=args.sha256)
    return boot.release, boot.sha256


# -- publish ----------------------------------------------------------------------------------


def _register_publish(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "publish",
        cmd_publish,
        render_publish,
        example="hotswap publish dist/myapp-1.1.0-f6612c7111d9.tar.gz s3://releases/myapp/",
        help="upload a release to s3://bucket/prefix/ and point current.json at it",
        description="Verify TARBALL (as `hotswap inspect`, but not the interpreter), upload it"
        " and its .sha256 under PREFIX, then write PREFIX/current.json naming it. Credentials"
        " and endpoint come from the AWS environment (AWS_ACCESS_KEY_ID, AWS_PROFILE,"
        " AWS_ENDPOINT_URL_S3, ...).",
    )
    p.add_argument("tarball", help="a release .tar.gz made by `hotswap build`")
    p.add_argument("prefix", help="s3://bucket/prefix/ (ending in /)")
    p.add_argument("--sha256", metavar="HEX", help="expected sha256 (default: TARBALL.sha256)")
    p.add_argument(
        "--how",
        choices=("blue-green", "hot"),
        default="blue-green",
        help="how the fleet is meant to take it, recorded in current.json (default blue-green)",
    )
    p.add_argument(
        "--by", metavar="WHO", help="who publishes (default $HOTSWAP_PUBLISHED_BY or user@host)"
    )
    p.add_argument(
        "--no-current",
        action="store_true",
        help="upload only; leave current.json as it is",
    )
    add_common(p, state=False)


def cmd_publish(args: argparse.Namespace) -> dict[str, Any]:
    from hotswap.fleet.publish import publish

    return publish(
        args.tarball,
        args.prefix,
        how=args.how,
        sha256=args.sha256,
        set_current=not args.no_current,
        by=args.by,
    )


def render_publish(data: dict[str, Any]) -> str:
    lines = [f"published {data['release_id']} to {data['tarball']}", f"  sha256   {data['sha256']}"]
    pointer = data.get("pointer")
    if pointer:
        lines.append(
            f"  current  {data['current']} ({pointer['how']}, {pointer['published_at']},"
            f" by {pointer['published_by']})"
        )
    else:
        lines.append("  current.json left as it was")
    return "\n".join(lines)


# -- promote ----------------------------------------------------------------------------------


def _register_promote(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "promote",
        cmd_promote,
        render_publish,
        help="point current.json at a release already in the bucket",
        description="Write current.json beside TARBALL_URL naming it, without uploading or"
        " downloading it (its release id from the object's metadata, its digest from its"
        " .sha256): after `publish --no-current` and a rollout, or to go back to an older"
        " release.",
        example="hotswap promote s3://releases/myapp/myapp-1.1.0-f6612c7111d9.tar.gz",
    )
    p.add_argument("url", help="s3://bucket/prefix/NAME.tar.gz, published by hotswap publish")
    p.add_argument("--how", choices=("blue-green", "hot"), default="blue-green")
    p.add_argument("--by", metavar="WHO", help="who promotes (default as for publish)")
    add_common(p, state=False)


def cmd_promote(args: argparse.Namespace) -> dict[str, Any]:
    from hotswap.fleet.publish import promote

    return promote(args.url, how=args.how, by=args.by)


# -- fetch ------------------------------------------------------------------------------------


def _register_fetch(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "fetch",
        cmd_fetch,
        render_fetch,
        example="hotswap fetch s3://releases/myapp/current.json --state-dir /srv/myapp/state",
        help="download a release from s3:// into the state dir, verified",
        description="URL is s3://bucket/prefix/ or .../current.json (the release it names) or"
        " .../NAME.tar.gz (checked against --sha256, else NAME.tar.gz.sha256). The tarball is"
        " streamed into STATE_DIR/downloads/ and kept only if its sha256 is the expected one.",
    )
    p.add_argument("url", help="s3://bucket/prefix/[current.json | NAME.tar.gz]")
    p.add_argument("--sha256", metavar="HEX", help="expected sha256")
    p.add_argument(
        "--head",
        action="store_true",
        help="download nothing: print which release URL names and its sha256",
    )
    add_common(p)


def cmd_fetch(args: argparse.Namespace) -> dict[str, Any]:
    from hotswap.fleet.fetch import fetch, locate

    if args.head:
        return {"ok": True, **locate(args.url, sha256=args.sha256).to_json()}
    fetched = fetch(args.url, statedir.resolve(args.state_dir), sha256=args.sha256)
    return {"ok": True, **fetched.to_json()}


def render_fetch(data: dict[str, Any]) -> str:
    what = data["release_id"] or "(release id unknown until unpacked)"
    lines = [f"{data['url']}: {what}", f"  sha256   {data['sha256']}"]
    if "path" in data:
        how = "downloaded" if data["downloaded"] else "already downloaded"
        lines.append(f"  local    {data['path']} ({how})")
    return "\n".join(lines)
