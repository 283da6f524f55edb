"""``tarfile`` hardened for untrusted archives, and the check every member passes.

We do not lean on ``tarfile``'s ``data`` filter: the 3.11.7 this project runs on predates its
2025 and 2026 bypass fixes, and the filter strips a leading ``/`` rather than refusing it.
Instead :class:`SafeTarFile` bounds what ``tarfile`` reads on its own (extended headers, their
chains, sparse maps) and :func:`check_member` refuses any member that is not a plain, safely
named file or directory.
"""

from __future__ import annotations

import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from hotswap.errors import ReleaseError
from hotswap.release.inflate import Inflated
from hotswap.release.record import MAX_PATH, is_safe_relpath, path_too_long, shown

EXTENDED_HEADER_MAX = 64 * 1024  # the data of one pax or GNU long-name header
PAX_RECORDS_MAX = 64  # pax records one member may carry (build writes a few at most)
EXTENDED_CHAIN_MAX = 8  # extended headers in a row before a member
_EXTENDED = frozenset(
    {
        tarfile.XHDTYPE,
        tarfile.XGLTYPE,
        tarfile.SOLARIS_XHDTYPE,
        tarfile.GNUTYPE_LONGNAME,
        tarfile.GNUTYPE_LONGLINK,
    }
)


@dataclass(frozen=True)
class Member:
    name: str
    is_dir: bool
    size: int
    executable: bool
    offset: int = 0  # where its data starts in the inflated stream


class _SafeTarInfo(tarfile.TarInfo):
    """Bounds what ``tarfile`` reads on its own, before a member reaches :func:`check_member`:
    the data of an extended header (read whole into memory), chains of extended headers (each
    one recurses), and every sparse form (whose maps tarfile reads beyond the header)."""

    def _proc_member(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type == tarfile.GNUTYPE_SPARSE:
            _refuse_sparse(self.name)
        if self.type == tarfile.XGLTYPE:
            # tarfile merges a global header into every later member (and iterates it for
            # each): 1 MiB of it before 2,000 empty directories took gigabytes. Build never
            # writes one.
            raise ReleaseError(
                "unsafe_member", "the archive has a global pax header (build never writes one)"
            )
        if self.type not in _EXTENDED:
            assert isinstance(tar, SafeTarFile)
            tar.extended_chain = 0
            return super()._proc_member(tar)  # type: ignore[misc, no-any-return]
        if self.size > EXTENDED_HEADER_MAX:
            raise ReleaseError(
                "unsafe_member",
                f"an extended header ({self.type!r}) is {self.size} bytes "
                f"(at most {EXTENDED_HEADER_MAX})",
            )
        assert isinstance(tar, SafeTarFile)
        tar.extended_chain += 1
        if tar.extended_chain > EXTENDED_CHAIN_MAX:
            raise ReleaseError(
                "unsafe_member",
                f"more than {EXTENDED_CHAIN_MAX} extended headers in a row",
            )
        member: tarfile.TarInfo = super()._proc_member(tar)  # type: ignore[misc]
        if len(member.pax_headers) > PAX_RECORDS_MAX:
            raise ReleaseError(
                "unsafe_member",
                f"member {member.name[:200]!r} has {len(member.pax_headers)} pax records "
                f"(at most {PAX_RECORDS_MAX})",
            )
        return member

    def _apply_pax_info(self, pax_headers: dict[str, str], encoding: str, errors: str) -> None:
        # A pax path that is not the ustar name it extends: tar tools without pax support
        # would write the other name. The ustar field holds at most the first 100 bytes (or
        # prefix + name), with non-ASCII replaced by "?" when Python wrote it.
        path = pax_headers.get("path")
        if path is not None:
            ustar = self.name.rstrip("/")
            wanted = path.rstrip("/")
            ascii_form = wanted.encode("ascii", "replace").decode("ascii")
            if not ustar or not (wanted.startswith(ustar) or ascii_form.startswith(ustar)):
                raise ReleaseError(
                    "unsafe_member",
                    f"member {shown(wanted)} has the ustar name {shown(ustar)}: a pax path "
                    "must extend it",
                    member=wanted[:MAX_PATH],
                )
        super()._apply_pax_info(pax_headers, encoding, errors)  # type: ignore[misc]

    def _proc_gnusparse_00(self, next: tarfile.TarInfo, *args: Any) -> None:
        _refuse_sparse(next.name)

    def _proc_gnusparse_01(self, next: tarfile.TarInfo, *args: Any) -> None:
        _refuse_sparse(next.name)

    def _proc_gnusparse_10(self, next: tarfile.TarInfo, *args: Any) -> None:
        _refuse_sparse(next.name)


def _refuse_sparse(name: str) -> None:
    raise ReleaseError("unsafe_member", f"member {name!r} is a sparse file", member=name)


class SafeTarFile(tarfile.TarFile):
    tarinfo = _SafeTarInfo
    extended_chain = 0


def open_tar(src: Inflated) -> tarfile.TarFile:
    return SafeTarFile(fileobj=src, mode="r")  # type: ignore[arg-type]


def iter_members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """Every header of ``tar`` in order, without keeping them: ``TarFile`` iteration appends
    each ``TarInfo`` (with its pax data) to ``tar.members``, so a long archive of small headers
    would grow memory with nothing checking it."""
    while (info := tar.next()) is not None:
        tar.members.clear()  # type: ignore[attr-defined]
        yield info


def check_member(info: tarfile.TarInfo) -> Member:
    """Refuse any member that is not a plain, safely named file or directory."""
    name = info.name
    too_long = path_too_long(name.rstrip("/"))
    if too_long:
        raise ReleaseError(
            "unsafe_member", f"member {shown(name)} {too_long}", member=name[:MAX_PATH]
        )
    if info.type in (tarfile.REGTYPE, tarfile.AREGTYPE):
        is_dir = False
    elif info.type == tarfile.DIRTYPE:
        is_dir = True
        name = name.rstrip("/")
    else:
        kind = {
            tarfile.SYMTYPE: "a symbolic link",
            tarfile.LNKTYPE: "a hard link",
            tarfile.CHRTYPE: "a character device",
            tarfile.BLKTYPE: "a block device",
            tarfile.FIFOTYPE: "a fifo",
            tarfile.CONTTYPE: "a contiguous file",
            tarfile.GNUTYPE_SPARSE: "a sparse file",
        }.get(info.type, f"of type {info.type!r}")
        raise ReleaseError("unsafe_member", f"member {name!r} is {kind}", member=name)
    if not is_safe_relpath(name):
        raise ReleaseError(
            "unsafe_member",
            f"member {name!r} is not a plain relative path (absolute, '..', or odd characters)",
            member=name,
        )
    if info.mode & (stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX):
        raise ReleaseError(
            "unsafe_member", f"member {name!r} has setuid/setgid/sticky bits", member=name
        )
    if info.sparse is not None:  # GNU sparse files carry their own map: refuse
        _refuse_sparse(name)
    return Member(
        name, is_dir, 0 if is_dir else info.size, bool(info.mode & 0o111), info.offset_data
    )
