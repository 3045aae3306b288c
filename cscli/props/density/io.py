"""Charge densities in and out: VASP CHGCAR, the EAC-Net h5 layout, GPAW density dumps.

Units. Inside cscli a density is ρ in electrons/Å³ (:class:`Density.values`). A CHGCAR stores
ρ·V_cell (VASP's convention, pymatgen's ``Chgcar.data['total']``), so the grid average of the
file's numbers is the electron count; :func:`read_chgcar` divides by the cell volume and
:func:`write_chgcar` multiplies. The EAC-Net h5 layout (group ``chgcar_random``: ``atom_pos``
(F,N,3) Å, ``atom_type`` (F,N) atomic numbers, ``cell`` (F,3,3) Å, ``probe_pos`` (F,P,3) Å, ``chg``
(F,P) electrons/Å³, ``probe_shape`` [F,nx,ny,nz]) holds random probe points, not a full grid.

Grid convention (VASP's): value ``[i, j, k]`` sits at fractional coordinates (i/nx, j/ny, k/nz).
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cscli.core.errors import DataError


@dataclass
class Density:
    """One structure and its density: a full periodic grid (``values`` of shape (nx,ny,nz)) or
    scattered probe points (``points`` (P,3) Å, ``values`` (P,)). ρ in electrons/Å³."""

    atoms: object  # ase.Atoms
    values: np.ndarray
    points: np.ndarray | None = None  # None: values is a full grid
    name: str = "density"
    source: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def is_grid(self) -> bool:
        return self.points is None

    @property
    def volume(self) -> float:
        return float(abs(np.linalg.det(self.atoms.cell.array)))

    def electrons(self) -> float:
        """∫ρ dV (grid only): the grid mean times the cell volume."""
        if not self.is_grid:
            raise DataError(f"{self.name}: electron count needs a full grid, not probe points")
        return float(self.values.mean() * self.volume)

    def grid_points(self, index=None) -> np.ndarray:
        """Cartesian positions (Å) of the grid points (all, or those at flat ``index``)."""
        return grid_points(self.atoms.cell.array, self.values.shape, index)

    def all_points(self) -> tuple[np.ndarray, np.ndarray]:
        """(points (P,3) Å, values (P,)) of every known point."""
        if self.is_grid:
            return self.grid_points(), self.values.reshape(-1)
        return self.points, self.values


def grid_points(cell, shape, index=None) -> np.ndarray:
    """Cartesian positions of the VASP grid points of ``shape`` in ``cell`` (flat C order)."""
    shape = tuple(int(n) for n in shape)
    if index is None:
        index = np.arange(int(np.prod(shape)))
    ijk = np.stack(np.unravel_index(np.asarray(index), shape), axis=-1).astype(float)
    frac = ijk / np.asarray(shape, dtype=float)
    return frac @ np.asarray(cell, dtype=float)


def vasp_grid_shape(atoms, encut: float = 520.0, prec: str = "Normal") -> tuple[int, int, int]:
    """The fine FFT grid VASP writes CHGCAR on (NGXF, NGYF, NGZF). The coarse grid holds the
    G-sphere of 3/2·G_cut (``PREC = Normal``, VASP's default) or 2·G_cut (``Accurate``), i.e.
    n ≥ f·G_cut·L/π with f = 1.5 or 2, rounded up to an even number with factors 2, 3, 5; the fine
    grid doubles it. ``encut`` in eV, G_cut = sqrt(encut / (ħ²/2m)). Checked against VASP 6 files
    (tests/test_density.py)."""
    hbar2_2m = 3.80998212  # ħ²/2m in eV·Å²
    factor = {"normal": 1.5, "accurate": 2.0}.get(str(prec).lower())
    if factor is None:
        raise DataError(f"PREC {prec!r}: expected Normal or Accurate")
    gcut = np.sqrt(encut / hbar2_2m)  # Å⁻¹
    lengths = np.linalg.norm(np.asarray(atoms.cell.array), axis=1)
    return tuple(2 * _fft_size(int(np.ceil(factor * gcut * length / np.pi - 1e-6))) for length in lengths)


def spacing_grid_shape(atoms, spacing: float) -> tuple[int, int, int]:
    """Grid with at most ``spacing`` Å between points along each cell vector (FFT-friendly sizes)."""
    if spacing <= 0:
        raise DataError(f"grid spacing {spacing}: must be > 0")
    lengths = np.linalg.norm(np.asarray(atoms.cell.array), axis=1)
    return tuple(_fft_size(int(np.ceil(length / spacing - 1e-9))) for length in lengths)


def _fft_size(n: int, even: bool = True) -> int:
    """Smallest n' ≥ n with prime factors 2, 3, 5 only (and even, like VASP's grids)."""
    n = max(int(n), 1)
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1 and (not even or n % 2 == 0):
            return n
        n += 1


# ----------------------------------------------------------------------------- CHGCAR


def read_chgcar(path) -> Density:
    """A VASP CHGCAR (or CHGCAR.gz, PARCHG, AECCAR) → :class:`Density` (ρ = total / V)."""
    from pymatgen.core.structure import Structure  # noqa: F401  (pymatgen import check)
    from pymatgen.io.ase import AseAtomsAdaptor
    from pymatgen.io.vasp.outputs import Chgcar

    path = str(path)
    _check_chgcar_grid(path)
    try:
        chg = Chgcar.from_file(path)
    except Exception as exc:  # pymatgen raises many kinds on a broken file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(f"{path}: not a readable CHGCAR ({first})") from None
    atoms = AseAtomsAdaptor.get_atoms(chg.structure)
    total = np.asarray(chg.data["total"], dtype=float)
    volume = float(abs(np.linalg.det(atoms.cell.array)))
    meta = {}
    if "diff" in chg.data:
        meta["magnetization"] = float(np.asarray(chg.data["diff"]).mean())
    return Density(atoms=atoms, values=total / volume, name=_stem(path), source=path, meta=meta)


def _check_chgcar_grid(path: str) -> None:
    """One clear line when the grid header and the number of values disagree."""
    from monty.io import zopen

    try:
        with zopen(path, "rt") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        counts = [int(x) for x in lines[6].split()]
        natoms = sum(counts)
        start = 8 + natoms  # blank line after the coordinates, then the grid line
        while start < len(lines) and not lines[start].strip():
            start += 1
        shape = [int(x) for x in lines[start].split()]
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError
    except (IndexError, ValueError):
        raise DataError(f"{path}: not a CHGCAR (no structure and grid header where VASP puts them)") from None
    need = int(np.prod(shape))
    got = 0
    for line in lines[start + 1 :]:
        parts = line.split()
        if not parts or parts[0].startswith("aug"):
            break
        try:
            [float(p) for p in parts]
        except ValueError:
            raise DataError(
                f"{path}: grid {shape[0]}x{shape[1]}x{shape[2]}: non-numeric value in the density "
                f"block ({line.strip()[:40]!r})"
            ) from None
        got += len(parts)
        if got >= need:
            break
    if got < need:
        raise DataError(
            f"{path}: grid {shape[0]}x{shape[1]}x{shape[2]} needs {need} values, the file has {got} "
            "(truncated or broken CHGCAR)"
        )


def write_chgcar(path, atoms, rho: np.ndarray, comment: str | None = None) -> Path:
    """Write ρ (electrons/Å³, shape (nx,ny,nz)) as a CHGCAR (ρ·V, VASP layout): pymatgen's header
    layout (lattice, symbols, counts, direct coordinates), then the grid x fastest, five values
    a line, 11 significant digits, formatted by numpy a line at a time (pymatgen's writer formats
    value by value: 2.2 s against 0.6 s of CPU for a 72×80×96 grid)."""
    import itertools

    rho = np.asarray(rho, dtype=float)
    if rho.ndim != 3:
        raise DataError(f"{path}: a CHGCAR needs a 3-D grid, got shape {rho.shape}")
    cell = np.asarray(atoms.cell.array, dtype=float)
    volume = float(abs(np.linalg.det(cell)))
    symbols = atoms.get_chemical_symbols()
    groups = [(s, len(list(g))) for s, g in itertools.groupby(symbols)]
    frac = atoms.get_scaled_positions(wrap=False) if len(atoms) else np.zeros((0, 3))
    header = [comment or atoms.get_chemical_formula(), "   1.00000000000000"]
    header += [f" {v[0]:12.6f}{v[1]:12.6f}{v[2]:12.6f}" for v in cell]
    header += ["".join(f"{s:5}" for s, _ in groups), "".join(f"{n:6}" for _, n in groups), "Direct"]
    header += [f"{a:10.6f}{b:10.6f}{c:10.6f}" for a, b, c in frac]
    header += [" ", "   {}   {}   {}".format(*rho.shape)]
    values = (rho * volume).ravel(order="F")  # VASP: x fastest
    full = len(values) // 5 * 5
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write("\n".join(header) + "\n")
        if full:
            np.savetxt(fh, values[:full].reshape(-1, 5), fmt=" %.10E", delimiter="")
        if full < len(values):
            fh.write("".join(f" {v:.10E}" for v in values[full:]) + "\n")
    os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------- EAC-Net h5


def read_eacnet_h5(path) -> list[Density]:
    """Every frame of an EAC-Net h5 file (groups with ``atom_pos``, ``atom_type``, ``cell``,
    ``probe_pos``, ``chg``) as probe-point densities."""
    import h5py
    from ase import Atoms

    path = str(path)
    out = []
    try:
        fh = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"{path}: not an HDF5 file ({str(exc).splitlines()[0]})") from None
    with fh:
        groups = [k for k in fh.keys() if isinstance(fh[k], h5py.Group)]
        for gname in groups:
            g = fh[gname]
            missing = [k for k in ("atom_pos", "atom_type", "cell", "probe_pos", "chg") if k not in g]
            if missing:
                raise DataError(f"{path}: group {gname!r} lacks {', '.join(missing)} (EAC-Net h5 layout)")
            pos, typ, cell = np.asarray(g["atom_pos"]), np.asarray(g["atom_type"]), np.asarray(g["cell"])
            probes, chg = np.asarray(g["probe_pos"]), np.asarray(g["chg"])
            if pos.ndim != 3 or probes.ndim != 3 or chg.shape != probes.shape[:2]:
                raise DataError(
                    f"{path}: group {gname!r}: shapes atom_pos {pos.shape}, probe_pos {probes.shape}, "
                    f"chg {chg.shape} do not fit the EAC-Net layout"
                )
            for f in range(pos.shape[0]):
                atoms = Atoms(numbers=typ[f], positions=pos[f], cell=cell[f], pbc=True)
                meta = {"group": gname}
                if "probe_shape" in g:
                    meta["grid_shape"] = [int(x) for x in np.asarray(g["probe_shape"])[1:]]
                out.append(
                    Density(
                        atoms=atoms,
                        values=chg[f].astype(float),
                        points=probes[f].astype(float),
                        name=f"{_stem(path)}-{gname}-{f}",
                        source=path,
                        meta=meta,
                    )
                )
    if not out:
        raise DataError(f"{path}: no EAC-Net density group in this h5 file")
    return out


# ----------------------------------------------------------------------------- dispatch


def read_any(path) -> list[Density]:
    """A CHGCAR-like file, an h5 file, or a folder of them → densities."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in glob.glob(str(p / "*")) if _is_density_file(f))
        if not files:
            raise DataError(f"{path}: no CHGCAR or .h5 file in this folder")
        return [d for f in files for d in read_any(f)]
    if not p.exists():
        raise DataError(f"{path}: no such file")
    if p.suffix in (".h5", ".hdf5"):
        return read_eacnet_h5(p)
    return [read_chgcar(p)]


def read_all(paths) -> list[Density]:
    return [d for p in paths for d in read_any(p)]


def _is_density_file(name: str) -> bool:
    base = os.path.basename(name)
    return base.endswith((".h5", ".hdf5")) or "CHGCAR" in base.upper() or base.upper().endswith((".CHG", ".CHG.GZ"))


def _stem(path: str) -> str:
    base = os.path.basename(path)
    for suffix in (".gz", ".h5", ".hdf5", ".CHGCAR", ".chgcar"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    if base.upper() in ("CHGCAR", "CHG") or base.upper().startswith("CHGCAR"):
        parent = os.path.basename(os.path.dirname(os.path.abspath(path)))
        return f"{parent}" if base.upper() == "CHGCAR" else base
    return base


def read_gpaw_dump(json_path) -> Density:
    """A frame written by ``scripts/gpaw_density_frames.py`` (``<id>.json`` + ``<id>.npy``)."""
    from ase import Atoms

    json_path = Path(json_path)
    try:
        meta = json.loads(json_path.read_text())
        req = meta["request"]
        rho = np.load(
            meta["density"]["path"] if Path(meta["density"]["path"]).is_file() else json_path.with_suffix(".npy")
        )
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"{json_path}: not a GPAW density dump ({exc})") from None
    atoms = Atoms(symbols=req["symbols"], positions=req["positions"], cell=req["cell"], pbc=req["pbc"])
    return Density(
        atoms=atoms,
        values=np.asarray(rho, dtype=float),
        name=meta.get("id", json_path.stem),
        source=str(json_path),
        meta={"energy": meta.get("energy"), "settings": req["settings"]},
    )
