"""Structure relaxation with an ASE calculator (any cscli model)."""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

from cscli.core.errors import FrameError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms

OPTIMIZERS = ("FIRE", "BFGS", "LBFGS")


def _optimizer_class(name: str):
    import ase.optimize

    key = name.upper()
    if key not in OPTIMIZERS:
        raise UsageError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")
    return getattr(ase.optimize, key)


def store_results(atoms: Atoms, calc) -> Atoms:
    """Evaluate ``calc`` on ``atoms`` and write energy/forces/stress into info/arrays, and the model
    that made them (``model``, ``model_version``) when ``calc`` came from ``load_calculator``."""
    import numpy as np

    from cscli.core.models import store_model

    atoms.calc = calc
    try:
        energy = float(atoms.get_potential_energy())
        forces = np.array(atoms.get_forces(), dtype=float)
        stress = np.array(atoms.get_stress(voigt=True), dtype=float) if atoms.pbc.all() else None
    finally:
        atoms.calc = None
    if not math.isfinite(energy) or not np.all(np.isfinite(forces)):
        raise FrameError("model returned a non-finite energy or forces")
    atoms.info["energy"] = energy
    atoms.info["energy_per_atom"] = energy / len(atoms)
    atoms.arrays["forces"] = forces
    if stress is not None:
        atoms.info["stress"] = stress
    store_model(atoms, calc)
    return atoms


def relax_atoms(
    atoms: Atoms,
    calc,
    fmax: float = 0.05,
    steps: int = 500,
    optimizer: str = "FIRE",
    fix_cell: bool = False,
    pressure: float = 0.0,
    trajectory: str | None = None,
    constant_volume: bool = False,
    symprec: float | None = None,
) -> Atoms:
    """Relax positions (and the cell, with ASE's FrechetCellFilter) and return a new frame.

    ``pressure`` is in GPa (hydrostatic, applied through the cell filter); ``constant_volume``
    relaxes the cell shape at fixed volume (``cscli qha``). ``symprec`` (Å) keeps the space group
    the structure has at that tolerance: ASE's ``refine_symmetry`` first, then the ``FixSymmetry``
    constraint on every step (numerical noise otherwise lowers the symmetry of soft structures,
    and a P1 cell needs twice the phonon displacements of its P-1 parent). The result carries
    energy, energy_per_atom, forces, stress, relax_fmax, relax_steps, relax_converged, model.
    """
    import numpy as np
    from ase.filters import FrechetCellFilter
    from ase.units import GPa

    work = atoms.copy()
    work.calc = calc
    symmetry_constraint = None
    if symprec:
        from ase.constraints import FixSymmetry
        from ase.spacegroup.symmetrize import refine_symmetry

        refine_symmetry(work, symprec=symprec)
        symmetry_constraint = FixSymmetry(work, symprec=symprec)
        work.set_constraint([*work.constraints, symmetry_constraint])
    target = (
        work
        if fix_cell or not work.pbc.all()
        else FrechetCellFilter(work, scalar_pressure=pressure * GPa, constant_volume=constant_volume)
    )
    opt = _optimizer_class(optimizer)(target, logfile=None, trajectory=trajectory)
    try:
        with warnings.catch_warnings():
            # FrechetCellFilter's matrix logarithm warns at 1e-13 relative error every step
            warnings.filterwarnings("ignore", message="logm result may be inaccurate")
            converged = bool(opt.run(fmax=fmax, steps=steps))
    except (FloatingPointError, ValueError, RuntimeError) as exc:
        raise FrameError(f"relaxation failed: {exc}") from None
    n_steps = int(opt.get_number_of_steps())
    final_fmax = float(np.sqrt((target.get_forces() ** 2).sum(axis=1).max()))
    result = work.copy()
    if symmetry_constraint is not None:  # it belongs to this relaxation, not to the frame returned
        result.set_constraint(result.constraints[:-1])  # (copied with the atoms; appended last)
    result.info = dict(atoms.info)
    store_results(result, calc)
    if not math.isfinite(final_fmax):
        raise FrameError("relaxation diverged (non-finite forces)")
    if result.get_volume() > 20 * atoms.get_volume() if atoms.pbc.all() else False:
        raise FrameError("relaxation blew up (volume grew more than 20x)")
    result.info.update(
        relax_converged=converged,
        relax_steps=n_steps,
        relax_fmax=final_fmax,
        relax_optimizer=optimizer.upper(),
        relax_cell_filter="fixed" if target is work else "frechet",
    )
    return result
