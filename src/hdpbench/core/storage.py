"""Safe file writes shared by every layer: atomic replace, host- and pid-named temporaries that only
their own host's sweep removes, write checks before work, best-effort caches and file hashes."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import socket
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from hdpbench.core.errors import StoreWriteError

_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"  # no dots: it is a field of temporary names


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed onto ``path``.

    The file gets the permissions of any file the user creates (``0666 & ~umask``, not mkstemp's 0600,
    so a group-shared store stays readable). A failed write (full disk, read-only folder) raises
    :class:`~hdpbench.core.errors.StoreWriteError` naming ``path``, and leaves neither the temporary
    nor a changed ``path``.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Host and pid in the name let a later run remove what a killed writer on this host left.
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.{_HOST}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, 0o666 & ~_UMASK)
        os.close(fd)
        tmp = Path(tmp_name)
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:
        if isinstance(error, StoreWriteError):
            raise
        raise StoreWriteError(path, f"cannot write ({error.strerror or error}); nothing of it was kept") from error
    finally:
        if tmp is not None and tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def output_path(path: str | Path) -> Iterator[Path]:
    """Where to write a file the user named (``--csv``, ``--output``): yields the path to write to.

    A regular file (new or existing) is written atomically (:func:`atomic_path`), and an existing
    one keeps its permissions (and owner, where allowed). A symbolic link is followed: its target is
    written, the link stays. A character device or a FIFO (``/dev/null``, ``/dev/stdout``, a named
    pipe) is written through, never replaced. A folder or a socket is refused (:class:`StoreWriteError`).
    """
    import stat

    path = Path(path)
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as error:
        raise StoreWriteError(path, f"cannot write ({error.strerror or error})") from error
    if mode is not None and (stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)):
        try:
            yield target
        except OSError as error:
            if isinstance(error, StoreWriteError):
                raise
            raise StoreWriteError(path, f"cannot write ({error.strerror or error})") from error
        return
    if mode is not None and not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file"
        raise StoreWriteError(path, f"is {kind}; give a file name")
    with atomic_path(target) as tmp:
        yield tmp
        if mode is not None:  # an existing file keeps its permissions and, where allowed, its owner
            existing = os.stat(target)
            os.chmod(tmp, stat.S_IMODE(existing.st_mode))
            with contextlib.suppress(OSError):
                os.chown(tmp, existing.st_uid, existing.st_gid)


_HELD_LOCKS: dict[str, list[int]] = {}  # lock file → [descriptor, depth]: this process's locks, re-entrant


@contextlib.contextmanager
def exclusive_locks(paths: Iterable[str | Path], *, what: str = "another run") -> Iterator[None]:
    """Hold an exclusive lock (``flock``) on each of these files, taken in sorted order so two holders
    of overlapping sets cannot deadlock; released when the block ends or the process dies (a killed
    run leaves nothing to clean up). Re-entrant within a process. Where a lock is held elsewhere, one
    line on stderr says what is awaited, then it waits. The lock files stay (removing one would let
    a third process lock a new file while the second holds the old one)."""
    import sys

    try:
        import fcntl
    except ImportError:  # no flock (Windows): no locking
        yield
        return
    taken: list[str] = []
    try:
        for name in sorted({str(Path(p)) for p in paths}):
            if name in _HELD_LOCKS:
                _HELD_LOCKS[name][1] += 1
                taken.append(name)
                continue
            try:
                Path(name).parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(name, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as error:
                raise StoreWriteError(name, f"cannot create the lock file ({error.strerror or error})") from error
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    print(f"hdpbench: waiting for {what} (lock {name})", file=sys.stderr, flush=True)
                    fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                raise
            _HELD_LOCKS[name] = [fd, 1]
            taken.append(name)
        yield
    finally:
        for name in reversed(taken):
            held = _HELD_LOCKS[name]
            held[1] -= 1
            if held[1] == 0:
                del _HELD_LOCKS[name]
                os.close(held[0])  # releases the flock


def remove_orphaned_temporaries(directory: str | Path) -> list[Path]:
    """Delete temporary files of :func:`atomic_path` that a killed writer on this host left; files of
    live writers (other workers of the same run) and of other hosts (a shared filesystem) stay."""
    removed = []
    for candidate in Path(directory).glob(".*.tmp"):
        fields = candidate.name[: -len(".tmp")].rsplit(".", 3)  # [.name, host, pid, random]
        if len(fields) != 4 or fields[1] != _HOST or not fields[2].isdigit():
            continue
        pid = fields[2]
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
        except PermissionError:
            pass  # alive, owned by someone else
    return removed


def try_write_cache(path: str | Path, obj: Any) -> bool:
    """Write a JSON cache file; on failure (read-only or full cache) warn once and go on without it.

    The cache only saves time, so losing it must never stop a command.
    """
    return _try_cache(path, lambda: atomic_write_json(path, obj))


def try_write_cache_arrays(path: str | Path, arrays: dict[str, Any]) -> bool:
    """Write an ``.npz`` cache file of ``arrays`` (numbers and strings: it loads without pickle), as
    :func:`try_write_cache` does."""
    import io

    def write() -> None:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        atomic_write_bytes(path, buffer.getvalue())

    return _try_cache(path, write)


def try_read_cache_arrays(path: str | Path, build):
    """``build(arrays)`` of an ``.npz`` cache file that :func:`try_write_cache_arrays` wrote (loaded
    without pickle); None when the file is absent, so the caller computes it. A file that cannot be
    used (truncated, not a zip, lacking an array ``build`` asks for) is deleted with a warning naming
    it, and None returned: a cache is disposable, and a bad entry must not fail every rerun."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            return build(stored)
    except FileNotFoundError:
        return None
    except Exception as error:  # zipfile.BadZipFile, EOFError, zlib.error, KeyError, ValueError, ...
        warnings.warn(f"{path}: unreadable cache entry ({type(error).__name__}: {error}); discarded, computing it again", RuntimeWarning, stacklevel=2)
        with contextlib.suppress(OSError):
            Path(path).unlink()
        return None


def _try_cache(path: str | Path, write) -> bool:
    try:
        write()
        return True
    except StoreWriteError as error:
        if str(Path(path).parent) not in _CACHE_WARNINGS:
            _CACHE_WARNINGS.add(str(Path(path).parent))
            warnings.warn(f"cache not written, continuing without it: {error}", RuntimeWarning, stacklevel=3)
        return False


_CACHE_WARNINGS: set[str] = set()


def require_writable(
    directory: str | Path, hint: str = "choose another folder with --results or HDPBENCH_RESULTS"
) -> Path:
    """Create ``directory`` if needed and check a file can be written there, before any work."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check.", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise StoreWriteError(directory, f"results cannot be written here ({error.strerror or error}); {hint}") from error
    return directory


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=json_default) + "\n").encode())


def json_default(value):
    """``json.dumps(default=...)`` for numpy arrays and scalars and paths."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def sha256_file(path: str | Path) -> str:
    """SHA-256 of a file's bytes (hex), as pooch checks downloads."""
    import pooch

    return pooch.file_hash(str(path), alg="sha256")


READER_SOURCES = ("io/*.py", "core/compound.py", "core/structures.py", "core/storage.py")  # what parses files


@functools.lru_cache(maxsize=8)
def source_digest(*patterns: str) -> str:
    """sha256 of the hdpbench source files matching these glob patterns (relative to the package,
    e.g. ``"io/*.py"``): part of the key of every cache of computed or parsed results, so code
    changed between two commits of one package version never serves what the old code made."""
    import hashlib

    import hdpbench

    package = Path(hdpbench.__file__).parent
    digest = hashlib.sha256()
    for source in sorted({path for pattern in patterns for path in package.glob(pattern)}):
        digest.update(source.relative_to(package).as_posix().encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()


def content_cache_file(path: str | Path, folder: str, parser: str) -> Path | None:
    """Where the arrays parsed from this file's *content* are cached: ``<cache>/<folder>/<key>.npz``,
    the key a hash of the file's sha256, ``parser`` (the parsing libraries' versions, the caller's
    options) and :func:`source_digest` of our readers (``READER_SOURCES``), so an edited file,
    another parser or a changed reader is another entry and a hit is never stale. None when the file
    cannot be read (the parser then reports it) or ``HDPBENCH_PARSE_CACHE=0`` (such caches hold
    trajectories in binary: several GB for the full dataset)."""
    import hashlib

    from hdpbench.core import paths

    if os.environ.get("HDPBENCH_PARSE_CACHE", "1") == "0":
        return None
    try:
        content = sha256_file(path)
    except OSError:
        return None
    key = hashlib.sha256(f"{content}|{parser}|readers {source_digest(*READER_SOURCES)}".encode()).hexdigest()
    return paths.cache_dir() / folder / f"{key}.npz"
