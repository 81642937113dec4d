"""Content-addressed blobs of the local Hub: ``blobs/<sha256[:2]>/<sha256>``, written through ``tmp/``.

A blob appears only complete and verified (sha256 and size), by one ``os.replace`` from its partial file.
A partial file is ``flock``-ed by its writer for as long as it is being written, so the garbage collector
(``garbage``) can tell a live upload from the leftovers of a dead one. Reusing a blob refreshes its mtime:
the collector keeps unreferenced blobs younger than its grace period (an upload waiting for its commit).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import tempfile
import time
from pathlib import Path
from typing import BinaryIO, Iterator

from hubtune.hub_server.validation import BadRequest, TooLarge, Unprocessable

_HEX64_RE = re.compile(r"^[0-9a-f]{64}$")


def touch(path: Path) -> None:
    with contextlib.suppress(OSError):
        now = time.time()
        os.utime(path, (now, now))


class BlobStore:
    """The blob half of the store, under ``root``."""

    root: Path

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        for sub in ("blobs", "tmp", "repos"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def blob_path(self, sha256: str) -> Path:
        if not isinstance(sha256, str) or not _HEX64_RE.match(sha256):
            raise BadRequest(f"invalid sha256 oid {str(sha256)[:80]!r}: expected 64 lowercase hex digits")
        return self.root / "blobs" / sha256[:2] / sha256

    def has_blob(self, sha256: str, size: int | None = None) -> bool:
        path = self.blob_path(sha256)
        return path.is_file() and (size is None or path.stat().st_size == size)

    def blob_size(self, sha256: str) -> int | None:
        try:
            return self.blob_path(sha256).stat().st_size
        except FileNotFoundError:
            return None

    def keep_blob(self, sha256: str) -> None:
        """Mark an existing blob as in use now (the collector spares young blobs)."""
        touch(self.blob_path(sha256))

    def put_blob_bytes(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        if self.has_blob(sha, len(data)):
            self.keep_blob(sha)
        else:
            with self.blob_writer(sha, len(data)) as f:
                f.write(data)
        return sha

    @contextlib.contextmanager
    def blob_writer(self, sha256: str, size: int) -> Iterator[BinaryIO]:
        """Write into a locked temp file; only a complete upload whose sha256 and size match becomes a blob.

        Writing more than ``size`` bytes fails at once (413), without storing the excess.
        """
        target = self.blob_path(sha256)
        fd, tmp = tempfile.mkstemp(dir=self.root / "tmp", prefix=f"{sha256[:16]}.", suffix=".part")
        fcntl.flock(fd, fcntl.LOCK_EX)  # released when the file is closed: "being written"
        hasher = hashlib.sha256()
        written = 0
        ok = False
        try:
            with os.fdopen(fd, "wb") as raw:

                class _Hashing:
                    def write(self, chunk: bytes) -> int:
                        nonlocal written
                        if written + len(chunk) > size:
                            raise TooLarge(f"upload of {sha256} is longer than its declared {size} bytes")
                        hasher.update(chunk)
                        written += len(chunk)
                        return raw.write(chunk)

                yield _Hashing()  # type: ignore[misc]
                raw.flush()
                os.fsync(raw.fileno())
                if written != size or hasher.hexdigest() != sha256:
                    raise Unprocessable(
                        f"uploaded content does not match its oid: got sha256 {hasher.hexdigest()} and {written} "
                        f"bytes, expected {sha256} and {size} bytes"
                    )
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, target)
                ok = True
        finally:
            if not ok:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
