"""Quasi-harmonic free energies G(T, p) of one structure with any force field (phonopy underneath).

The pipeline of one frame (:func:`qha_frame`):

1. optional pre-relax of positions and cell (``relax_atoms``, tight ``fmax``: loose forces give
   spurious soft modes);
2. lattice scalings ``a = s·a0`` for each ``s`` in the scale grid; at each volume the ions and the
   cell *shape* relax at fixed volume (ASE ``FrechetCellFilter(constant_volume=True)``), giving E(V);
   the volumes are taken from a0 outwards and each relaxation starts from the nearest volume
   already relaxed, rescaled to its volume (:func:`start_structure`: fewer optimizer steps);
3. phonopy: a diagonal supercell whose lattice lengths are all ≥ ``min_length`` (Å), symmetry-reduced
   displacements, forces from the model, force constants, frequencies and thermal properties on a
   q-mesh (F_ph(V, T), C_v, S per cell): phonopy's mesh (a length or N,N,N, Fourier-interpolated
   between the supercell's q-points), or ``"supercell"``: the Γ-centred mesh of the supercell's own
   commensurate q-points, where the force constants give the frequencies exactly;
4. every volume's lowest mesh frequency is recorded; volumes with imaginary modes (below
   ``-imaginary_tol`` THz) are dropped from the fit while at least ``min_volumes`` remain, otherwise
   the frame fails (phonopy would integrate only the real modes, silently); with
   ``follow_soft_modes`` a volume with an imaginary optical mode at Γ is first relaxed along it
   (:func:`follow_soft_modes`); the static E(V) must lie on one EOS (:func:`eos_outlier`);
5. :func:`fit_qha`: phonopy's QHA engine (``phonopy.qha.core.QHA``, behind ``PhonopyQHA``) (EOS fit of E(V) + F_ph(V, T) + pV at each T) once per
   pressure — all pressures come from one set of phonon runs: G(T, p) = min_V [E + F_ph + pV].

Each volume's relaxed cell, energy and phonopy force sets are cached as JSON under the work
directory, so a killed run resumes at the volume it reached.

Units: phonopy's thermal properties are per unit cell in kJ/mol and J/K/mol (mol of cells);
:class:`QHAFit` keeps phonopy's per-cell units, :func:`qha_info` converts to per atom.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cscli.core.errors import CscliError, FrameError, UsageError
from cscli.core.log import get_logger

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms

log = get_logger(__name__)

EOS_NAMES = ("vinet", "birch_murnaghan", "murnaghan")
MIN_VOLUMES = 5
FIT_DIP_TOL = 0.02  # eV/atom: how far a fitted minimum may lie below the lowest computed F(V) + pV
# eV/atom: how far one static E(V) point may lie off the EOS fitted through the others. Smooth
# phases stay within 2.9 meV/atom (7net-0+d3, fmax 1e-3, 8 phases; the largest at an end point, where
# leaving it out extrapolates); a relaxation that found another structure at one volume lies far
# off (the shipped P at 0.95: 135 meV/atom below the curve through the other five)
EOS_OUTLIER_TOL = 0.01
KJMOL_PER_EV = 96.48533212331002  # phonopy's EvTokJmol (CODATA 2018)


# ----------------------------------------------------------------------------- grids


def parse_grid(text: str, what: str, unit: str = "") -> np.ndarray:
    """``LO:HI:STEP`` (inclusive of HI when on the grid) or ``a,b,c`` → sorted unique array."""
    text = str(text).strip()
    try:
        if ":" in text:
            parts = [float(x) for x in text.split(":")]
            if len(parts) != 3:
                raise ValueError
            lo, hi, step = parts
            if step <= 0 or hi < lo:
                raise UsageError(f"{what} {text!r}: need LO <= HI and STEP > 0")
            n = math.floor((hi - lo) / step + 1e-9) + 1
            values = lo + step * np.arange(n)
        else:
            values = np.array([float(x) for x in text.split(",") if x.strip() != ""])
    except ValueError:
        raise UsageError(f"{what} {text!r}: expected LO:HI:STEP or a comma list of numbers{unit}") from None
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise UsageError(f"{what} {text!r}: no finite values")
    return np.unique(np.round(values, 10))


def extended_temperatures(temperatures: np.ndarray) -> np.ndarray:
    """The requested temperatures plus one more step: PhonopyQHA needs T[i+1] for dV/dT at T[i]."""
    t = np.asarray(temperatures, dtype=float)
    step = t[-1] - t[-2] if t.size > 1 else 10.0
    return np.append(t, t[-1] + step)


# ----------------------------------------------------------------------------- the QHA fit


@dataclass
class QHAFit:
    """PhonopyQHA results at each pressure (rows) and temperature (columns), per unit cell."""

    temperatures: np.ndarray  # (nT,) K
    pressures: np.ndarray  # (nP,) GPa
    volumes: np.ndarray  # (nV,) Å^3, the volumes fitted
    gibbs: np.ndarray  # (nP, nT) eV/cell
    volume: np.ndarray  # (nP, nT) Å^3/cell
    bulk_modulus: np.ndarray  # (nP, nT) GPa
    thermal_expansion: np.ndarray  # (nP, nT) 1/K (volumetric)
    heat_capacity_p: np.ndarray  # (nP, nT) J/K/mol of cells (numerical -T d2G/dT2)
    heat_capacity_p_polyfit: np.ndarray  # (nP, nT)
    gruneisen: np.ndarray  # (nP, nT)
    helmholtz_volume: np.ndarray  # (nP, nT, nV) eV/cell: E(V) + F_ph(V, T) + pV
    static_bulk_modulus: np.ndarray  # (nP,) eV/Å^3 (EOS fit of E(V) + pV)
    eos: str = "vinet"
    extra: dict = field(default_factory=dict)


def fit_qha(
    volumes,
    energies,
    temperatures,
    free_energy,
    cv,
    entropy,
    pressures=(0.0,),
    eos: str = "vinet",
    t_max: float | None = None,
) -> QHAFit:
    """Run phonopy's QHA (``phonopy.qha.core.QHA``, the engine of ``PhonopyQHA``) once per pressure on one set of phonon results.

    ``free_energy`` (kJ/mol), ``cv`` and ``entropy`` (J/K/mol) are phonopy's per-cell arrays indexed
    [T, V] on ``temperatures``, which must extend at least one step beyond ``t_max`` (default: the
    second-last temperature). Results are on ``temperatures[temperatures <= t_max]``.
    """
    from phonopy.qha.core import QHA, BulkModulus

    if eos not in EOS_NAMES:
        raise UsageError(f"--eos {eos!r}: choose from {', '.join(EOS_NAMES)}")
    temperatures = np.asarray(temperatures, dtype=float)
    volumes = np.asarray(volumes, dtype=float)
    energies = np.asarray(energies, dtype=float)
    if t_max is None:
        t_max = float(temperatures[-2])
    n_t = int(np.argmin(np.abs(temperatures - t_max))) + 1
    if n_t >= temperatures.size:
        raise UsageError("the thermal-property temperatures must extend one step beyond the last requested one")
    rows: dict[str, list] = {
        k: []
        for k in (
            "gibbs",
            "volume",
            "bulk_modulus",
            "thermal_expansion",
            "cp",
            "cp_poly",
            "gruneisen",
            "helmholtz",
            "b0",
        )
    }
    pressures = np.atleast_1d(np.asarray(pressures, dtype=float))
    for p in pressures:
        qha = QHA(
            volumes,
            energies,
            temperatures,
            np.asarray(cv, dtype=float),
            np.asarray(entropy, dtype=float),
            np.asarray(free_energy, dtype=float),
            pressure=float(p),
            eos=eos,
            t_max=t_max,
        )
        qha.run()
        gibbs = np.asarray(qha.gibbs_temperature, dtype=float)
        if gibbs.shape[0] != n_t:
            # PhonopyQHA skips temperatures where the EOS fit fails: the grid would no longer line up
            raise FrameError(
                f"EOS fit ({eos}) failed at some temperature at p = {p:g} GPa "
                "(F(V) has no minimum inside the volume range?)"
            )
        rows["gibbs"].append(gibbs)
        rows["volume"].append(np.asarray(qha.volume_temperature, dtype=float))
        rows["bulk_modulus"].append(np.asarray(qha.bulk_modulus_temperature, dtype=float))
        rows["thermal_expansion"].append(np.asarray(qha.thermal_expansion, dtype=float))
        rows["cp"].append(np.asarray(qha.heat_capacity_P_numerical, dtype=float))
        rows["cp_poly"].append(np.asarray(qha.heat_capacity_P_polyfit, dtype=float))
        rows["gruneisen"].append(np.asarray(qha.gruneisen_temperature, dtype=float))
        rows["helmholtz"].append(np.asarray(qha.helmholtz_volume, dtype=float)[:n_t])
        rows["b0"].append(float(BulkModulus(volumes, energies, pressure=float(p), eos=eos).bulk_modulus))
    arr = {k: np.array(v) for k, v in rows.items()}
    return QHAFit(
        temperatures=temperatures[:n_t],
        pressures=pressures,
        volumes=volumes,
        gibbs=arr["gibbs"],
        volume=arr["volume"],
        bulk_modulus=arr["bulk_modulus"],
        thermal_expansion=arr["thermal_expansion"],
        heat_capacity_p=arr["cp"],
        heat_capacity_p_polyfit=arr["cp_poly"],
        gruneisen=arr["gruneisen"],
        helmholtz_volume=arr["helmholtz"],
        static_bulk_modulus=arr["b0"],
        eos=eos,
    )


def eos_outlier(volumes, energies, eos: str = "vinet") -> tuple[int, float]:
    """The point of E(V) that does not belong to the curve of the others: the one whose removal
    leaves the best EOS fit of the rest; returns its index and its deviation E - E_fit from that
    fit (same unit as ``energies``; negative: below the curve)."""
    from phonopy.qha.eos import fit_to_eos, get_eos

    volumes, energies = np.asarray(volumes, float), np.asarray(energies, float)
    function = get_eos(eos)
    misfit, deviations = np.full(volumes.size, np.inf), np.full(volumes.size, np.inf)
    for i in range(volumes.size):
        others = np.arange(volumes.size) != i
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            params = fit_to_eos(volumes[others], energies[others], function)
        if params is None:
            continue
        misfit[i] = np.abs(energies[others] - function(volumes[others], params)).max()
        deviations[i] = energies[i] - function(volumes[i], params)
    worst = int(np.argmin(misfit))
    return worst, float(deviations[worst])


# ----------------------------------------------------------------------------- structures


def supercell_matrix(cell, min_length: float) -> np.ndarray:
    """Diagonal supercell whose lattice vectors are all at least ``min_length`` Å long.

    n_i = ceil(min_length / |a_i|), so every length lies in [min_length, min_length + |a_i|): the
    lengths are as equal as a diagonal multiple of the cell allows.
    """
    lengths = np.linalg.norm(np.asarray(cell, dtype=float), axis=1)
    if min_length <= 0:
        return np.eye(3, dtype=int)
    return np.diag([max(1, math.ceil(min_length / length - 1e-9)) for length in lengths])


def to_phonopy_atoms(atoms: Atoms):
    from phonopy.structure.atoms import PhonopyAtoms

    return PhonopyAtoms(
        symbols=atoms.get_chemical_symbols(),
        cell=np.array(atoms.cell),
        scaled_positions=atoms.get_scaled_positions(wrap=False),
        masses=atoms.get_masses(),
    )


def to_ase_atoms(cell) -> Atoms:
    from ase import Atoms

    return Atoms(symbols=cell.symbols, cell=cell.cell, scaled_positions=cell.scaled_positions, pbc=True)


def scaled_cell(atoms: Atoms, scale: float) -> Atoms:
    """The frame with every lattice vector multiplied by ``scale`` (fractional positions kept)."""
    work = atoms.copy()
    work.calc = None
    work.set_cell(np.array(atoms.cell) * scale, scale_atoms=True)
    return work


# the value of --mesh that sums over the supercell's own commensurate q-points
SUPERCELL_MESH = "supercell"
# ASE optimizer of every relaxation: BFGS took 2.6-5.2x less CPU than FIRE to fmax 1e-3 at the
# same energies (benchmarks/qha_optimizer.py, docs/qha.md)
DEFAULT_OPTIMIZER = "BFGS"


def relax_fixed_volume(
    atoms: Atoms, calc, fmax: float, steps: int, symprec: float | None = None, optimizer: str = DEFAULT_OPTIMIZER
) -> tuple[Atoms, bool]:
    """Relax ions and cell shape at constant volume (``relax_atoms`` with FrechetCellFilter,
    constant_volume=True, space group kept at ``symprec``); the result carries ``energy``."""
    from cscli.explore.relax import relax_atoms

    if steps == 0:
        work = atoms.copy()
        work.info["energy"] = potential_energy(work, calc)
        return work, True
    result = relax_atoms(
        atoms, calc, fmax=fmax, steps=steps, optimizer=optimizer, constant_volume=True, symprec=symprec
    )
    return result, bool(result.info["relax_converged"])


def batched_backend(calc) -> str | None:
    """Name of the batched force path available for ``calc``, or None (one structure per call)."""
    try:
        from sevenn.calculator import SevenNetCalculator
        from sevenn.nn.sequential import AtomGraphSequential
    except ImportError:  # pragma: no cover - sevenn is a core dependency
        return None
    if (
        isinstance(calc, SevenNetCalculator)
        and isinstance(getattr(calc, "model", None), AtomGraphSequential)
        and not getattr(calc, "modal", None)
    ):
        return "sevennet-batch"
    return None


def _sevennet_batch_forces(calc, structures: list[Atoms], batch_size: int) -> list[np.ndarray]:
    """SevenNet forces of many structures in batched graphs (SevenNet's own inference path:
    ``AtomGraphData`` graphs collated by torch_geometric, the model in batch mode)."""
    import sevenn._keys as KEY
    import torch
    from sevenn.atom_graph_data import AtomGraphData
    from sevenn.train.dataload import unlabeled_atoms_to_graph
    from torch_geometric.data import Batch

    model = calc.model
    out: list[np.ndarray] = []
    model.set_is_batch_data(True)
    try:
        for start in range(0, len(structures), batch_size):
            chunk = structures[start : start + batch_size]
            graphs = [
                AtomGraphData.from_numpy_dict(unlabeled_atoms_to_graph(a, calc.cutoff, with_shift=False)) for a in chunk
            ]
            batch = Batch.from_data_list(graphs).to(calc.device)
            with torch.enable_grad():
                result = model(batch)
            forces = result[KEY.PRED_FORCE].detach().cpu().numpy()
            offsets = np.cumsum([0] + [len(a) for a in chunk])
            out.extend(forces[offsets[i] : offsets[i + 1]].astype(float) for i in range(len(chunk)))
    finally:
        model.set_is_batch_data(False)
    return out


def evaluate_forces(calc, structures: list[Atoms], batch_size: int = 1) -> list[np.ndarray]:
    """Forces of each structure: in batches of ``batch_size`` where the backend batches (SevenNet
    checkpoints without a modal head, see :func:`batched_backend`), else one structure per ASE call
    (CHGNet, MatterSim, DPA-3 and MACE through their ASE calculators)."""
    if batch_size > 1 and len(structures) > 1 and batched_backend(calc):
        out = _sevennet_batch_forces(calc, structures, batch_size)
    else:
        out = []
        for atoms in structures:
            atoms = atoms.copy()
            atoms.calc = calc
            out.append(np.array(atoms.get_forces(), dtype=float))
            atoms.calc = None
    if not all(np.all(np.isfinite(f)) for f in out):
        raise FrameError("model returned non-finite forces on a displaced supercell")
    return out


def potential_energy(atoms: Atoms, calc) -> float:
    work = atoms.copy()
    work.calc = calc
    energy = float(work.get_potential_energy())
    if not math.isfinite(energy):
        raise FrameError("model returned a non-finite energy")
    return energy


# ----------------------------------------------------------------------------- phonons per volume


@dataclass
class QHASettings:
    scales: tuple[float, ...] = (0.95, 0.97, 0.99, 1.01, 1.03, 1.05)  # = the CLI default 0.95:1.05:0.02
    temperatures: tuple[float, ...] = tuple(np.arange(0.0, 601.0, 10.0))
    pressures: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0)
    eos: str = "vinet"
    min_length: float = 12.0
    mesh: tuple[int, int, int] | float | str = 20.0  # a phonopy mesh length, N,N,N, or "supercell"
    displacement: float = 0.01
    prerelax: bool = True
    prerelax_fmax: float = 0.001
    fmax: float = 0.001
    steps: int = 500
    imaginary_tol: float = 0.1  # THz; a lowest frequency below -tol is an imaginary mode
    min_volumes: int = MIN_VOLUMES
    batch_size: int = 1  # displaced supercells per model call where the backend batches (SevenNet)
    symprec: float | None = 1e-3  # Å; relaxations keep the space group found at this tolerance (None: off)
    optimizer: str = DEFAULT_OPTIMIZER
    # follow imaginary optical modes at Gamma of a volume to a lower-symmetry minimum (not in the
    # cache key: followed volumes are cached beside the others as scale-S-soft.json, see qha_frame)
    follow_soft_modes: bool = False

    def check(self) -> None:
        if len(self.scales) < self.min_volumes:
            raise UsageError(
                f"--scales gives {len(self.scales)} volumes; the EOS fit needs at least {self.min_volumes}"
            )
        if any(s <= 0 for s in self.scales):
            raise UsageError("--scales: scale factors must be positive")
        if self.eos not in EOS_NAMES:
            raise UsageError(f"--eos {self.eos!r}: choose from {', '.join(EOS_NAMES)}")
        if len(self.temperatures) < 2 or min(self.temperatures) < 0:
            raise UsageError("--temperatures: need at least two temperatures >= 0 K")
        if len(self.pressures) < 1:
            raise UsageError("--pressures: need at least one pressure")
        if isinstance(self.mesh, str) and self.mesh != SUPERCELL_MESH:
            raise UsageError(f"--mesh {self.mesh!r}: a length (number), three integers N,N,N or {SUPERCELL_MESH!r}")

    def key(self, model: str) -> str:
        """Hash of what the cached per-volume force sets depend on."""
        text = json.dumps(
            {
                "model": model,
                "min_length": self.min_length,
                "displacement": self.displacement,
                "prerelax": self.prerelax,
                "prerelax_fmax": self.prerelax_fmax,
                "fmax": self.fmax,
                "steps": self.steps,
                "symprec": self.symprec,
                # only when not FIRE: force sets cached before the option existed (FIRE) stay valid
                **({"optimizer": self.optimizer} if self.optimizer != "FIRE" else {}),
            },
            sort_keys=True,
        )
        return hashlib.sha1(text.encode()).hexdigest()[:10]

    def as_dict(self) -> dict:
        return {
            "scales": [float(s) for s in self.scales],
            "eos": self.eos,
            "min_length": self.min_length,
            "mesh": self.mesh if isinstance(self.mesh, (float, str)) else [int(m) for m in self.mesh],
            "displacement": self.displacement,
            "prerelax": self.prerelax,
            "prerelax_fmax": self.prerelax_fmax,
            "fmax": self.fmax,
            "steps": self.steps,
            "imaginary_tol": self.imaginary_tol,
            "min_volumes": self.min_volumes,
            "symprec": self.symprec,
            "optimizer": self.optimizer,
            "follow_soft_modes": self.follow_soft_modes,
        }


@dataclass
class VolumePoint:
    scale: float
    atoms: Atoms  # relaxed at fixed volume
    energy: float  # eV/cell
    dataset: dict  # phonopy displacement dataset with forces
    converged: bool
    phonon: object = None  # the phonopy object, while in memory


def phonopy_for(atoms: Atoms, smatrix, displacement: float | None = None):
    from phonopy import Phonopy

    # primitive_matrix="P": the input cell itself (phonopy 4 would pick a primitive cell by default),
    # so F, S, C_v, E and V all refer to one cell and per-atom values divide by its atom count
    phonon = Phonopy(to_phonopy_atoms(atoms), supercell_matrix=smatrix, primitive_matrix="P")
    if displacement is not None:
        phonon.generate_displacements(distance=displacement)
    return phonon


def start_structure(atoms0: Atoms, scale: float, done: dict) -> Atoms:
    """Where the fixed-volume relaxation at ``scale`` starts: the relaxed structure of the nearest
    volume already computed (``done``: scale -> VolumePoint), rescaled isotropically to this volume
    (its relaxed cell shape and internal coordinates are a closer start than a0's: fewer optimizer
    steps, same minimum within fmax); the scaled a0 when no volume is done yet."""
    if not done:
        return scaled_cell(atoms0, scale)
    nearest = min(done, key=lambda s: (abs(s - scale), s))
    # fixed-volume relaxations keep the volume, so the rescaled cell has exactly scale^3 * V0
    start = scaled_cell(done[nearest].atoms, scale / nearest)
    start.info = {}
    return start


def compute_volume(
    atoms0: Atoms, scale: float, calc, settings: QHASettings, smatrix, start: Atoms | None = None
) -> VolumePoint:
    """Relax at the scaled volume (from ``start`` when given, a structure already at that volume,
    else from the scaled a0), displace, and compute the force sets of one volume (the phonopy
    object travels along in ``point.phonon`` so that its symmetry search is not repeated)."""
    if start is None:
        start = scaled_cell(atoms0, scale)
    relaxed, converged = relax_fixed_volume(
        start, calc, settings.fmax, settings.steps, settings.symprec, settings.optimizer
    )
    energy = float(relaxed.info["energy"])
    phonon = phonopy_for(relaxed, smatrix, settings.displacement)
    structures = [to_ase_atoms(sc) for sc in phonon.supercells_with_displacements]
    forces = evaluate_forces(calc, structures, settings.batch_size)
    phonon.forces = np.array(forces)
    return VolumePoint(scale, relaxed, energy, phonon.dataset, converged, phonon)


def _phonon_with_force_constants(point: VolumePoint, smatrix):
    """The volume's phonopy object with force constants, built once: rebuilt from the cached
    displacement dataset when needed and kept in ``point.phonon`` (the thermal sums and the
    soft-mode check share it)."""
    if point.phonon is None:
        point.phonon = phonopy_for(point.atoms, smatrix)
        point.phonon.dataset = point.dataset
    if point.phonon.force_constants is None:
        point.phonon.produce_force_constants()
    return point.phonon


def thermal_of(point: VolumePoint, smatrix, mesh, temperatures: np.ndarray) -> dict:
    """Frequencies and thermal properties of one volume from its force sets."""
    phonon = _phonon_with_force_constants(point, smatrix)
    with warnings.catch_warnings():  # an even shifted mesh loses point-group reduction: slower, same sums
        warnings.filterwarnings("ignore", message="Half-grid shift")
        if isinstance(mesh, str) and mesh == SUPERCELL_MESH:  # (a numpy mesh would compare elementwise)
            # the commensurate q-points of a diagonal supercell: exact frequencies, no interpolation
            phonon.run_mesh([int(round(n)) for n in np.diag(smatrix)], with_eigenvectors=False, is_gamma_center=True)
        else:
            phonon.run_mesh(mesh, with_eigenvectors=False)  # phonopy's default mesh, as run_qha samples it
    freqs = np.asarray(phonon.mesh.frequencies)
    gamma = np.asarray(phonon.run_qpoints([[0.0, 0.0, 0.0]]).frequencies[0])  # soft modes at Gamma count too
    # The three acoustic modes at Gamma are zero by translational invariance but come out as tiny
    # numbers of either sign; phonopy's default sums the positive ones, each adding about
    # kT ln(h nu / kT) / N_q: a G(V) noise of meV per cell that differed between two relaxations
    # of the same minimum (tests/test_qha.py) and grows with the Gamma weight on coarse meshes.
    phonon.run_thermal_properties(temperatures=temperatures, exclude_gamma_acoustic=True)
    tp = phonon.thermal_properties
    return {
        "min_frequency": float(min(freqs.min(), gamma.min())),
        "free_energy": np.asarray(tp.free_energy),
        "entropy": np.asarray(tp.entropy),
        "heat_capacity": np.asarray(tp.heat_capacity),
        "mesh": [int(m) for m in phonon.mesh_numbers],
    }


def _atoms_to_json(atoms: Atoms) -> dict:
    return {
        "cell": np.array(atoms.cell).tolist(),
        "numbers": atoms.numbers.tolist(),
        "scaled_positions": atoms.get_scaled_positions(wrap=False).tolist(),
    }


def _atoms_from_json(data: dict) -> Atoms:
    from ase import Atoms

    return Atoms(numbers=data["numbers"], cell=data["cell"], scaled_positions=data["scaled_positions"], pbc=True)


def _point_to_json(point: VolumePoint) -> dict:
    from cscli.core.frames import to_builtin

    return to_builtin(
        {
            **_atoms_to_json(point.atoms),
            "scale": point.scale,
            "energy": point.energy,
            "converged": point.converged,
            "dataset": point.dataset,
        }
    )


def _point_from_json(data: dict) -> VolumePoint:
    dataset = data["dataset"]
    dataset = {
        **dataset,
        "first_atoms": [
            {**d, "displacement": np.array(d["displacement"]), "forces": np.array(d["forces"])}
            for d in dataset["first_atoms"]
        ],
    }
    return VolumePoint(
        float(data["scale"]), _atoms_from_json(data), float(data["energy"]), dataset, bool(data["converged"])
    )


def frame_cache_dir(work_dir: str | os.PathLike, atoms: Atoms, settings: QHASettings, model: str) -> Path:
    """``WORK_DIR/<id>-<hash>``: the hash covers the settings, the model and the input structure."""
    frame_id = str(atoms.info.get("id", "frame"))
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in frame_id)[:80]
    structure = json.dumps(
        np.round(
            np.concatenate([np.array(atoms.cell).ravel(), atoms.get_scaled_positions().ravel(), atoms.numbers]), 6
        ).tolist()
    )
    digest = hashlib.sha1((settings.key(model) + structure).encode()).hexdigest()[:12]
    return Path(work_dir) / f"{safe}-{digest}"


# ----------------------------------------------------------------------------- soft modes at Gamma

SOFT_MODE_AMPLITUDE = 0.05  # Å: largest atomic displacement along a followed mode
SOFT_MODE_ROUNDS = 3  # modes followed at most per volume, one after another


def gamma_modes(phonon) -> tuple[np.ndarray, np.ndarray]:
    """Optical frequencies (THz, ascending) and atomic displacement patterns (n_modes, n_atoms, 3;
    each scaled to a largest displacement of 1 Å) at Γ of a phonopy object with force constants.

    Γ is exact with any supercell, the cell itself included (the periodic images move together)."""
    gamma = phonon.run_qpoints([[0.0, 0.0, 0.0]], with_eigenvectors=True)
    freqs, vecs = np.asarray(gamma.frequencies[0]), np.asarray(gamma.eigenvectors[0])
    masses = np.asarray(phonon.primitive.masses)
    n = len(masses)
    patterns = vecs.T.real.reshape(3 * n, n, 3) / np.sqrt(masses)[None, :, None]  # u_i = e_i / sqrt(m_i)
    # the acoustic modes: the three whose eigenvectors overlap most with rigid translations
    translations = np.zeros((3, 3 * n))
    for axis in range(3):
        translations[axis, axis::3] = np.sqrt(masses)
    translations /= np.linalg.norm(translations, axis=1, keepdims=True)
    overlap = (np.abs(translations @ vecs) ** 2).sum(axis=0)
    optical = np.sort(np.argsort(overlap)[:-3])
    largest = np.abs(patterns[optical]).reshape(len(optical), -1).max(axis=1)
    return freqs[optical], patterns[optical] / largest[:, None, None]


def _spacegroup(atoms: Atoms, symprec: float | None) -> str:
    from ase.spacegroup.symmetrize import check_symmetry

    found = check_symmetry(atoms, symprec=symprec or 1e-3)
    return f"{found.international} ({found.number})" if found else "P1 (1)"


def follow_soft_modes(
    point: VolumePoint, atoms0: Atoms, calc, settings: QHASettings, smatrix, fid: str = "frame"
) -> tuple[VolumePoint, list[dict]]:
    """Relax one volume out of a saddle point along its imaginary optical modes at Γ.

    The fixed-volume relaxations keep the space group (``--symprec``), so a structure can sit on a
    saddle of the model: forces vanish by symmetry while an optical mode at Γ is imaginary (seen:
    monoclinic S8 with 7net-0+d3 at 0.99 and 1.05 of its lattice). While the lowest optical Γ
    frequency (from the volume's own force constants, exact at Γ) is below ``-imaginary_tol``, the
    relaxed cell is displaced along that mode (largest displacement ``SOFT_MODE_AMPLITUDE``) and
    the volume is computed again from there: the relaxation keeps the lower space group of the
    displaced cell (the mode's isotropy subgroup), and its phonons are recomputed. At most
    ``SOFT_MODE_ROUNDS`` rounds. Imaginary modes away from Γ are not followed (the volume is then
    dropped as usual). Returns the final point and one record per followed mode."""
    rounds: list[dict] = []
    current = point
    while True:
        freqs, patterns = gamma_modes(_phonon_with_force_constants(current, smatrix))
        if freqs[0] >= -settings.imaginary_tol:
            break
        if len(rounds) == SOFT_MODE_ROUNDS:
            log.warning(
                f"frame {fid}: scale {point.scale:.4f} still has an imaginary Γ mode ({freqs[0]:.2f} THz) "
                f"after {SOFT_MODE_ROUNDS} followed modes"
            )
            break
        displaced = current.atoms.copy()
        displaced.info = {}
        displaced.positions += SOFT_MODE_AMPLITUDE * patterns[0]
        followed = compute_volume(atoms0, point.scale, calc, settings, smatrix, start=displaced)
        record = {
            "scale": float(point.scale),
            "frequency": float(freqs[0]),
            "energy_change": 1e3 * (followed.energy - current.energy) / len(current.atoms),
            "spacegroup_before": _spacegroup(current.atoms, settings.symprec),
            "spacegroup_after": _spacegroup(followed.atoms, settings.symprec),
        }
        log.info(
            f"frame {fid}: scale {point.scale:.4f}: followed the imaginary Γ mode at {freqs[0]:.2f} THz, "
            f"{record['spacegroup_before']} -> {record['spacegroup_after']}, {record['energy_change']:+.4f} meV/atom"
        )
        rounds.append(record)
        current = followed
    return current, rounds


# ----------------------------------------------------------------------------- one frame


@dataclass
class FrameQHA:
    fit: QHAFit
    n_atoms: int
    scales_used: list[float]
    min_frequency: dict[float, float]  # scale -> lowest mesh frequency (THz)
    imaginary: bool
    energies: dict[float, float]
    volumes: dict[float, float]
    supercell: list[int]
    mesh: list[int]
    atoms0: Atoms
    fit_ok: np.ndarray | None = None  # (nP, nT) bool: the EOS minimum is backed by the computed volumes
    soft_modes: list[dict] | None = None  # Γ modes followed (follow_soft_modes), None when not checked


def qha_frame(
    atoms: Atoms, calc, settings: QHASettings, work_dir: str | os.PathLike | None = None, model: str | None = None
) -> FrameQHA:
    """The whole QHA pipeline of one frame (see the module docstring)."""
    from cscli.explore.relax import relax_atoms

    settings.check()
    model = model or str(getattr(calc, "cscli_model", "model"))
    fid = str(atoms.info.get("id", "frame"))
    cache = frame_cache_dir(work_dir, atoms, settings, model) if work_dir else None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    start = atoms.copy()
    start.calc = None
    start_file = cache / "a0.json" if cache is not None else None
    if start_file is not None and start_file.is_file():
        atoms0 = _atoms_from_json(json.loads(start_file.read_text()))
    else:
        atoms0 = start
        if settings.prerelax:
            atoms0 = relax_atoms(
                start,
                calc,
                fmax=settings.prerelax_fmax,
                steps=settings.steps,
                symprec=settings.symprec,
                optimizer=settings.optimizer,
            )
            if not atoms0.info.get("relax_converged"):
                log.warning(
                    f"frame {fid}: pre-relaxation not converged to fmax {settings.prerelax_fmax} eV/Å "
                    f"in {settings.steps} steps (fmax {atoms0.info.get('relax_fmax', float('nan')):.2g})"
                )
        atoms0 = _atoms_from_json(_atoms_to_json(atoms0))  # a bare copy: no info, no calculator
        if start_file is not None:
            _atomic_write(start_file, _atoms_to_json(atoms0))
    smatrix = supercell_matrix(atoms0.cell, settings.min_length)
    t_req = np.asarray(settings.temperatures, dtype=float)
    t_grid = extended_temperatures(t_req)
    done: dict[float, VolumePoint] = {}
    fitted: dict[float, VolumePoint] = {}  # = done, or the volume followed out of a Γ saddle
    soft_modes: list[dict] = []
    thermal_by_scale: dict[float, dict] = {}
    # from a0 outwards: each volume's relaxation starts from its nearest neighbour already relaxed
    for scale in sorted((float(s) for s in settings.scales), key=lambda s: (abs(s - 1.0), s)):
        path = cache / f"scale-{scale:.4f}.json" if cache is not None else None
        if path is not None and path.is_file():
            point = _point_from_json(json.loads(path.read_text()))
            log.info(f"frame {fid}: scale {scale:.4f} from {path}")
        else:
            start_at = start_structure(atoms0, scale, done) if settings.steps > 0 else None
            point = compute_volume(atoms0, scale, calc, settings, smatrix, start=start_at)
            if path is not None:
                _atomic_write(path, _point_to_json(point))
        if not point.converged:
            log.warning(
                f"frame {fid}: fixed-volume relaxation at scale {scale:.4f} not converged to fmax {settings.fmax} eV/Å"
            )
        done[scale] = point  # the next volumes start from it, with or without --follow-soft-modes
        thermal = thermal_of(point, smatrix, settings.mesh, t_grid)
        if settings.follow_soft_modes and thermal["min_frequency"] < -settings.imaginary_tol:
            soft_path = cache / f"scale-{scale:.4f}-soft.json" if cache is not None else None
            if soft_path is not None and soft_path.is_file():
                saved = json.loads(soft_path.read_text())
                followed, rounds = _point_from_json(saved["point"]), saved["rounds"]
            else:
                followed, rounds = follow_soft_modes(point, atoms0, calc, settings, smatrix, fid)
                if soft_path is not None:
                    _atomic_write(soft_path, {"point": _point_to_json(followed), "rounds": rounds})
            soft_modes.extend(rounds)
            if rounds:
                point = followed
                thermal = thermal_of(point, smatrix, settings.mesh, t_grid)
        fitted[scale] = point
        thermal_by_scale[scale] = thermal
        point.phonon = done[scale].phonon = None  # force constants of large supercells need not stay in memory
        unstable_so_far = [s for s, t in thermal_by_scale.items() if t["min_frequency"] < -settings.imaginary_tol]
        if len(settings.scales) - len(unstable_so_far) < settings.min_volumes:
            break  # the frame can no longer pass: stop computing volumes (it fails below)
    points = [fitted[s] for s in sorted(fitted)]
    thermals = [thermal_by_scale[s] for s in sorted(done)]
    min_freq = {float(p.scale): t["min_frequency"] for p, t in zip(points, thermals)}
    unstable = [s for s, f in min_freq.items() if f < -settings.imaginary_tol]
    keep = [i for i, p in enumerate(points) if float(p.scale) not in unstable]
    if unstable:
        lowest = min(min_freq.values())
        if len(keep) < settings.min_volumes:
            raise FrameError(
                f"imaginary modes at {len(unstable)} of {len(points)} volumes computed (lowest {lowest:.2f} THz, "
                f"scales {', '.join(f'{s:g}' for s in unstable)}): at most {len(settings.scales) - len(unstable)} "
                f"stable volumes of {len(settings.scales)}, the fit needs {settings.min_volumes}"
                + ("" if settings.follow_soft_modes else "; --follow-soft-modes relaxes a0 out of Γ saddle points")
            )
        log.warning(
            f"frame {fid}: imaginary modes at scales {', '.join(f'{s:g}' for s in unstable)} (lowest "
            f"{lowest:.2f} THz): those volumes are left out of the fit ({len(keep)} remain)"
        )
    volumes = np.array([points[i].atoms.get_volume() for i in keep])
    energies = np.array([points[i].energy for i in keep])
    worst, deviation = eos_outlier(volumes, energies / len(atoms0), settings.eos)
    if abs(deviation) > EOS_OUTLIER_TOL:
        raise FrameError(
            f"E(V) is not one smooth {settings.eos} curve: at scale {points[keep[worst]].scale:g} the energy lies "
            f"{1e3 * abs(deviation):.1f} meV/atom {'below' if deviation < 0 else 'above'} the curve through the other "
            "volumes (the relaxation there found another structure); relax the frame from that volume's "
            "structure (cached in the work dir) and run it again"
        )
    free_energy = np.array([thermals[i]["free_energy"] for i in keep]).T
    entropy = np.array([thermals[i]["entropy"] for i in keep]).T
    cv = np.array([thermals[i]["heat_capacity"] for i in keep]).T
    fit = fit_qha(
        volumes, energies, t_grid, free_energy, cv, entropy, settings.pressures, settings.eos, t_max=float(t_req[-1])
    )
    # an EOS fit whose minimum lies far below every computed point invented it (phonopy's fit can
    # run away when F(V) has no minimum inside the volumes): such (T, p) points are not trusted
    dip = (fit.helmholtz_volume.min(axis=2) - fit.gibbs) / len(atoms0)
    fit_ok = dip < FIT_DIP_TOL
    if not fit_ok.all():
        _, t_idx = np.nonzero(~fit_ok)
        log.warning(
            f"frame {fid}: the {settings.eos} fit is unreliable at {int((~fit_ok).sum())} (T, p) points "
            f"from T={fit.temperatures[t_idx.min()]:g} K (its minimum lies {1e3 * dip.max():.0f} meV/atom "
            "below every computed volume): qha_fit_ok marks them, hull --at refuses them; widen --scales or "
            "refine --mesh"
        )
    lo, hi = volumes.min(), volumes.max()
    outside = (fit.volume < lo) | (fit.volume > hi)
    if outside.any():
        p_idx, t_idx = np.nonzero(outside)
        log.warning(
            f"frame {fid}: the equilibrium volume leaves the sampled range [{lo:.2f}, {hi:.2f}] Å³ at "
            f"{int(outside.sum())} (T, p) points (e.g. T={fit.temperatures[t_idx[0]]:g} K, "
            f"p={fit.pressures[p_idx[0]]:g} GPa): G there is extrapolated; widen --scales"
        )
    return FrameQHA(
        fit=fit,
        n_atoms=len(atoms0),
        scales_used=[float(points[i].scale) for i in keep],
        min_frequency=min_freq,
        imaginary=bool(unstable),
        energies={float(p.scale): p.energy for p in points},
        volumes={float(p.scale): float(p.atoms.get_volume()) for p in points},
        supercell=[int(x) for x in np.diag(smatrix)],
        mesh=thermals[0]["mesh"],
        atoms0=atoms0,
        fit_ok=fit_ok,
        soft_modes=soft_modes if settings.follow_soft_modes else None,
    )


def _atomic_write(path: Path, data: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def qha_info(result: FrameQHA) -> dict:
    """The ``qha_*`` info keys of a frame (arrays indexed [T][p], per atom)."""
    fit, n = result.fit, result.n_atoms
    cell_to_atom = 1.0 / n
    return {
        "qha_temperatures": [float(t) for t in fit.temperatures],
        "qha_pressures": [float(p) for p in fit.pressures],
        "qha_gibbs_per_atom": (fit.gibbs.T * cell_to_atom).tolist(),
        "qha_volume_per_atom": (fit.volume.T * cell_to_atom).tolist(),
        "qha_bulk_modulus": fit.bulk_modulus.T.tolist(),
        "qha_thermal_expansion": fit.thermal_expansion.T.tolist(),
        "qha_heat_capacity_p": (fit.heat_capacity_p.T * cell_to_atom).tolist(),
        "qha_scales_used": result.scales_used,
        "qha_min_frequency": [result.min_frequency[s] for s in sorted(result.min_frequency)],
        "qha_scales": sorted(result.min_frequency),
        "qha_imaginary": bool(result.imaginary),
        "qha_fit_ok": (
            result.fit_ok.T.tolist()
            if result.fit_ok is not None
            else np.ones((fit.temperatures.size, fit.pressures.size), bool).tolist()
        ),
        "qha_eos": fit.eos,
        "qha_supercell": result.supercell,
        "qha_mesh": result.mesh,
        **({"qha_soft_modes": json.dumps(result.soft_modes)} if result.soft_modes is not None else {}),
    }


def qha_provenance(calc, settings: QHASettings) -> str:
    """JSON text of the settings, the model with its backend package version, and phonopy's version."""
    from importlib.metadata import PackageNotFoundError, version

    model = str(getattr(calc, "cscli_model", type(calc).__name__))
    backend = package = None
    try:
        from cscli.core.models import BACKEND_PACKAGES, resolve_model

        backend = resolve_model(model).backend
        package = BACKEND_PACKAGES.get(backend)
    except CscliError:  # a calculator not made by load_calculator (e.g. ASE's EMT in tests)
        backend = None

    def _version(name):
        try:
            return version(name) if name else None
        except PackageNotFoundError:
            return None

    return json.dumps(
        {
            **settings.as_dict(),
            "model": model,
            "model_version": getattr(calc, "cscli_model_version", None),  # with dftd3's for NAME+d3
            "backend": backend,
            "backend_version": _version(package),
            "phonopy_version": _version("phonopy"),
            "force_evaluation": (
                f"{batched_backend(calc)} (batch {settings.batch_size})"
                if batched_backend(calc) and settings.batch_size > 1
                else "sequential"
            ),
        }
    )


def plot_frame(result: FrameQHA, path, title: str = "", n_curves: int = 7) -> None:
    """PNG of F(V) at several T with the G-minimum path, V(T) and α(T) (first pressure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from phonopy.qha.eos import get_eos

    fit, n = result.fit, result.n_atoms
    eos = get_eos(fit.eos)
    fig, axs = plt.subplots(1, 3, figsize=(12, 3.8))
    picks = np.unique(np.linspace(0, fit.temperatures.size - 1, n_curves).round().astype(int))
    vv = np.linspace(fit.volumes.min(), fit.volumes.max(), 100)
    cmap = plt.get_cmap("viridis")
    from phonopy.qha.core import fit_to_eos

    for k, i in enumerate(picks):
        colour = cmap(k / max(1, len(picks) - 1))
        f = fit.helmholtz_volume[0, i]
        axs[0].plot(fit.volumes / n, f / n, "o", color=colour, ms=4)
        params = fit_to_eos(fit.volumes, f, eos)
        if params is not None:
            axs[0].plot(vv / n, eos(vv, params) / n, "-", color=colour, label=f"{fit.temperatures[i]:g} K")
    axs[0].plot(fit.volume[0] / n, fit.gibbs[0] / n, "r--", lw=1, label="G minimum")
    axs[0].set(xlabel="V (Å³/atom)", ylabel="F (eV/atom)", title=f"F(V), p = {fit.pressures[0]:g} GPa")
    axs[0].legend(fontsize=7)
    for j, p in enumerate(fit.pressures):
        axs[1].plot(fit.temperatures, fit.volume[j] / n, label=f"{p:g} GPa")
        axs[2].plot(fit.temperatures, fit.thermal_expansion[j] * 1e6, label=f"{p:g} GPa")
    axs[1].set(xlabel="T (K)", ylabel="V (Å³/atom)", title="V(T)")
    axs[2].set(xlabel="T (K)", ylabel="α (10⁻⁶/K)", title="volumetric thermal expansion")
    axs[1].legend(fontsize=7)
    if title:
        fig.suptitle(title + (" (imaginary modes at some volumes)" if result.imaginary else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- reading G(T, p) back


def gibbs_at(atoms: Atoms, temperature: float, pressure: float) -> float:
    """G(T, p) per atom (eV) of a frame from its ``qha_*`` keys, bilinear on the (T, p) grid.

    Raises FrameError when the frame has no qha keys or (T, p) lies outside its grid.
    """
    from cscli.core.frames import info_json

    fid = atoms.info.get("id", "?")
    if "qha_gibbs_per_atom" not in atoms.info:
        raise FrameError(f"frame {fid}: no qha_gibbs_per_atom; run `cscli qha` on it first")
    temps = np.asarray(info_json(atoms, "qha_temperatures"), dtype=float).ravel()
    press = np.asarray(info_json(atoms, "qha_pressures"), dtype=float).ravel()
    gibbs = np.asarray(info_json(atoms, "qha_gibbs_per_atom"), dtype=float).reshape(temps.size, press.size)
    tol = 1e-9
    if not (temps[0] - tol <= temperature <= temps[-1] + tol):
        raise FrameError(f"frame {fid}: T = {temperature:g} K is outside its qha grid ({temps[0]:g}–{temps[-1]:g} K)")
    if not (press[0] - tol <= pressure <= press[-1] + tol):
        raise FrameError(f"frame {fid}: p = {pressure:g} GPa is outside its qha grid ({press[0]:g}–{press[-1]:g} GPa)")
    if "qha_fit_ok" in atoms.info:  # the grid points around (T, p) must come from trusted fits
        ok = np.asarray(info_json(atoms, "qha_fit_ok"), dtype=bool).reshape(temps.size, press.size)

        def around(grid, x):  # the grid points an interpolation at x uses
            lo = max(0, int(np.searchsorted(grid, x, "right")) - 1)
            return slice(lo, max(lo, min(grid.size - 1, int(np.searchsorted(grid, x, "left")))) + 1)

        if not ok[around(temps, temperature), around(press, pressure)].all():
            raise FrameError(
                f"frame {fid}: G({temperature:g} K, {pressure:g} GPa) comes from an unreliable EOS fit "
                "(qha_fit_ok false: F(V) has no minimum inside the computed volumes); rerun cscli qha "
                "with wider --scales or a finer --mesh"
            )
    # interpolate in T at each pressure, then in p
    along_t = np.array([np.interp(temperature, temps, gibbs[:, j]) for j in range(press.size)])
    value = float(np.interp(pressure, press, along_t)) if press.size > 1 else float(along_t[0])
    if not math.isfinite(value):
        raise FrameError(f"frame {fid}: G({temperature:g} K, {pressure:g} GPa) is not finite")
    return value


__all__ = [
    "EOS_NAMES",
    "FrameQHA",
    "QHAFit",
    "QHASettings",
    "compute_volume",
    "evaluate_forces",
    "extended_temperatures",
    "fit_qha",
    "gibbs_at",
    "parse_grid",
    "qha_frame",
    "qha_info",
    "relax_fixed_volume",
    "scaled_cell",
    "start_structure",
    "supercell_matrix",
    "thermal_of",
]
