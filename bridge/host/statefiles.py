"""Files in `server.state_dir`: written so that a power cut or a full card never leaves a
half-written one, and the truth about whether the directory takes writes at all.

Every file the bridge keeps (its TLS certificate and key, the warm store, the minute
history) is written the same way: a temporary file in the same directory, written,
flushed and fsync'd, renamed over the old one, then the directory fsync'd so the rename
itself is on the card. A reader sees the old file or the new one, never a part of one.

A state directory that cannot be written (mounted read-only, full, gone) never stops the
bridge: it serves from memory all the same, and `/health` names the problem.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

PROBE_NAME = ".write-probe"


def write_atomically(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Replace `path` with `data` atomically and durably (raises OSError on failure).

    The temporary file has `mode` from its creation on, so a private key is never
    readable by others, not even for a moment.
    """
    temporary = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)  # the umask may have narrowed it; an existing file kept its own
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    sync_directory(path.parent)


def sync_directory(directory: Path) -> None:
    """Make a rename in `directory` durable (where the platform can)."""
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def describe_error(error: OSError) -> str:
    """An OSError in plain words, with its errno name (EROFS, ENOSPC, ...)."""
    name = errno.errorcode.get(error.errno or 0, "")
    words = error.strerror or str(error)
    return f"{words} ({name})" if name else words


class StateDir:
    """Whether `server.state_dir` takes writes: probed at start, told of every write.

    No write is made just to watch it (the SD card is not a log): a failure is seen at
    start or by the write that meets it, and forgotten once that file is written (the
    stores try again every 15 minutes). Kept per file: a small file that fits on a full
    card says nothing about the bigger one that did not.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.errors: dict[str, str] = {}  # file name -> why its last write failed

    def write(self, path: Path, data: bytes, *, mode: int = 0o644) -> None:
        """`write_atomically`, with its outcome remembered (raises as it does)."""
        try:
            write_atomically(path, data, mode=mode)
        except OSError as error:
            self.failed(error, path.name)
            raise
        self.errors.pop(path.name, None)
        self.errors.pop(PROBE_NAME, None)  # the directory takes writes after all

    def failed(self, error: OSError, name: str) -> None:
        """A write of `name` into the directory failed."""
        if not self.errors:
            log.warning("state_dir %s cannot be written: %s", self.path, describe_error(error))
        self.errors[name] = describe_error(error)

    def probe(self) -> None:
        """Try one small write (only where the directory exists: none is made here)."""
        if not self.path.is_dir():
            return
        probe = self.path / PROBE_NAME
        with contextlib.suppress(OSError):
            self.write(probe, b"ok\n")
            probe.unlink()

    def describe(self) -> dict[str, object]:
        """For /health: the path, whether it exists, whether it takes writes, the error and
        the files it failed (`writable` is null where no directory is, and none needed)."""
        exists = self.path.is_dir()
        error = next(reversed(self.errors.values()), None)
        return {
            "path": str(self.path),
            "exists": exists,
            "writable": not self.errors if exists or self.errors else None,
            "error": error,
            "files": sorted(self.errors),
        }

    def problems(self) -> list[str]:
        """The degraded reason, while the directory does not take writes."""
        if not self.errors:
            return []
        files = ", ".join(sorted(self.errors))
        error = next(reversed(self.errors.values()))
        return [f"state_dir {self.path} cannot be written ({files}): {error}; serving from memory"]
