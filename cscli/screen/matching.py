"""Fast structure deduplication whose decisions are exactly pymatgen ``StructureMatcher.fit``'s.

Two frames match when ``StructureMatcher(**options).fit(a, b)`` says so, nothing else. What is
fast is *which pairs are ever handed to fit*:

1. every structure is reduced once (Niggli cell, then primitive cell: the very function ``fit``
   calls on each pair), and pairs are then fitted with ``skip_structure_reduction=True``, so the
   structures that reach pymatgen's ``_match`` are the ones ``fit`` would build itself;
2. structures are bucketed by keys that ``fit`` itself requires to be equal: the comparator's
   composition hash (the reduced formula for the default ``SpeciesComparator``) and, without
   ``attempt_supercell``, the number of sites of the reduced cell (``_strict_match`` returns no
   match unless its site-mask is square);
3. inside a bucket, a pair is fitted only when a lattice inequality holds that every match
   satisfies (successive minima of one lattice against the basis lengths of the other, see
   :func:`may_match` and ``docs/sun-filter.md`` for the proof), and when a relaxed restatement
   of pymatgen's own lattice search finds a candidate lattice (:func:`lattice_gate`);
4. buckets (uniqueness) and frames (novelty) are spread over processes.

Bucketing therefore only ever removes pairs for which ``fit`` is provably False; the test suite
and ``benchmarks/sun_filter.py`` check this against exhaustive ``fit`` on challenge sets.

Uniqueness follows MatterGen's evaluator (and pymatgen's ``group_structures``): a frame is unique
when ``fit(frame, rep)`` is False for every earlier *unique* frame ``rep``; otherwise it is a
duplicate of the first such ``rep``. Novelty: ``fit(frame, ref)`` is False for every reference.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms
    from pymatgen.core import Structure

# relative slack on the lattice inequality: far above float rounding (1e-15), far below any
# physically meaningful difference; it may only let more pairs through to fit
_EPS = 1e-6
# lattice-point enumeration larger than this (pathological cells) → no invariant, always fitted
_MAX_GRID = 200_000


@dataclass(frozen=True)
class MatchOptions:
    """Options of pymatgen ``StructureMatcher`` (defaults = pymatgen's)."""

    ltol: float = 0.2
    stol: float = 0.3
    angle_tol: float = 5.0
    primitive_cell: bool = True
    scale: bool = True
    attempt_supercell: bool = False

    def matcher(self):
        from pymatgen.analysis.structure_matcher import StructureMatcher

        return StructureMatcher(
            ltol=self.ltol,
            stol=self.stol,
            angle_tol=self.angle_tol,
            primitive_cell=self.primitive_cell,
            scale=self.scale,
            attempt_supercell=self.attempt_supercell,
        )

    def as_dict(self) -> dict:
        return {
            "ltol": self.ltol,
            "stol": self.stol,
            "angle_tol": self.angle_tol,
            "primitive_cell": self.primitive_cell,
            "scale": self.scale,
            "attempt_supercell": self.attempt_supercell,
        }


@dataclass
class Prepared:
    """One structure reduced as ``fit`` reduces it, plus its bucket key and lattice invariants."""

    reduced: Structure
    key: tuple
    lam: tuple[float, float, float] | None  # successive minima (volume-normalised when scale)
    tau: tuple[float, float, float] | None  # sorted basis lengths of the reduced cell (same units)
    matrix: object = None  # reduced lattice matrix (same units), rows = basis vectors
    angles: tuple[float, float, float] | None = None  # pymatgen Lattice.angles of the reduced cell
    _points: tuple | None = field(default=None, repr=False, compare=False)  # cached lattice points


def atoms_to_structure(atoms: Atoms) -> Structure:
    from pymatgen.core import Lattice, Structure

    from cscli.core.errors import FrameError

    if not atoms.pbc.all():
        raise FrameError(f"frame {atoms.info.get('id', '?')}: structure matching needs a periodic cell (pbc T T T)")
    return Structure(
        Lattice(atoms.cell.array), atoms.get_chemical_symbols(), atoms.positions, coords_are_cartesian=True
    )


def successive_minima(matrix) -> tuple[float, float, float] | None:
    """λ1 ≤ λ2 ≤ λ3 of the lattice whose basis vectors are the rows of ``matrix``.

    Enumerates every lattice point up to the longest basis vector (which bounds λ3) and picks
    the shortest vector, the shortest one independent of it and the shortest one outside their
    span; independence is decided on the exact integer coordinates. None when the enumeration
    would be too large (then no pair is ever pruned with this structure).
    """
    import numpy as np

    m = np.asarray(matrix, dtype=float)
    radius = float(np.linalg.norm(m, axis=1).max()) * (1 + 1e-9)
    inv = np.linalg.inv(m)
    bounds = np.ceil(radius * np.linalg.norm(inv, axis=0) + 1e-9).astype(int)
    if np.prod(2 * bounds + 1) > _MAX_GRID:
        return None
    axes = [np.arange(-b, b + 1) for b in bounds]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    d = np.linalg.norm(grid @ m, axis=1)
    keep = (d > 0) & (d <= radius)
    grid, d = grid[keep], d[keep]
    order = np.argsort(d, kind="stable")
    picked: list = []
    lam: list[float] = []
    for i in order:
        n = grid[i]
        if not picked:
            ok = True
        elif len(picked) == 1:
            ok = bool(np.any(np.cross(picked[0], n)))
        else:
            ok = int(np.dot(np.cross(picked[0], picked[1]), n)) != 0
        if ok:
            picked.append(n)
            lam.append(float(d[i]))
            if len(lam) == 3:
                return tuple(lam)  # type: ignore[return-value]
    return None  # unreachable for a full-rank basis


def prepare(structure: Structure, options: MatchOptions, matcher=None) -> Prepared:
    """Reduce a structure exactly as ``StructureMatcher.fit`` does and compute its invariants."""
    import numpy as np

    matcher = matcher or options.matcher()
    processed = matcher._process_species([structure])[0]
    chash = matcher._comparator.get_hash(processed.composition)
    reduced = matcher._get_reduced_structure(processed, options.primitive_cell, niggli=True)
    if options.attempt_supercell:
        return Prepared(reduced, (chash,), None, None)
    matrix = reduced.lattice.matrix
    lam = successive_minima(matrix)
    tau = tuple(sorted(float(x) for x in np.linalg.norm(matrix, axis=1)))
    unit = abs(float(np.linalg.det(matrix))) ** (1 / 3) if options.scale else 1.0
    if lam is not None:
        lam = tuple(x / unit for x in lam)
        tau = tuple(x / unit for x in tau)
    return Prepared(
        reduced,
        (chash, len(reduced)),
        lam,
        tau if lam is not None else None,
        matrix=np.array(matrix) / unit,
        angles=tuple(float(x) for x in reduced.lattice.angles),
    )


def may_match(a: Prepared, b: Prepared, options: MatchOptions) -> bool:
    """False only when ``fit(a, b)`` is provably False (a: struct1, searched; b: struct2, target).

    Without attempt_supercell, a match needs a basis b1, b2, b3 of a's (scaled) lattice with
    |b_i| / |t_i| in (1/(1+ltol), 1+ltol), t = b's reduced basis (pymatgen's
    ``Lattice.find_all_mappings`` with a unimodular scale matrix). Hence, with τ the sorted
    lengths of t and λ the successive minima of a's lattice:

        λ_k < (1+ltol) τ_k                                    (k = 1, 2, 3)
        λ_k = λ1λ2λ3 / Π_{j≠k} λ_j > λ1λ2λ3 τ_k / ((1+ltol)² τ1τ2τ3)

    (both lattices have the same volume when scale=True, so the volume-normalised values are
    compared; with scale=False the raw lengths are). See docs/sun-filter.md.
    """
    if a.key != b.key:
        return False
    if a.lam is None or b.tau is None or options.attempt_supercell:
        return True
    c = 1.0 + options.ltol
    prod_lam = a.lam[0] * a.lam[1] * a.lam[2]
    prod_tau = b.tau[0] * b.tau[1] * b.tau[2]
    for k in range(3):
        if a.lam[k] >= c * b.tau[k] * (1 + _EPS):
            return False
        if a.lam[k] <= prod_lam * b.tau[k] / (c * c * prod_tau) * (1 - _EPS):
            return False
    return lattice_gate(a, b, options)


def _lattice_points(a: Prepared, radius: float):
    """Integer coordinates, Cartesian vectors and lengths of a's lattice points with 0 < |v| ≤ radius."""
    import numpy as np

    if a._points is not None and a._points[0] >= radius:
        _, grid, vec, d = a._points
    else:
        m = a.matrix
        bounds = np.ceil(radius * np.linalg.norm(np.linalg.inv(m), axis=0) + 1e-9).astype(int)
        if np.prod(2 * bounds + 1) > _MAX_GRID:
            return None
        axes = [np.arange(-b, b + 1) for b in bounds]
        grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
        vec = grid @ m
        d = np.linalg.norm(vec, axis=1)
        keep = (d > 0) & (d <= radius)
        grid, vec, d = grid[keep], vec[keep], d[keep]
        a._points = (radius, grid, vec, d)
    keep = d <= radius
    return grid[keep], vec[keep], d[keep]


_ANGLE_SLACK = 1e-4  # degrees, above arccos rounding near 0/180 (~1e-6 deg)


def lattice_gate(a: Prepared, b: Prepared, options: MatchOptions) -> bool:
    """False only when pymatgen's ``Lattice.find_all_mappings`` (as used by ``fit(a, b)``) can
    yield no lattice of a with unimodular scale matrix; a relaxed re-statement of its tests:
    lattice vectors of a with lengths within (1/(1+ltol), 1+ltol) of b's basis lengths, pairwise
    angles within angle_tol of b's angles, integer determinant ±1 (slack 1e-6 relative on
    lengths, 1e-4° on angles, so rounding can only let more pairs through)."""
    import numpy as np

    if a.matrix is None or b.matrix is None or options.attempt_supercell:
        return True
    c = 1.0 + options.ltol
    lengths = np.linalg.norm(b.matrix, axis=1)
    pts = _lattice_points(a, float(lengths.max()) * c * (1 + _EPS))
    if pts is None:
        return True
    grid, vec, d = pts
    sel = [(d < ln * c * (1 + _EPS)) & (d > ln / c * (1 - _EPS)) for ln in lengths]
    if not all(s.any() for s in sel):
        return False
    n = [grid[s] for s in sel]
    u = [vec[s] / d[s][:, None] for s in sel]
    alpha, beta, gamma = b.angles
    tol = options.angle_tol + _ANGLE_SLACK

    def ok(u1, u2, target):
        ang = np.degrees(np.arccos(np.clip(u1 @ u2.T, -1.0, 1.0)))
        return np.abs(ang - target) <= tol

    ok_gamma, ok_beta, ok_alpha = ok(u[0], u[1], gamma), ok(u[0], u[2], beta), ok(u[1], u[2], alpha)
    for i, j in np.argwhere(ok_gamma):
        ks = np.flatnonzero(ok_beta[i] & ok_alpha[j])
        if len(ks):
            det = np.cross(n[0][i], n[1][j]) @ n[2][ks].T
            if np.any(np.abs(det) == 1):
                return True
    return False


def _window_mask(a: Prepared, lam_tau_b, options: MatchOptions):
    """Vectorised :func:`may_match` of one ``a`` against rows (tau1, tau2, tau3, ok) of many b."""
    import numpy as np

    n = len(lam_tau_b)
    if a.lam is None or options.attempt_supercell:
        return np.ones(n, dtype=bool)
    tau = lam_tau_b[:, :3]
    has = lam_tau_b[:, 3] > 0
    lam = np.asarray(a.lam)
    c = 1.0 + options.ltol
    upper = np.all(lam[None, :] < c * tau * (1 + _EPS), axis=1)
    lower = np.all(lam[None, :] > np.prod(lam) * tau / (c * c * np.prod(tau, axis=1))[:, None] * (1 - _EPS), axis=1)
    return ~has | (upper & lower)


# ----------------------------------------------------------------------------- parallel drivers

_STATE: dict = {}


def default_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover
        return max(1, os.cpu_count() or 1)


def _pool(jobs: int):
    import multiprocessing

    return multiprocessing.get_context("fork").Pool(jobs)


def _matcher():
    """The StructureMatcher for ``_STATE['options']``, built once per options (per worker process)."""
    options = _STATE["options"]
    if _STATE.get("matcher_for") is not options:
        _STATE["matcher"], _STATE["matcher_for"] = options.matcher(), options
    return _STATE["matcher"]


def _prepare_one(structure):
    return prepare(structure, _STATE["options"], _matcher())


def prepare_many(structures: list, options: MatchOptions, jobs: int = 1) -> list[Prepared]:
    _STATE.clear()
    _STATE["options"] = options
    if jobs <= 1 or len(structures) < 8:
        return [_prepare_one(s) for s in structures]
    with _pool(jobs) as pool:
        return pool.map(_prepare_one, structures, chunksize=max(1, len(structures) // (jobs * 8)))


@dataclass
class MatchStats:
    pairs_in_formula_groups: int = 0  # what grouped pairwise matching would fit
    pairs_in_buckets: int = 0
    pairs_fitted: int = 0
    matches: int = 0


def _tau_rows(items: list[Prepared]):
    import numpy as np

    rows = np.zeros((len(items), 4))
    for i, p in enumerate(items):
        if p.tau is not None:
            rows[i, :3] = p.tau
            rows[i, 3] = 1.0
    return rows


def _unique_bucket(indices: list[int]):
    """Greedy uniqueness inside one bucket: (index → duplicate-of index or None), fits, pairs."""
    import numpy as np

    prepared: list[Prepared] = _STATE["prepared"]
    options: MatchOptions = _STATE["options"]
    matcher = _matcher()
    reps: list[int] = []
    rows = np.zeros((0, 4))
    result = {}
    fitted = 0
    for i in indices:
        a = prepared[i]
        dup = None
        if reps:
            r, n_fit = _first_fit(a, _window_mask(a, rows, options), lambda r: prepared[reps[r]], matcher, options)
            fitted += n_fit
            dup = None if r is None else reps[r]
        result[i] = dup
        if dup is None:
            reps.append(i)
            rows = np.vstack([rows, _tau_rows([a])])
    return result, fitted


def _first_fit(a: Prepared, mask, candidate, matcher, options: MatchOptions) -> tuple[int | None, int]:
    """Row ``r`` of the first candidate inside ``mask`` that passes the lattice gate and that
    StructureMatcher fits to ``a`` (None when none does), and the number of ``fit`` calls made."""
    import numpy as np

    fitted = 0
    for r in np.flatnonzero(mask):
        b = candidate(r)
        if not lattice_gate(a, b, options):
            continue
        fitted += 1
        if matcher.fit(a.reduced, b.reduced, skip_structure_reduction=True):
            return int(r), fitted
    return None, fitted


def _novel_chunk(indices: list[int]):
    prepared: list[Prepared] = _STATE["prepared"]
    refs_by_key: dict = _STATE["refs_by_key"]
    options: MatchOptions = _STATE["options"]
    matcher = _matcher()
    result = {}
    fitted = 0
    for i in indices:
        a = prepared[i]
        hit = None
        entry = refs_by_key.get(a.key)
        if entry is not None:
            ref_idx, rows = entry
            r, n_fit = _first_fit(
                a,
                _window_mask(a, rows, options),
                lambda r: _STATE["refs"][ref_idx[r]],  # noqa: B023 (called now)
                matcher,
                options,
            )
            fitted += n_fit
            hit = None if r is None else ref_idx[r]
        result[i] = hit
    return result, fitted


def _gather(func, tasks: list, jobs: int, n: int, stats: MatchStats) -> list[int | None]:
    """Run ``func`` over ``tasks`` and merge its (index -> match or None) results; counts into ``stats``."""
    found: list[int | None] = [None] * n
    for result, fitted in _run(func, tasks, jobs):
        stats.pairs_fitted += fitted
        for i, match in result.items():
            found[i] = match
    stats.matches = sum(m is not None for m in found)
    return found


def _run(func, tasks: list, jobs: int):
    if jobs <= 1 or len(tasks) <= 1:
        return [func(t) for t in tasks]
    with _pool(jobs) as pool:
        return list(pool.imap_unordered(func, tasks, chunksize=1))


def find_duplicates(
    prepared: list[Prepared], options: MatchOptions, jobs: int = 1
) -> tuple[list[int | None], MatchStats]:
    """For each structure, the index of the earlier unique structure it duplicates (None: unique)."""
    from collections import defaultdict

    buckets: dict = defaultdict(list)
    formula: dict = defaultdict(int)
    for i, p in enumerate(prepared):
        buckets[p.key].append(i)
        formula[p.key[0]] += 1
    stats = MatchStats()
    stats.pairs_in_buckets = sum(len(v) * (len(v) - 1) // 2 for v in buckets.values())
    stats.pairs_in_formula_groups = sum(n * (n - 1) // 2 for n in formula.values())
    _STATE.update(prepared=prepared, options=options)
    tasks = sorted(buckets.values(), key=len, reverse=True)  # largest first: better load balance
    return _gather(_unique_bucket, tasks, jobs, len(prepared), stats), stats


def find_in_references(
    prepared: list[Prepared], refs: list[Prepared], options: MatchOptions, jobs: int = 1
) -> tuple[list[int | None], MatchStats]:
    """For each structure, the index of the first reference it matches (None: novel)."""
    from collections import defaultdict

    import numpy as np

    by_key: dict = defaultdict(list)
    for j, r in enumerate(refs):
        by_key[r.key].append(j)
    refs_by_key = {k: (np.asarray(v), _tau_rows([refs[j] for j in v])) for k, v in by_key.items()}
    stats = MatchStats()
    ref_formula: dict = defaultdict(int)
    for r in refs:
        ref_formula[r.key[0]] += 1
    stats.pairs_in_formula_groups = sum(ref_formula.get(p.key[0], 0) for p in prepared)
    stats.pairs_in_buckets = sum(len(by_key.get(p.key, ())) for p in prepared)
    _STATE.update(prepared=prepared, refs=refs, refs_by_key=refs_by_key, options=options)
    candidates = [i for i, p in enumerate(prepared) if p.key in refs_by_key]
    n_tasks = max(1, min(len(candidates), jobs * 16))
    tasks = [candidates[t::n_tasks] for t in range(n_tasks)] if candidates else []
    return _gather(_novel_chunk, tasks, jobs, len(prepared), stats), stats


__all__ = [
    "MatchOptions",
    "MatchStats",
    "Prepared",
    "atoms_to_structure",
    "default_jobs",
    "find_duplicates",
    "find_in_references",
    "lattice_gate",
    "may_match",
    "prepare",
    "prepare_many",
    "successive_minima",
]
