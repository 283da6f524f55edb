from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from hotswap.errors import ResourceError, UsageError
from hotswap.supervisor import handoff
from hotswap.supervisor.handoff import BEFORE_CUTOVER_KEY, MAX_VALUE, HandoffStore
from tests.diskfull import small_tmpfs


def test_values_persist_across_instances(tmp_path: Path) -> None:
    path = tmp_path / "handoff.json"
    store = HandoffStore(path)
    store.put("a", {"x": [1, 2]})
    store.put("b", b"\x01\x02")
    again = HandoffStore(path)
    assert again.get_all() == {"a": {"x": [1, 2]}, "b": b"\x01\x02"}
    assert again.delete("a") and not again.delete("a")
    assert HandoffStore(path).get_all() == {"b": b"\x01\x02"}


def test_limits_and_reserved_key(tmp_path: Path) -> None:
    store = HandoffStore(tmp_path / "h.json")
    with pytest.raises(UsageError) as big:
        store.put("big", "x" * MAX_VALUE)
    assert big.value.code == "handoff_too_large"
    with pytest.raises(UsageError) as bad:
        store.put("obj", object())
    assert bad.value.code == "handoff_invalid"
    with pytest.raises(UsageError):
        store.put(BEFORE_CUTOVER_KEY, 1)
    store.put(BEFORE_CUTOVER_KEY, 1, reserved_ok=True)
    assert store.get(BEFORE_CUTOVER_KEY) == 1
    assert store.get_all() == {BEFORE_CUTOVER_KEY: 1}
    assert not (tmp_path / "big").exists()


def test_look_alikes_of_the_bytes_escape_come_back_as_they_were_put(tmp_path: Path) -> None:
    path = tmp_path / "handoff.json"
    store = HandoffStore(path)
    values = {
        "look-alike": {"$bytes": "aGk="},
        "bad-base64": {"$bytes": "not base64!"},
        "nested": {"a": [{"$dict": {"$bytes": "x"}}, b"\x01"], "$": 1},
        "$bytes": "a key that looks like the escape",
        "real": b"hi",
    }
    for key, value in values.items():
        store.put(key, value)
    for again in (store, HandoffStore(path)):
        for key, value in values.items():
            assert again.get(key) == value
        assert again.get_all() == values


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A directory on a 64 KiB tmpfs (needs root and CAP_SYS_ADMIN), unmounted afterwards."""
    with small_tmpfs(tmp_path / "small", "64k") as mount:
        yield mount


def _fill(directory: Path) -> None:
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)


def _changes_nothing(store: HandoffStore, path: Path) -> None:
    with pytest.raises(ResourceError) as put:
        store.put("k", "new value " * 200)
    assert put.value.code == "io_error"
    with pytest.raises(ResourceError) as delete:
        store.delete("kept")
    assert delete.value.code == "io_error"
    assert store.get("k") == "old" and store.get_all() == {"k": "old", "kept": 1}


def test_a_put_that_cannot_be_saved_on_a_full_disk_changes_nothing(full_disk: Path) -> None:
    path = full_disk / "handoff.json"
    store = HandoffStore(path)
    store.put("k", "old")
    store.put("kept", 1)
    _fill(full_disk)
    _changes_nothing(store, path)
    assert HandoffStore(path).get_all() == {"k": "old", "kept": 1}
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler", "handoff.json"]


def test_a_put_that_cannot_be_saved_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "handoff.json"
    store = HandoffStore(path)
    store.put("k", "old")
    store.put("kept", 1)

    def no_space(_path: Path, _data: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(handoff, "write_json_atomic", no_space)  # the file seam
    _changes_nothing(store, path)
    monkeypatch.undo()
    assert HandoffStore(path).get_all() == {"k": "old", "kept": 1}
    store.put("k", "saved")  # the store still works once the disk does
    assert HandoffStore(path).get("k") == "saved"
