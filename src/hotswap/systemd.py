"""systemd: the units `hotswap systemd-unit` prints; listeners passed by socket activation.

Pure text in, text out, except :func:`inherited` which looks at descriptors. What the units
promise, directive by directive:

- ``Type=notify``: the supervisor sends ``READY=1`` after its first generation passed its
  probe, ``RELOADING=1`` and ``READY=1`` around each blue-green swap, ``STOPPING=1`` at exit.
- ``ExecReload=hotswap restart``: a blue-green restart of the current release, synchronous, so
  ``systemctl reload`` returns when the new generation serves (or fails with the error's exit
  status while the old one keeps serving).
- ``KillMode=mixed``: ``systemctl stop`` sends SIGTERM to the supervisor alone, which drains its
  generations within ``shutdown_timeout``; whatever is left when ``TimeoutStopSec`` runs out is
  SIGKILLed, the whole cgroup.
- ``TimeoutStopSec`` = ``shutdown_timeout`` + a margin (promise 13's "small bound").
- Hardening that hotswap is compatible with: ``NoNewPrivileges``, ``ProtectSystem=strict`` with
  the state dir writable, ``PrivateTmp``, ``ProtectHome=read-only``, and the kernel-facing
  ``Protect*`` options. ``MemoryDenyWriteExecute`` is left out: it breaks ctypes and cffi.

Socket activation: with ``--socket``, a ``NAME.socket`` unit (one per listener name) owns the
ports; systemd passes them at fd 3... with ``LISTEN_FDS``/``LISTEN_FDNAMES``/``LISTEN_PID``, and
``hotswap run`` adopts them instead of binding (promise 1 holds across supervisor restarts too:
the socket outlives the service).
"""

from __future__ import annotations

import os
import shlex
import socket
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from hotswap.errors import UsageError

if TYPE_CHECKING:
    from hotswap.supervisor.listeners import BindSpec

LISTEN_FDS_START = 3
STOP_MARGIN = 15  # seconds past shutdown_timeout before systemd SIGKILLs the cgroup
START_MARGIN = 30  # seconds past boot_timeout + health_timeout for the first boot
_UNIT_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:-_.\\")


@dataclass(frozen=True)
class UnitOptions:
    name: str
    state_dir: Path
    binds: Sequence[str]  # as given to --bind: [NAME=]ADDR
    hotswap: str  # the hotswap executable
    user: str | None = None
    group: str | None = None
    shutdown_timeout: float = 30.0
    boot_timeout: float = 60.0
    health_timeout: float = 5.0
    socket_activation: bool = False
    description: str | None = None
    extra_args: Sequence[str] = field(default_factory=tuple)


def _check_name(name: str) -> None:
    if not name or not set(name) <= _UNIT_NAME_CHARS or name.startswith("-"):
        raise UsageError(
            "bad_config",
            f"--name {name!r} is not a valid unit name (letters, digits, ':', '-', '_', '.')",
            key="name",
        )


def _split_bind(text: str) -> tuple[str, str]:
    """``NAME=ADDR`` -> (NAME, ADDR), the name defaulting to ``http`` as ``--bind`` does."""
    from hotswap.supervisor.listeners import parse_bind

    spec = parse_bind(text)  # validates, raises bad_config naming it
    head, sep, tail = text.partition("=")
    addr = tail if sep and head == spec.name else text
    return spec.name, addr


def _listen_stream(addr: str) -> str:
    """The ``ListenStream=`` form of a ``--bind`` address."""
    if addr.startswith("unix:") or "/" in addr:
        return os.path.abspath(addr.removeprefix("unix:"))
    if addr.startswith(":"):
        return addr[1:]  # all IPv4 interfaces: systemd takes a bare port (dual-stack)
    return addr


def socket_units(opts: UnitOptions) -> dict[str, str]:
    """One ``.socket`` unit per listener name, in ``--bind`` order: ``{file name: text}``."""
    _check_name(opts.name)
    by_name: dict[str, list[str]] = {}
    for text in opts.binds:
        name, addr = _split_bind(text)
        by_name.setdefault(name, []).append(addr)
    units: dict[str, str] = {}
    for index, (name, addrs) in enumerate(by_name.items()):
        unit = f"{opts.name}.socket" if index == 0 else f"{opts.name}-{name}.socket"
        lines = [
            "[Unit]",
            f"Description={opts.description or opts.name}: the {name} listener (hotswap)",
            "",
            "[Socket]",
            *(f"ListenStream={_listen_stream(a)}" for a in addrs),
            f"FileDescriptorName={name}",
            f"Service={opts.name}.service",
            "Backlog=4096",
            "ReusePort=no",
        ]
        if any(_listen_stream(a).startswith("/") for a in addrs):
            lines.append("SocketMode=0660")
        lines += ["", "[Install]", "WantedBy=sockets.target", ""]
        units[unit] = "\n".join(lines)
    return units


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _writable(state_dir: Path) -> list[str]:
    """The state dir is the one place the service writes. Under /var/lib, systemd creates it
    (owned by ``User=``, mode 0700) with ``StateDirectory=``; elsewhere it must exist."""
    try:
        rel = state_dir.relative_to("/var/lib")
    except ValueError:
        return [f"ReadWritePaths={state_dir}"]
    return [f"StateDirectory={rel}", "StateDirectoryMode=0700"]


def warnings(opts: UnitOptions) -> list[str]:
    """What would make the units fail although they parse."""
    out = []
    for arg in opts.extra_args:
        path = Path(arg)
        if path.is_absolute() and any(path.is_relative_to(t) for t in ("/tmp", "/var/tmp")):
            out.append(
                f"{arg} is under a temporary directory, which the service cannot see "
                "(PrivateTmp=yes): put the release somewhere else"
            )
    if not opts.state_dir.is_relative_to("/var/lib") and not opts.state_dir.is_dir():
        out.append(f"{opts.state_dir} does not exist: create it (mode 0700) before starting")
    return out


def service_unit(opts: UnitOptions) -> str:
    """The ``NAME.service`` unit."""
    _check_name(opts.name)
    state = str(opts.state_dir)
    if not os.path.isabs(state):
        raise UsageError("bad_config", f"--state-dir {state!r} must be absolute", key="state_dir")
    run = [opts.hotswap, "run", "--state-dir", state]
    if not opts.socket_activation:
        for text in opts.binds:
            _split_bind(text)
            run += ["--bind", text]
    run += list(opts.extra_args)
    reload = [opts.hotswap, "restart", "--state-dir", state]
    sockets = list(socket_units(opts)) if opts.socket_activation else []
    unit = [
        "[Unit]",
        f"Description={opts.description or opts.name} (hotswap supervisor)",
        "After=network-online.target" + "".join(f" {s}" for s in sockets),
        "Wants=network-online.target",
    ]
    if sockets:
        unit.append("Requires=" + " ".join(sockets))
    service = [
        "",
        "[Service]",
        "Type=notify",
        "NotifyAccess=main",
        f"Environment=HOTSWAP_STATE_DIR={state}",
        f"ExecStart={shlex.join(run)}",
        f"ExecReload={shlex.join(reload)}",
        "KillMode=mixed",
        "KillSignal=SIGTERM",
        f"TimeoutStartSec={_seconds(opts.boot_timeout + opts.health_timeout + START_MARGIN)}",
        f"TimeoutStopSec={_seconds(opts.shutdown_timeout + STOP_MARGIN)}",
        "Restart=on-failure",
        "RestartSec=1",
    ]
    if opts.user:
        service.append(f"User={opts.user}")
    if opts.group:
        service.append(f"Group={opts.group}")
    service += [
        "# hardening hotswap is compatible with",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        *_writable(opts.state_dir),
        "ProtectHome=read-only",
        "PrivateTmp=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectControlGroups=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
        "UMask=0077",
    ]
    install = ["", "[Install]", "WantedBy=multi-user.target", ""]
    return "\n".join(unit + service + install)


# -- socket activation ---------------------------------------------------------------------


@dataclass(frozen=True)
class Inherited:
    fd: int
    name: str


def listen_fds(environ: Mapping[str, str], pid: int) -> list[Inherited]:
    """``sd_listen_fds``: the descriptors systemd passed to process ``pid``, with their names.

    Nothing is passed (an empty list) unless ``LISTEN_PID`` names ``pid``: the variables may
    have been inherited from a parent they were meant for. Names default to ``http``, hotswap's
    default listener name (systemd's own default, the socket unit's name, is rarely wanted)."""
    if "LISTEN_FDS" not in environ:
        return []
    try:
        owner = int(environ.get("LISTEN_PID", ""))
        count = int(environ["LISTEN_FDS"])
    except ValueError:
        raise UsageError(
            "bad_config",
            f"LISTEN_PID={environ.get('LISTEN_PID')!r} / LISTEN_FDS={environ['LISTEN_FDS']!r}"
            " are not numbers",
            key="LISTEN_FDS",
        ) from None
    if owner != pid:
        return []
    if not 0 < count <= 64:
        raise UsageError("bad_config", f"LISTEN_FDS={count} is out of range", key="LISTEN_FDS")
    names = environ.get("LISTEN_FDNAMES", "").split(":") if environ.get("LISTEN_FDNAMES") else []
    if names and len(names) != count:
        raise UsageError(
            "bad_config",
            f"LISTEN_FDNAMES has {len(names)} names for LISTEN_FDS={count}",
            key="LISTEN_FDNAMES",
        )
    from hotswap.supervisor.listeners import DEFAULT_NAME

    return [
        Inherited(
            LISTEN_FDS_START + i, (names[i] if names and names[i] != "unknown" else DEFAULT_NAME)
        )
        for i in range(count)
    ]


def adopt(inherited: Inherited) -> socket.socket:
    """Take over one inherited descriptor: it must be a listening stream socket (checked with
    ``SO_ACCEPTCONN``, so a stray fd is refused rather than served). Close-on-exec is set: the
    supervisor hands it to each generation explicitly."""
    fd = inherited.fd
    try:
        mode = os.fstat(fd).st_mode
    except OSError as e:
        raise UsageError(
            "bad_config",
            f"LISTEN_FDS: fd {fd} ({inherited.name}) is not open: {e.strerror}",
            key="LISTEN_FDS",
        ) from None
    if not stat.S_ISSOCK(mode):
        raise UsageError(
            "bad_config",
            f"LISTEN_FDS: fd {fd} ({inherited.name}) is not a socket",
            key="LISTEN_FDS",
        )
    sock = socket.socket(fileno=fd)
    if sock.type != socket.SOCK_STREAM or not sock.getsockopt(
        socket.SOL_SOCKET, socket.SO_ACCEPTCONN
    ):
        sock.detach()
        raise UsageError(
            "bad_config",
            f"LISTEN_FDS: fd {fd} ({inherited.name}) is not a listening stream socket",
            key="LISTEN_FDS",
        )
    sock.set_inheritable(False)
    return sock


def forget(environ: dict[str, str] | os._Environ[str]) -> None:
    """``sd_listen_fds(unset_environment=1)``: the variables are for this process only."""
    for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        environ.pop(key, None)


def activated_binds(environ: dict[str, str] | os._Environ[str], pid: int) -> list[BindSpec]:
    """The listeners systemd passed to this process, adopted, as bind specs (empty without
    socket activation). The ``LISTEN_*`` variables are removed from ``environ``."""
    from hotswap.supervisor.listeners import inherited as inherited_spec

    passed = listen_fds(environ, pid)
    specs: list[BindSpec] = []
    try:
        for item in passed:
            specs.append(inherited_spec(item.name, adopt(item)))
    except BaseException:
        for spec in specs:
            if spec.fd is not None:
                os.close(spec.fd)
        raise
    forget(environ)
    return specs
