"""Readers for the file formats reference data comes in (VASP, phonopy, FHI-vibes, ASE)."""
