"""The names of the stages (their results folders): one enum, so no module types a stage name."""

from enum import StrEnum


class StageName(StrEnum):
    PHONONS = "phonons"
    SIGMA_REFERENCE_FRAMES = "sigma-reference-frames"
    MD = "md"
    SIGMA_MD = "sigma-md"
    KPCA = "kpca"
