"""What both offline backends share: chemical systems, pair-distance bounds, cell volumes, the
settings, and quiet pyxtal calls."""

from __future__ import annotations

import contextlib
import io
import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cscli.core.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms

DEFAULT_MAX_ATOMS = 24
DEFAULT_DISTANCE_FACTOR = 0.75
DEFAULT_ANION_DISTANCE = 3.0  # Å between atoms of different anion units (S...S in thiophosphates ~3.3-4)
DEFAULT_VOLUME_FACTOR = (1.0, 1.25)


# ----------------------------------------------------------------------------- chemical systems


def parse_chemical_system(text: str) -> list[str]:
    """``"Li-P-S"`` → ``["Li", "P", "S"]`` (order kept, duplicates and unknown symbols refused)."""
    from ase.data import atomic_numbers

    parts = [p.strip() for p in str(text).replace(",", "-").split("-") if p.strip()]
    if not parts:
        raise UsageError(f"chemical system {text!r} names no elements; write it like Li-P-S")
    for p in parts:
        if p not in atomic_numbers or p == "X":
            raise UsageError(f"chemical system {text!r}: {p!r} is not an element symbol")
    if len(set(parts)) != len(parts):
        raise UsageError(f"chemical system {text!r} repeats an element")
    return parts


def chemical_system_key(elements: Iterable[str]) -> str:
    """Canonical ``A-B-C`` key (alphabetical, as MatterGen and pymatgen write chemical systems)."""
    return "-".join(sorted(set(elements)))


def in_chemical_system(atoms: Atoms, elements: Iterable[str]) -> bool:
    """True when every element of ``atoms`` belongs to the chemical system (subsystems included)."""
    return set(atoms.get_chemical_symbols()) <= set(elements)


# ----------------------------------------------------------------------------- distances and volumes


def distance_bounds(elements: Sequence[str], factor: float = DEFAULT_DISTANCE_FACTOR) -> dict[tuple[str, str], float]:
    """Minimum distance of each element pair: ``factor * (r_cov,i + r_cov,j)`` (Cordero radii, ASE)."""
    from ase.data import atomic_numbers, covalent_radii

    out = {}
    for a in elements:
        for b in elements:
            out[(a, b)] = factor * float(covalent_radii[atomic_numbers[a]] + covalent_radii[atomic_numbers[b]])
    return out


def distance_violations(
    atoms: Atoms, bounds: dict[tuple[str, str], float], group=None, group_bound: float = 0.0, unwrapped=None
):
    """Pairs closer than their bound: list of (i, j, d, bound). ``group`` (per-atom labels, -1 = none)
    raises the bound to ``group_bound`` between atoms of different groups (anion units). With the
    units' ``unwrapped`` Cartesian positions, a unit's periodic image counts as a different unit."""
    import numpy as np
    from ase.neighborlist import neighbor_list

    cutoff = max(max(bounds.values()), group_bound) + 0.01
    i, j, d, D = neighbor_list("ijdD", atoms, cutoff)
    symbols = atoms.get_chemical_symbols()
    bad = []
    for a, b, dist, vec in zip(i, j, d, D):
        if a > b:
            continue
        bound = bounds[(symbols[a], symbols[b])]
        if group is not None and group[a] >= 0 and group[b] >= 0:
            same_unit = group[a] == group[b] and a != b
            if same_unit and unwrapped is not None:
                same_unit = np.allclose(vec, unwrapped[b] - unwrapped[a], atol=1e-4)
            if not same_unit:
                bound = max(bound, group_bound)
        if dist < bound - 1e-6:
            bad.append((int(a), int(b), float(dist), float(bound)))
    return bad


def element_volumes(elements: Sequence[str], references: Sequence[Atoms] | None = None) -> dict[str, float]:
    """Per-element volume (Å³/atom) for the cell-volume estimate ``V = sum_i n_i v_i``.

    With reference phases of the system (the shipped Li-P-S phases, or your own), ``v_i`` is a
    non-negative least-squares fit of their volumes, so ionic compression (small Li+ in sulfides) is
    in the estimate; each ``v_i`` is floored at the covalent-sphere volume ``4/3 pi r_cov^3``.
    Without references, the elemental molar volume (pymatgen) is used.
    """
    import numpy as np
    from ase.data import atomic_numbers, covalent_radii
    from pymatgen.core import Element

    floor = {e: 4.0 / 3.0 * math.pi * float(covalent_radii[atomic_numbers[e]]) ** 3 for e in elements}
    molar = {}
    for e in elements:
        mv = Element(e).molar_volume
        molar[e] = float(mv) * 1e24 / 6.02214076e23 if mv else floor[e] * 2.0
    refs = [a for a in (references or []) if set(a.get_chemical_symbols()) <= set(elements) and a.pbc.all()]
    if len(refs) >= len(elements):
        from scipy.optimize import nnls

        A = np.array([[a.get_chemical_symbols().count(e) for e in elements] for a in refs], dtype=float)
        b = np.array([abs(a.get_volume()) for a in refs])
        # weight each phase by 1/N so large cells do not dominate
        w = 1.0 / A.sum(axis=1)
        coef, _ = nnls(A * w[:, None], b * w)
        present = A.sum(axis=0) > 0
        return {e: float(max(c, floor[e])) if present[k] else molar[e] for k, (e, c) in enumerate(zip(elements, coef))}
    return molar


def default_references(elements: Sequence[str]) -> list[Atoms]:
    """The shipped reference phases when the system is one cscli ships (Li-P-S), else []."""
    from cscli.core.datafiles import reference_phases_path
    from cscli.core.frames import read_frames

    try:
        path = reference_phases_path("-".join(elements))
    except UsageError:
        return []
    return read_frames(str(path))


def formula(counts: dict[str, int]) -> str:
    return "".join(f"{e}{n if n != 1 else ''}" for e, n in counts.items() if n)


_PYXTAL_LOCK = threading.RLock()


@contextlib.contextmanager
def _pyxtal_call():
    """Around every pyxtal call: its progress prints go elsewhere (stdout carries cscli's frames),
    and its default tolerance matrix is built once. pyxtal's Wyckoff merge calls ``check_images``
    without a matrix and with an explicit ``tol``, so each call built (and ignored) a fresh
    ``Tol_matrix(prototype="atomic")``: 30 % of the motif backend's CPU time (42 -> 29 s for 4
    frames, the same frames; the matrix is only read there)."""
    import functools
    import warnings

    import pyxtal.operations

    buf = io.StringIO()
    # both patches are process-wide (a module global, sys.stdout): one thread at a time
    with _PYXTAL_LOCK:
        default_tm = pyxtal.operations.Tol_matrix
        pyxtal.operations.Tol_matrix = functools.lru_cache(maxsize=None)(default_tm)
        try:
            with contextlib.redirect_stdout(buf), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield buf
        finally:
            pyxtal.operations.Tol_matrix = default_tm


def _tol_matrix(bounds: dict[tuple[str, str], float], extra: Iterable[tuple[str, str, float]] = ()):
    from pyxtal.tolerance import Tol_matrix

    tuples = [(a, b, d) for (a, b), d in bounds.items() if a <= b]
    return Tol_matrix(*tuples, *extra, prototype="atomic")


# ----------------------------------------------------------------------------- settings


@dataclass
class OfflineSettings:
    elements: list[str]
    max_atoms: int = DEFAULT_MAX_ATOMS
    charge_balance: bool = False
    allow_subsystems: bool = False
    distance_factor: float = DEFAULT_DISTANCE_FACTOR
    volume_factor: tuple[float, float] = DEFAULT_VOLUME_FACTOR
    spacegroups: list[int] = field(default_factory=lambda: list(range(2, 231)))
    volumes: dict[str, float] | None = None  # per-element Å³; None: element_volumes(elements, refs)
    references: list | None = None
    anion_distance: float = DEFAULT_ANION_DISTANCE
    motifs: list | None = None  # list[Motif]; None: built-in PS4 + lone S
    max_tries: int = 60

    def __post_init__(self):
        if self.max_atoms < 1:
            raise UsageError("--max-atoms must be at least 1")
        if not 0.3 <= self.distance_factor <= 1.5:
            raise UsageError("--distance-factor must lie in 0.3..1.5 (fraction of the covalent-radius sum)")
        lo, hi = self.volume_factor
        if not 0.3 <= lo <= hi <= 5:
            raise UsageError("--volume-factor must be lo,hi with 0.3 <= lo <= hi <= 5")
        if self.volumes is None:
            refs = self.references if self.references is not None else default_references(self.elements)
            self.volumes = element_volumes(self.elements, refs)
        self.bounds = distance_bounds(self.elements, self.distance_factor)
