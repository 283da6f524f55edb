from __future__ import annotations

import socket
from pathlib import Path

import pytest

from hotswap.errors import ResourceError, UsageError
from hotswap.supervisor.listeners import bind, parse_bind


@pytest.mark.parametrize(
    "text,name,family,address",
    [
        ("127.0.0.1:8000", "http", socket.AF_INET, ("127.0.0.1", 8000)),
        (":8000", "http", socket.AF_INET, ("0.0.0.0", 8000)),
        ("[::1]:9", "http", socket.AF_INET6, ("::1", 9)),
        ("admin=127.0.0.1:81", "admin", socket.AF_INET, ("127.0.0.1", 81)),
        ("unix:/run/app.sock", "http", socket.AF_UNIX, "/run/app.sock"),
    ],
)
def test_parse_bind(text: str, name: str, family: int, address: object) -> None:
    spec = parse_bind(text)
    assert (spec.name, spec.family, spec.address) == (name, family, address)


@pytest.mark.parametrize("text", ["8000", "host:99999", "[::1]", "unix:"])
def test_bad_bind_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_bind(text)
    assert caught.value.code == "bad_config"


def test_bind_retries_an_address_in_use_then_gives_up() -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    now = [0.0]

    def clock() -> float:
        return now[0]

    def pause(seconds: float) -> None:
        now[0] += seconds

    try:
        with pytest.raises(ResourceError) as caught:
            bind(parse_bind(f"127.0.0.1:{port}"), retry_for=1.0, clock=clock, pause=pause)
        assert caught.value.code == "io_error"
        assert now[0] >= 1.0  # it did retry, for the given time
    finally:
        holder.close()
    listener = bind(parse_bind(f"127.0.0.1:{port}"))
    assert listener.port == port
    listener.sock.close()


def test_stale_unix_socket_is_replaced_but_a_live_one_is_not(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens
    listener = bind(parse_bind(f"unix:{path}"), retry_for=0)
    with pytest.raises(ResourceError):
        bind(parse_bind(f"unix:{path}"), retry_for=0)
    listener.sock.close()
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError):
        bind(parse_bind(f"unix:{tmp_path / 'file'}"), retry_for=0)
