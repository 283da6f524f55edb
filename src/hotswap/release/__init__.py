"""Releases: the manifest and record, ``hotswap build``, verify + unpack, the release store."""
