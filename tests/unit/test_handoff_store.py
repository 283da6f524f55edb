from __future__ import annotations

from pathlib import Path

import pytest

from hotswap.errors import UsageError
from hotswap.supervisor.handoff import BEFORE_CUTOVER_KEY, MAX_VALUE, HandoffStore


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
