"""The ``phonondb`` layout: a folder of Kyoto phonondb archives, read unchanged (:mod:`hdpbench.io.phonondb`).

Every ``*.tar.lzma`` (or ``materials-id-*``/``mp-*`` ``.tar.xz``) at the top of the folder is one
material; adding a material is copying its archive into the folder. A material is named by its
formula as the archive name spells it, with the cell's element symbols (``KRb2GaF6`` for
``materials-id-13190-krb2gaf6-fm-3m-225.tar.lzma``), else by the cell's reduced formula; two archives
of one formula get their materials-project id appended (``KRb2GaF6-mp-13190``). Other files of the
folder (``index.json``, README, LICENSE, provenance.json) are not read.

The record of a material: the unit cell of ``POSCAR-unitcell``, the supercell matrix ``DIM``, the
primitive matrix ``PRIMITIVE_AXIS`` (the elpasolites: their 40-atom conventional cell is both unit
cell and supercell, the fcc primitive cell has 10 atoms), Φ from ``FORCE_SETS``. There are no
frames, so the σ, MD and map stages record "not applicable" for these materials.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from hdpbench.core import paths
from hdpbench.core.compound import Compound, halide_or_none
from hdpbench.core.errors import DataError, HdpbenchError
from hdpbench.data.interface import Capability, SystemInfo, files_digest

LAYOUT = "phonondb"
FUNCTIONAL = "PBEsol"  # phonondb 2018-04-17: VASP, PAW, PBEsol relaxations and forces


class PhonondbSource:
    """A folder of phonondb archives (see the module docstring); implements
    :class:`~hdpbench.data.interface.ReferenceSource`."""

    layout = LAYOUT

    def __init__(self, spec, root: Path):
        self.spec = spec
        self.root = Path(root)
        self._infos: dict[str, SystemInfo] | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def __repr__(self) -> str:
        return f"PhonondbSource({self.name!r}, root={str(self.root)!r})"

    def archives(self) -> list[Path]:
        from hdpbench.io.phonondb import is_phonondb_archive

        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if p.is_file() and is_phonondb_archive(p.name))

    def _listing(self) -> dict[str, SystemInfo]:
        if self._infos is None:
            cache = _ListingCache(self.name)
            rows = [cache.row(path) for path in self.archives()]
            cache.save()
            counts: dict[str, int] = {}
            for row in rows:
                counts[row["name"]] = counts.get(row["name"], 0) + 1
            infos = {}
            for path, row in zip(self.archives(), rows, strict=True):
                name = row["name"] if counts[row["name"]] == 1 else f"{row['name']}-{row['material_id']}"
                infos[name] = SystemInfo(
                    name=name,
                    halide=row["halide"],
                    files=(path,),
                    capabilities=frozenset({Capability.FORCE_CONSTANTS}),
                    problem=row["problem"],
                    details={"material_id": row["material_id"], "folder": row["folder"], "born": row["born"],
                             "unitcell_atoms": row["unitcell_atoms"], "archive": path.name},
                )  # fmt: skip
            self._infos = infos
        return self._infos

    def compounds(self, halide: str | None = None) -> list[str]:
        return [name for name, info in self._listing().items() if halide is None or info.halide == halide]

    def systems(self) -> list[str]:
        return self.compounds()

    def info(self, name: str) -> SystemInfo:
        listing = self._listing()
        if name not in listing:
            raise DataError(self.root, f"no material {name!r} in dataset {self.name!r} ({len(listing)} archives)")
        return listing[name]

    def input_digest(self, name: str) -> str:
        return files_digest(self.info(name).files)

    def load(self, name: str, **_options) -> Compound:
        """The record of one material (``discard``, ``frames``, ``trajectories`` are accepted and
        ignored: phonondb has no frames)."""
        from hdpbench.core.structures import make_supercell
        from hdpbench.io.phonondb import force_constants_of, read_phonondb_archive

        info = self.info(name)
        archive = info.files[0]
        material = read_phonondb_archive(archive)
        force_constants = force_constants_of(material)
        supercell = make_supercell(material.unitcell, material.supercell_matrix)
        return Compound(
            formula=name,
            halide=halide_or_none(material.unitcell.get_chemical_symbols()),
            unitcell=material.unitcell,
            supercell_matrix=material.supercell_matrix,
            reference_supercell=supercell,
            force_constants=force_constants,
            primitive_matrix=material.primitive_matrix,
            provenance={
                "source": str(archive), "layout": LAYOUT, "dataset": self.name, "dataset_version": self.spec.version,
                "material_id": material.material_id, "folder": material.folder, "functional": FUNCTIONAL,
                "force_constants_from": material.location("FORCE_SETS"), "born_present": material.born is not None,
                "displacements": len(material.force_sets["first_atoms"]),
            },
        )  # fmt: skip

    def table(self) -> list[dict[str, Any]]:
        """One row per material, from the listing (no force sets parsed)."""
        return [
            {"system": name, "halide": info.halide, "material_id": info.details.get("material_id"),
             "unitcell_atoms": info.details.get("unitcell_atoms"), "born": info.details.get("born"),
             "archive": info.details.get("archive"), "problem": info.problem}
            for name, info in self._listing().items()
        ]  # fmt: skip

    def __iter__(self):
        return iter(self.compounds())

    def __len__(self) -> int:
        return len(self._listing())


class _ListingCache:
    """What a listing reads of each archive (its folder, cell composition, members), by path, size and
    mtime: ~3 ms per archive to decompress, kept so listing a large folder is not a full re-read."""

    def __init__(self, dataset: str):
        import json

        self.file = paths.cache_dir() / "inventories" / f"phonondb-{dataset}.json"
        try:
            self.data = json.loads(self.file.read_text())
        except (OSError, ValueError):
            self.data = {}
        self.changed = False

    def row(self, path: Path) -> dict[str, Any]:
        from hdpbench.core.storage import source_digest

        stat = path.stat()
        stamp = [stat.st_size, stat.st_mtime_ns, source_digest("io/phonondb.py", "data/phonondb.py")]
        record = self.data.get(str(path))
        if isinstance(record, dict) and record.get("stamp") == stamp:
            return record["row"]
        row = _list_archive(path)
        self.data[str(path)] = {"stamp": stamp, "row": row}
        self.changed = True
        return row

    def save(self) -> None:
        if self.changed:
            from hdpbench.core.storage import try_write_cache

            try_write_cache(self.file, self.data)


def _list_archive(path: Path) -> dict[str, Any]:
    """A listing row: name, halide, material id, folder, atoms, BORN present; or the problem."""
    from hdpbench.io.archive import CompoundFiles
    from hdpbench.io.phonondb import archive_stem, formula_from_name, name_parts, read_unitcell_only

    material_id, lower = name_parts(path)
    row: dict[str, Any] = {"name": archive_stem(path), "halide": None, "material_id": material_id, "folder": None,
                           "unitcell_atoms": None, "born": None, "problem": None}  # fmt: skip
    try:
        folder, unitcell = read_unitcell_only(path)
        members = CompoundFiles(path).member_names()
    except HdpbenchError as error:  # one bad archive must not hide the others: its stages record this
        row["problem"] = str(error)
        return row
    row["folder"] = folder
    row["material_id"] = material_id or (re.match(r"mp-\d+", folder) or [folder])[0]
    row["unitcell_atoms"] = len(unitcell)
    row["born"] = f"{folder}/BORN" in members
    row["halide"] = halide_or_none(unitcell.get_chemical_symbols())
    row["name"] = (lower and formula_from_name(lower, unitcell)) or unitcell.get_chemical_formula(mode="metal", empirical=True)
    return row
