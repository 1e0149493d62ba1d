"""Exceptions that name the offending file and the problem.

Every error raised for bad input is a :class:`DataError` carrying ``path`` (the file, archive or
archive member at fault) so a long run can report exactly what to fix.
"""

from __future__ import annotations

from pathlib import Path


class HdpbenchError(Exception):
    """Base class of all errors raised by hdpbench on purpose."""


class DataError(HdpbenchError, ValueError):
    """A file exists but its content cannot be used."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ArchiveError(DataError):
    """A compound archive is corrupt, unsafe or incomplete."""


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
