"""Test helpers for users of hotswap (and hotswap's own tests).

- :mod:`hotswap.testing.load`: a load generator that records every request's outcome, to
  check that a swap of *your* app drops nothing (``Load``, ``wait_http``, ``free_port``);
- ``write_release``, ``running_release`` and ``code_change``: unit-test your
  ``__code_change__`` hooks and hot upgrades on small release trees, without building
  (from :mod:`hotswap.hot.testing`);
- ``FakeChildren``, ``Script``, ``fake_release`` and ``VirtualClock``: run a real
  :class:`~hotswap.supervisor.core.Supervisor` against scripted children, in virtual time and
  without a process (:mod:`hotswap.testing.children`, :mod:`hotswap.testing.clock`).
"""

from hotswap.hot.testing import code_change, running_release, write_release
from hotswap.testing.children import FakeChildren, Script, fake_release
from hotswap.testing.clock import VirtualClock

__all__ = [
    "FakeChildren",
    "Script",
    "VirtualClock",
    "code_change",
    "fake_release",
    "running_release",
    "write_release",
]
