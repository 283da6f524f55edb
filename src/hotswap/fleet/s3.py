"""S3-compatible object storage: ``s3://`` URLs and the few object operations the release store
needs, through boto3 (the optional extra ``hotswap[s3]``).

boto3 is imported only when an ``s3://`` URL is used, so the supervisor's core stays the
standard library plus ``packaging``; without it every operation raises ``extra_missing``.
Credentials, region and endpoint come from boto3's usual chain (``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE`` and ``~/.aws``, instance roles) and
``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` for S3-compatible servers (MinIO, Tigris, R2);
never from a tarball or a ``current.json``.

Downloads stream: each chunk goes through sha256 as it is written to a temporary file beside
the destination, and the file takes its final name only if the digest is the expected one, so a
truncated or tampered object never reaches the release store.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hotswap.errors import ReleaseError, ResourceError, UsageError

SCHEME = "s3://"
CHUNK = 1 << 20
SMALL_OBJECT_MAX = 1 << 20  # current.json, .sha256: read whole, refused above this
# bucket names as S3 allows them (lower case, digits, dots, hyphens), keys without NUL
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def is_s3_url(ref: str | os.PathLike[str]) -> bool:
    return isinstance(ref, str) and ref.startswith(SCHEME)


@dataclass(frozen=True)
class S3Url:
    """``s3://bucket/key``; a key ending in ``/`` (or empty) is a prefix."""

    bucket: str
    key: str

    @classmethod
    def parse(cls, url: str) -> S3Url:
        if not url.startswith(SCHEME):
            raise UsageError("bad_url", f"{url!r} is not an s3:// URL")
        bucket, _, key = url[len(SCHEME) :].partition("/")
        if not _BUCKET.match(bucket):
            raise UsageError("bad_url", f"{url!r}: {bucket!r} is not a valid bucket name")
        if "\x00" in key or any(part in ("..", ".") for part in key.split("/")):
            raise UsageError("bad_url", f"{url!r}: the key has '.', '..' or NUL in it")
        return cls(bucket, key)

    @property
    def is_prefix(self) -> bool:
        return self.key == "" or self.key.endswith("/")

    @property
    def name(self) -> str:
        """The last part of the key (the object's file name)."""
        return self.key.rstrip("/").rsplit("/", 1)[-1]

    def prefix(self) -> S3Url:
        """The prefix this object lives under (itself when it is one)."""
        if self.is_prefix:
            return self
        head, _, _ = self.key.rpartition("/")
        return S3Url(self.bucket, head + "/" if head else "")

    def join(self, name: str) -> S3Url:
        return S3Url(self.bucket, self.prefix().key + name)

    def sibling(self, suffix: str) -> S3Url:
        return S3Url(self.bucket, self.key + suffix)

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.key}"


def _boto3() -> Any:
    try:
        import boto3
    except ImportError:
        raise ResourceError(
            "extra_missing",
            "s3:// URLs need boto3, which is not installed: pip install 'hotswap[s3]'",
            extra="s3",
        ) from None
    return boto3


class ObjectStore:
    """The S3 operations of the release store, with boto3's errors turned into codes."""

    def __init__(self, client: Any | None = None) -> None:
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            boto3 = _boto3()
            self._client = boto3.session.Session().client("s3")
        return self._client

    @contextlib.contextmanager
    def _errors(self, url: S3Url, doing: str) -> Iterator[None]:
        _boto3()
        import botocore.exceptions as botocore_exc

        try:
            yield
        except botocore_exc.ClientError as e:
            err = e.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("NoSuchKey", "NotFound", "404") or status == 404:
                raise UsageError("release_not_found", f"{url} does not exist") from None
            if code == "NoSuchBucket":
                raise UsageError(
                    "release_not_found", f"bucket {url.bucket!r} does not exist"
                ) from None
            raise ResourceError(
                "storage_error", f"{doing} {url} failed: {code or status} {err.get('Message', '')}"
            ) from None
        except botocore_exc.NoCredentialsError:
            raise ResourceError(
                "storage_error",
                f"{doing} {url}: no credentials (set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)",
            ) from None
        except botocore_exc.BotoCoreError as e:
            raise ResourceError("storage_error", f"{doing} {url} failed: {e}") from None

    # -- reads ------------------------------------------------------------------------------

    def head(self, url: S3Url) -> dict[str, Any]:
        """Size and user metadata of an object."""
        with self._errors(url, "reading"):
            out = self.client.head_object(Bucket=url.bucket, Key=url.key)
        return {"size": int(out.get("ContentLength", 0)), "metadata": out.get("Metadata", {})}

    def read_small(self, url: S3Url, limit: int = SMALL_OBJECT_MAX) -> bytes:
        """The whole of a small object (a pointer, a checksum); refused above ``limit``."""
        with self._errors(url, "reading"):
            out = self.client.get_object(Bucket=url.bucket, Key=url.key)
            body = out["Body"]
            try:
                data: bytes = body.read(limit + 1)
            finally:
                body.close()
        if len(data) > limit:
            raise ReleaseError("too_large", f"{url} is over {limit} bytes", url=str(url))
        return data

    def download(self, url: S3Url, dest: Path, *, expected_sha256: str) -> str:
        """Stream ``url`` into ``dest``, hashing as it goes; ``dest`` appears only if the
        digest is ``expected_sha256`` (else ``checksum_mismatch`` and nothing is left)."""
        expected = expected_sha256.lower()
        fd, tmp_name = tempfile.mkstemp(prefix=".download-", dir=dest.parent)
        tmp = Path(tmp_name)
        digest = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as out, self._errors(url, "downloading"):
                body = self.client.get_object(Bucket=url.bucket, Key=url.key)["Body"]
                try:
                    for chunk in body.iter_chunks(CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                finally:
                    body.close()
                out.flush()
                os.fsync(out.fileno())
            actual = digest.hexdigest()
            if actual != expected:
                raise ReleaseError(
                    "checksum_mismatch",
                    f"{url} has sha256 {actual}, expected {expected}",
                    url=str(url),
                )
            os.replace(tmp, dest)
        except OSError as e:
            raise ResourceError("io_error", f"downloading {url} to {dest}: {e}") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return actual

    # -- writes -----------------------------------------------------------------------------

    def upload(self, path: Path, url: S3Url, *, metadata: dict[str, str] | None = None) -> None:
        """Upload a file (multipart above boto3's threshold)."""
        extra = {"Metadata": metadata} if metadata else None
        with self._errors(url, "uploading"):
            self.client.upload_file(str(path), url.bucket, url.key, ExtraArgs=extra)

    def put(self, url: S3Url, data: bytes, *, content_type: str) -> None:
        with self._errors(url, "writing"):
            self.client.put_object(
                Bucket=url.bucket, Key=url.key, Body=data, ContentType=content_type
            )
