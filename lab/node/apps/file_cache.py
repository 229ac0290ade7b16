"""The static files of the HTTP server: a request path resolved once, then revalidated by stat.

Resolving a request path safely costs a realpath (an lstat per path component), an open and an
fstat, and the file's bytes a read: under a keep-alive benchmark that is a large share of a
request. `FileCache` remembers, per request path, the regular file it resolved to inside the
root and the identity (device, inode, size, mtime, ctime) of every path it opened on the way (a
directory, then its index.html). A later request stats those paths again, following symlinks as
an open would: any difference (a file rewritten, replaced, removed, a symlink pointed elsewhere)
drops the entry and resolves from scratch, so the answer is always what the disk holds now.

A small file (up to max_body_bytes) is read whole and answered in one write; the cache keeps its
bytes unless it changed within RACY_SECONDS of being read: a write in the same timestamp tick as
our read would leave its identity unchanged (git's "racily clean" index entries), so such a file
is read again on each request until it is old enough to keep.
"""

from __future__ import annotations

import mimetypes
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

MAX_ENTRIES = 256
MAX_BODY_BYTES = 64 * 1024  # files up to this size keep their bytes in the cache
RACY_SECONDS = 2.0  # coarser than any file timestamp tick (FAT's is 2 s)

Identity = tuple[int, int, int, int, int]


def _identity(st: os.stat_result) -> Identity:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@dataclass(frozen=True, slots=True)
class StaticFile:
    """A file to serve: a small file's bytes (`body`), or a large file open (`file`: the caller
    reads and closes it)."""

    content_type: bytes
    size: int
    body: bytes | None = None
    file: BinaryIO | None = None


@dataclass(slots=True)
class _Entry:
    real: str  # the resolved file, inside the root
    checks: tuple[tuple[str, Identity], ...]  # (path as requested, identity when resolved)
    content_type: bytes
    size: int
    kept: StaticFile | None  # the file's bytes, once they may be kept


class FileCache:
    """Regular files under `root` by request path (see the module docstring). `clock` gives wall
    time in nanoseconds, the clock of file timestamps (tests pass their own)."""

    def __init__(
        self,
        root: Path,
        *,
        max_entries: int = MAX_ENTRIES,
        max_body_bytes: int = MAX_BODY_BYTES,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.root = str(root.resolve())
        self._root_prefix = os.path.join(self.root, "")  # "/srv/www/": what files start with
        self.max_entries = max_entries
        self.max_body_bytes = max_body_bytes
        self._clock = clock
        self._entries: dict[str, _Entry] = {}

    def lookup(self, path: str) -> StaticFile | None:
        """The regular file under root that path names (index.html for a directory), or None."""
        if "\x00" in path:
            return None
        entry = self._entries.get(path)
        if entry is not None:
            if self._still_valid(entry):
                if entry.kept is not None:
                    return entry.kept
                found = self._reopen(entry)
                if found is not None:
                    return found
            del self._entries[path]
        return self._resolve(path)

    @staticmethod
    def _still_valid(entry: _Entry) -> bool:
        try:
            for path, identity in entry.checks:
                if _identity(os.stat(path)) != identity:
                    return False
        except OSError:
            return False
        return True

    def _reopen(self, entry: _Entry) -> StaticFile | None:
        """The entry's file, open, if it is still the file the entry resolved (else None); its
        bytes are kept from now on if it has become old enough."""
        opened = _open_regular(entry.real)
        if opened is None:
            return None
        f, st = opened
        if _identity(st) != entry.checks[-1][1]:
            f.close()
            return None
        return self._serve(entry, f, st)

    def _resolve(self, path: str) -> StaticFile | None:
        """One realpath, one open and one fstat a step: the slow path, remembered on success."""
        target = os.path.join(self.root, path.lstrip("/"))
        checks: list[tuple[str, Identity]] = []
        for _ in range(2):  # the path, then its index.html if it is a directory
            real = os.path.realpath(target)
            if real != self.root and not real.startswith(self._root_prefix):
                return None  # ".." or a symlink escaping the served directory
            try:  # O_NONBLOCK: opening a FIFO must not wait for a writer
                fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError:
                return None
            st = os.fstat(fd)
            checks.append((target, _identity(st)))
            if stat.S_ISREG(st.st_mode):
                mime = mimetypes.guess_type(real)[0] or "application/octet-stream"
                entry = _Entry(real, tuple(checks), mime.encode(), st.st_size, None)
                self._remember(path, entry)
                return self._serve(entry, os.fdopen(fd, "rb"), st)
            os.close(fd)
            if not stat.S_ISDIR(st.st_mode):
                return None
            target = os.path.join(real, "index.html")
        return None

    def _serve(self, entry: _Entry, f: BinaryIO, st: os.stat_result) -> StaticFile:
        """A large file: f, open, to stream. A small one: its bytes (f closed), kept in the entry
        unless it changed too recently to tell a later change apart."""
        if st.st_size > self.max_body_bytes:
            return StaticFile(entry.content_type, entry.size, file=f)
        with f:
            body = f.read(st.st_size)
        changed = max(st.st_mtime_ns, st.st_ctime_ns)
        found = StaticFile(entry.content_type, len(body), body=body)  # shrunk under us: what was read
        if len(body) == st.st_size and changed <= self._clock() - int(RACY_SECONDS * 1e9):
            entry.kept = found
        return found

    @property
    def kept_bytes(self) -> int:
        """File bytes the cache holds in memory."""
        return sum(e.kept.size for e in self._entries.values() if e.kept is not None)

    def _remember(self, path: str, entry: _Entry) -> None:
        if len(self._entries) >= self.max_entries:
            del self._entries[next(iter(self._entries))]  # the oldest
        self._entries[path] = entry


def _open_regular(path: str) -> tuple[BinaryIO, os.stat_result] | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return None
    return os.fdopen(fd, "rb"), st
