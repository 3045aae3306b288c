"""Perturbed copies of a frame: Gaussian atomic displacements and a random lattice strain.

The seed paper's recipe: displacement standard deviation σ drawn uniformly from [0.08, 0.15]·a with
a = (V/N)^(1/3) (the mean interatomic spacing), and a lattice strain of 3–5 %. The strain is a
random symmetric tensor whose largest principal value (in magnitude) is drawn from the strain range,
applied as cell' = cell·(I + ε) with atoms following the cell (scaled positions kept), before the
displacements. Copies with two atoms closer than ``min_distance`` are redrawn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cscli.core.errors import FrameError
from cscli.core.frames import min_interatomic_distance

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms


def mean_spacing(atoms: Atoms) -> float:
    """a = (V/N)^(1/3) in Å."""
    return float((atoms.get_volume() / len(atoms)) ** (1.0 / 3.0))


def random_strain(rng: np.random.Generator, magnitude: float) -> np.ndarray:
    """Symmetric 3x3 strain with random principal axes and largest |principal strain| = magnitude."""
    m = rng.normal(size=(3, 3))
    sym = 0.5 * (m + m.T)
    largest = np.abs(np.linalg.eigvalsh(sym)).max()
    return sym * (magnitude / largest)


def perturb_once(
    atoms: Atoms,
    rng: np.random.Generator,
    sigma_rel: tuple[float, float] = (0.08, 0.15),
    strain: tuple[float, float] = (0.03, 0.05),
    min_distance: float = 0.7,
    max_tries: int = 50,
) -> Atoms:
    """One perturbed copy (info keys perturb_sigma, perturb_sigma_rel, perturb_strain)."""
    periodic = atoms.pbc.all()
    a = mean_spacing(atoms) if periodic else 2.0
    for _ in range(max_tries):
        new = atoms.copy()
        eps_mag = rng.uniform(*strain) if periodic else 0.0
        if periodic and eps_mag > 0:
            eps = random_strain(rng, eps_mag)
            new.set_cell(new.cell.array @ (np.eye(3) + eps), scale_atoms=True)
        s_rel = rng.uniform(*sigma_rel)
        sigma = s_rel * a
        new.positions = new.positions + rng.normal(scale=sigma, size=new.positions.shape)
        if min_interatomic_distance(new) >= min_distance:
            for key in ("energy", "energy_per_atom", "stress", "free_energy"):
                new.info.pop(key, None)
            new.arrays.pop("forces", None)
            new.info.update(perturb_sigma=float(sigma), perturb_sigma_rel=float(s_rel), perturb_strain=float(eps_mag))
            return new
    raise FrameError(
        f"no perturbed copy kept atoms {min_distance} Å apart in {max_tries} tries; lower --sigma or --min-distance"
    )


def copy_ids(parent_id: str, n: int) -> list[str]:
    return [f"{parent_id}.p{k}" for k in range(n)]


def perturb_frame(
    atoms: Atoms,
    n: int,
    seed: int | None = None,
    sigma_rel: tuple[float, float] = (0.08, 0.15),
    strain: tuple[float, float] = (0.03, 0.05),
    min_distance: float = 0.7,
) -> list[Atoms]:
    """``n`` perturbed copies with ids ``<id>.p<k>`` and ``parent_id``.

    Reproducible: the random stream of each copy depends only on (seed, parent id, k), so shards,
    resumed runs and reordered inputs give the same copies. Without a seed one is drawn; either
    way it is recorded in ``info['perturb_seed']``.
    """
    parent = str(atoms.info["id"])
    if seed is None:  # drawn, and recorded in perturb_seed like a given one
        seed = int(np.random.SeedSequence().entropy % 2**31)
    key = np.frombuffer(parent.encode("utf-8"), dtype=np.uint8).astype(np.uint32).tolist()
    out = []
    for k, cid in enumerate(copy_ids(parent, n)):
        rng = np.random.default_rng([int(seed), k, *key])
        new = perturb_once(atoms, rng, sigma_rel, strain, min_distance)
        new.info["id"] = cid
        new.info["parent_id"] = parent
        new.info["perturb_seed"] = int(seed)
        out.append(new)
    return out
