"""Write a release tree as a deterministic ``.tar.gz`` with its ``.sha256`` beside it.

Same tree and same ``mtime`` give byte-identical output: members sorted by name, regular
files and directories only, modes normalised to 0644/0755, uid/gid 0 with no user or group
names, every mtime fixed, and a gzip header with mtime 0 and no file name.
"""

from __future__ import annotations

import gzip
import os
import tarfile
from pathlib import Path

from hotswap.errors import ReleaseError
from hotswap.release.record import sha256_of


def _members(root: Path) -> list[tuple[str, Path]]:
    out: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath, name)
            if full.is_symlink():
                raise ReleaseError("unsafe_member", f"{full} is a symbolic link")
            out.append((full.relative_to(root).as_posix(), full))
    out.sort()
    return out


def write_tarball(root: Path, out: Path, *, mtime: int) -> str:
    """Write ``out`` (``.tar.gz``) and ``out.sha256``; return the hex sha256."""
    tmp = out.with_name(out.name + ".part")
    with open(tmp, "wb") as raw:
        with (
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz,
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            for name, path in _members(root):
                st = path.stat()
                info = tarfile.TarInfo(name)
                info.mtime = mtime
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                if path.is_dir():
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    tar.addfile(info)
                elif path.is_file():
                    info.size = st.st_size
                    info.mode = 0o755 if st.st_mode & 0o111 else 0o644
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
                else:
                    raise ReleaseError("unsafe_member", f"{path} is not a regular file")
        raw.flush()
        os.fsync(raw.fileno())
    digest = sha256_file(tmp)
    os.replace(tmp, out)
    sidecar = out.with_name(out.name + ".sha256")
    sidecar.write_text(f"{digest}  {out.name}\n", encoding="ascii")
    return digest


def sha256_file(path: Path) -> str:
    return sha256_of(path)[0].hex()
