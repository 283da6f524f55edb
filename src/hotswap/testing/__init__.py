"""Test helpers for users of hotswap (and hotswap's own tests).

- :mod:`hotswap.testing.load`: a load generator that records every request's outcome, to
  check that a swap of *your* app drops nothing.
"""
