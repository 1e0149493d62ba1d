"""One compound's files, whether packed as ``dpv_<formula>.tar.gz`` or extracted as ``dpv_<formula>/``.

Members are read straight from the compressed tarball in a single streaming pass: nothing is
extracted to disk. Every member name is checked first; a member that would escape its folder
(absolute path, ``..``) or is a link or device is refused and the archive rejected, so a tampered
archive can never write outside its folder even where files must be extracted
(:meth:`CompoundFiles.extract` also uses tarfile's ``data`` filter). The same holds for extracted
folders: a symbolic link inside a compound folder is refused, not followed.

Sizes are checked from the tar headers (or ``stat``) *before* anything is read, so a decompression
bomb is refused in milliseconds and without memory: see :class:`ReadLimits`.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import tarfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from hdpbench.core.errors import ArchiveError, ArchiveTooLargeError, UnsafeArchiveMemberError

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.xz", ".tar")
_MIB = 1 << 20


@dataclass(frozen=True)
class ReadLimits:
    """Largest sizes a compound's files may have, in MiB (uncompressed).

    What the layout needs, with a wide margin: a production ``vasprun.xml`` of an 80-atom supercell
    is ~25 kB per MD step, so 1024 MiB holds ~40 000 steps (the authors' files hold a few thousand);
    every other member (force constants, structures, phonopy yaml) of an 80-atom cell is a few MiB.
    Raise them with ``HDPBENCH_MAX_XML_MB``, ``HDPBENCH_MAX_MEMBER_MB``, ``HDPBENCH_MAX_ARCHIVE_MB``.
    """

    xml_mb: int = 1024
    member_mb: int = 128
    archive_mb: int = 8192

    @classmethod
    def from_environment(cls) -> ReadLimits:
        values = {}
        for field_name, variable in (("xml_mb", "HDPBENCH_MAX_XML_MB"), ("member_mb", "HDPBENCH_MAX_MEMBER_MB"), ("archive_mb", "HDPBENCH_MAX_ARCHIVE_MB")):
            raw = os.environ.get(variable)
            if raw is None:
                continue
            if not raw.isdigit() or int(raw) < 1:
                from hdpbench.core.errors import UsageError

                raise UsageError(f"{variable}={raw!r}: expected a positive whole number of MiB")
            values[field_name] = int(raw)
        return cls(**values)

    def check_member(self, location: str, name: str, size: int) -> None:
        is_xml = name.lower().endswith(".xml")
        limit, variable = (self.xml_mb, "HDPBENCH_MAX_XML_MB") if is_xml else (self.member_mb, "HDPBENCH_MAX_MEMBER_MB")
        if size > limit * _MIB:
            raise ArchiveTooLargeError(
                location, f"{size / _MIB:.0f} MiB uncompressed, above the {limit} MiB limit for "
                f"{'an XML file' if is_xml else 'this kind of file'}; refused before reading (raise {variable} if it is genuine)"
            )

    def check_total(self, location: str, total: int) -> None:
        if total > self.archive_mb * _MIB:
            raise ArchiveTooLargeError(
                location, f"members add up to more than the {self.archive_mb} MiB limit per compound; refused "
                "(raise HDPBENCH_MAX_ARCHIVE_MB if it is genuine)"
            )
_ARCHIVE_READ_ERRORS = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, OSError)


def compound_name(path: str | Path) -> str:
    """'dpv_Cs2AgBiBr6' for .../dpv_Cs2AgBiBr6.tar.gz or .../dpv_Cs2AgBiBr6/."""
    name = Path(path).name
    for suffix in ARCHIVE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def formula_of(path: str | Path) -> str:
    name = compound_name(path)
    return name[4:] if name.startswith("dpv_") else name


def _normalise(name: str, prefix: str) -> str:
    parts = [p for p in PurePosixPath(name).parts if p not in ("", ".")]
    if parts and parts[0] == prefix:
        parts = parts[1:]
    return "/".join(parts)


def check_member_safe(member: tarfile.TarInfo, archive: str | Path) -> None:
    """Refuse members that would land outside the archive's folder or are not plain files/folders."""
    name = member.name
    location = f"{archive}:{name}"
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        raise UnsafeArchiveMemberError(location, "member has an absolute path; refusing the archive")
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        raise UnsafeArchiveMemberError(location, "member path escapes the archive folder ('..'); refusing the archive")
    if member.issym() or member.islnk():
        raise UnsafeArchiveMemberError(location, f"member is a link (to {member.linkname!r}); refusing the archive")
    if not (member.isfile() or member.isdir()):
        raise UnsafeArchiveMemberError(location, "member is a device, FIFO or other special file; refusing the archive")


class _GuardedStream(io.RawIOBase):
    """A tar member stream whose read errors (truncated or corrupt archive) name the archive."""

    def __init__(self, stream: IO[bytes], archive: Path, member: str):
        self._stream = stream
        self._archive = archive
        self.name = f"{archive}:{member}"

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        try:
            return self._stream.read(None if size is None or size < 0 else size)
        except _ARCHIVE_READ_ERRORS as error:
            raise ArchiveError(
                self._archive, f"corrupt or truncated archive while reading {self.name} ({type(error).__name__}: {error})"
            ) from error

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class CompoundFiles:
    """Uniform access to the members of one compound archive or folder (names relative to it)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.name = compound_name(self.path)
        self.is_archive = self.path.is_file()
        if not self.path.exists():
            raise ArchiveError(self.path, "no such archive or folder")

    def __repr__(self) -> str:
        return f"CompoundFiles({str(self.path)!r})"

    def location(self, member: str) -> str:
        return f"{self.path}:{member}" if self.is_archive else str(self.path / member)

    def _open_tar(self) -> tarfile.TarFile:
        try:
            return tarfile.open(self.path, mode="r|*")
        except _ARCHIVE_READ_ERRORS as error:
            raise ArchiveError(self.path, f"corrupt or unreadable archive ({type(error).__name__}: {error})") from error

    def iter_members(self, wanted: Callable[[str], bool] = lambda name: True) -> Iterator[tuple[str, IO[bytes]]]:
        """Yield (name, binary stream) for each wanted regular file, in archive order, in one pass.

        A stream is only valid until the next item is requested (tar streaming).
        """
        limits = ReadLimits.from_environment()
        total = 0
        if not self.is_archive:
            for file in sorted(self.path.rglob("*")):
                if file.is_symlink():
                    raise UnsafeArchiveMemberError(
                        file, f"is a symbolic link (to {os.readlink(file)!r}); links are refused in compound folders, copy the file instead"
                    )
                if not file.is_file():
                    continue
                name = file.relative_to(self.path).as_posix()
                size = file.stat().st_size
                limits.check_member(str(file), name, size)
                total += size
                limits.check_total(str(self.path), total)
                if wanted(name):
                    with open(file, "rb") as stream:
                        yield name, stream
            return
        with self._open_tar() as tar:
            try:
                for member in tar:
                    check_member_safe(member, self.path)
                    if not member.isfile():
                        continue
                    name = _normalise(member.name, self.name)
                    limits.check_member(self.location(name), name, member.size)
                    total += member.size
                    limits.check_total(str(self.path), total)
                    if wanted(name):
                        yield name, _GuardedStream(tar.extractfile(member), self.path, name)
            except (UnsafeArchiveMemberError, ArchiveTooLargeError):
                raise
            except _ARCHIVE_READ_ERRORS as error:
                raise ArchiveError(
                    self.path, f"corrupt or truncated archive ({type(error).__name__}: {error})"
                ) from error

    def member_names(self) -> list[str]:
        """All regular-file members (validating every name on the way)."""
        return [name for name, _ in self.iter_members(lambda name: True)]

    def read_members(self, names: set[str]) -> dict[str, bytes]:
        """The bytes of the named members that exist (one pass)."""
        return {name: stream.read() for name, stream in self.iter_members(lambda n: n in names)}

    def extract(self, names: list[str], destination: str | Path) -> list[Path]:
        """Extract the named members below ``destination`` (tarfile ``data`` filter; names are checked)."""
        destination = Path(destination)
        self.member_names()  # validate every member before writing anything
        destination.mkdir(parents=True, exist_ok=True)
        written = []
        for name, stream in self.iter_members(lambda n: n in set(names)):
            target = (destination / name).resolve()
            if os.path.commonpath([target, destination.resolve()]) != str(destination.resolve()):
                raise UnsafeArchiveMemberError(self.location(name), "member would be written outside the target folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(stream.read())
            written.append(target)
        return written


def extract_archive(path: str | Path, destination: str | Path) -> None:
    """Unpack a whole downloaded archive with tarfile's ``data`` filter (refuses unsafe members and
    members above the per-file :class:`ReadLimits`; the dataset as a whole may be large)."""
    limits = ReadLimits.from_environment()
    try:
        with tarfile.open(path) as tar:
            for member in tar.getmembers():
                check_member_safe(member, path)
                if member.isfile():
                    limits.check_member(f"{path}:{member.name}", member.name, member.size)
            tar.extractall(destination, filter="data")
    except (UnsafeArchiveMemberError, ArchiveTooLargeError):
        raise
    except (tarfile.FilterError, *_ARCHIVE_READ_ERRORS) as error:
        raise ArchiveError(path, f"cannot unpack ({type(error).__name__}: {error})") from error
