"""Exceptions that name the offending file and the problem.

Every error raised for bad input is a :class:`DataError` carrying ``path`` (the file, archive or
archive member at fault) so a long run can report exactly what to fix.
"""

from __future__ import annotations

from pathlib import Path


class HdpbenchError(Exception):
    """Base class of all errors raised by hdpbench on purpose."""


class _AtPath:
    """An error about one file: ``path`` and ``problem``, shown as ``PATH: PROBLEM``."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class DataError(_AtPath, HdpbenchError, ValueError):
    """A file exists but its content cannot be used."""


class ArchiveError(DataError):
    """A compound archive is corrupt, unsafe or incomplete."""


class ArchiveTooLargeError(ArchiveError):
    """A member (or all members together) larger than the read limits allow (a decompression bomb)."""


class MissingMemberError(ArchiveError):
    """A member the reader needs is absent from an archive or folder."""


class UnsafeArchiveMemberError(ArchiveError):
    """An archive member would escape its folder (``..``, absolute path, link)."""


class TrajectoryMismatchError(DataError):
    """Trajectory atoms do not match the reference supercell (count, species or order)."""


class NonFiniteError(DataError):
    """NaN or inf in positions, forces or force constants."""


class ForceConstantsShapeError(DataError):
    """Force constants whose shape does not fit the supercell."""


class EmptyTrajectoryError(DataError):
    """A trajectory file with no frames (left after discarding equilibration)."""


class FrameIndexError(DataError, IndexError):
    """A frame index past the end of a trajectory."""


class DatasetUnavailableError(HdpbenchError):
    """A registered dataset is not on disk and cannot be downloaded here."""


class UnknownDatasetError(HdpbenchError, KeyError):
    """No dataset of that name is registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class UsageError(HdpbenchError, ValueError):
    """A bad command-line value or setting (exit status 2)."""


class StoreWriteError(_AtPath, HdpbenchError, OSError):
    """A results or output file cannot be written (read-only folder, full disk); names the file."""


class CompoundFailures(HdpbenchError):
    """Some compounds of a stage failed; every other compound was computed and saved.

    ``failures`` maps each failed compound to its recorded error (``<compound>.failed.json``).
    """

    def __init__(self, stage: str, directory: str | Path, failures: dict[str, dict]):
        self.stage = stage
        self.directory = str(directory)
        self.failures = failures
        lines = [f"{stage}: {len(failures)} compound(s) failed (the others were saved in {directory}):"]
        lines += [f"  {name}: {record['error']}" for name, record in sorted(failures.items())]
        super().__init__("\n".join(lines))
