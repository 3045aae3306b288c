"""The fast matcher against exhaustive pymatgen StructureMatcher (zero disagreements allowed)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_sun_filter", REPO / "benchmarks" / "sun_filter.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return _bench()


@pytest.fixture(scope="module")
def challenge(bench):
    """Copies of real phases strained up to ±12 % per component (both sides of ltol), rattled up to 0.3 Å,
    permuted, supercelled and rotated, plus random Li-P-S structures at the same formulas."""
    rng = np.random.default_rng(7)
    phases = [p for p in bench.load_phases() if len(p[1]) <= 24]
    batch = bench.make_batch(150, rng, phases, copy_fraction=0.8, strain_max=0.12, sigma_max=0.3, max_atoms=48)
    return [s for _, s in batch]


@pytest.fixture(scope="module")
def prepared(challenge):
    from cscli.screen.matching import MatchOptions, prepare_many

    return prepare_many(challenge, MatchOptions(), jobs=1)


def test_successive_minima_known_lattices():
    from pymatgen.core import Lattice

    from cscli.screen.matching import successive_minima

    assert successive_minima(Lattice.cubic(3.0).matrix) == pytest.approx((3.0, 3.0, 3.0))
    fcc = Lattice([[0, 2, 2], [2, 0, 2], [2, 2, 0]])  # a = 4: nearest lattice points at a/√2
    assert successive_minima(fcc.matrix) == pytest.approx((4 / 2**0.5,) * 3)
    # a badly skewed basis of the simple tetragonal lattice 2 x 2 x 5: minima (2, 2, 5)
    skew = np.array([[2.0, 0, 0], [6.0, 2.0, 0], [4.0, 2.0, 5.0]])
    assert successive_minima(skew) == pytest.approx((2.0, 2.0, 5.0))


def test_successive_minima_against_niggli():
    """In 3D the Niggli (a Buerger) cell's edges are the successive minima: pymatgen's reduction is
    an independent reference for the enumeration, also on badly skewed bases."""
    from pymatgen.core import Lattice

    from cscli.screen.matching import successive_minima

    rng = np.random.default_rng(3)
    checked = 0
    for _ in range(40):
        m = rng.normal(size=(3, 3)) * rng.uniform(1, 6, size=(3, 1))
        if abs(np.linalg.det(m)) < 2:
            continue
        expected = sorted(Lattice(m).get_niggli_reduced_lattice().abc)
        got = successive_minima(m)
        if got is None:  # enumeration too large for this pathological basis: no pruning, allowed
            continue
        assert got == pytest.approx(expected, rel=1e-6)
        checked += 1
    assert checked >= 20


def test_reduce_once_equals_fit(challenge):
    """fit on reduced structures with skip_structure_reduction=True == fit on the raw structures."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    from cscli.screen.matching import MatchOptions, prepare

    sm = StructureMatcher()
    rng = np.random.default_rng(0)
    subset = [challenge[i] for i in rng.choice(len(challenge), 40, replace=False)]
    reduced = [prepare(s, MatchOptions(), sm).reduced for s in subset]
    agree = true = 0
    for i in range(len(subset)):
        for j in range(len(subset)):
            if subset[i].composition.reduced_formula != subset[j].composition.reduced_formula:
                continue
            raw = sm.fit(subset[i], subset[j])
            fast = sm.fit(reduced[i], reduced[j], skip_structure_reduction=True)
            agree += raw == fast
            true += raw
            assert raw == fast, (i, j)
    assert true > 20  # the subset holds real matches, not only trivial non-matches


def test_filter_never_drops_a_match(prepared):
    """Every ordered pair that StructureMatcher.fit accepts passes the bucket + lattice filter."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    from cscli.screen.matching import MatchOptions, may_match

    sm = StructureMatcher()
    opts = MatchOptions()
    n_fit = n_pass = n_pairs = 0
    for i, a in enumerate(prepared):
        for j, b in enumerate(prepared):
            if i == j:
                continue
            same_formula = a.key[0] == b.key[0]
            passes = may_match(a, b, opts)
            if not same_formula:
                assert not passes
                continue
            n_pairs += 1
            fit = sm.fit(a.reduced, b.reduced, skip_structure_reduction=True)
            n_fit += fit
            n_pass += passes
            assert passes or not fit, f"filter dropped a true match: {i} vs {j}"
    # the set is a real challenge: many matches, many non-matches, and the filter prunes some
    assert n_fit > 250 and n_pairs - n_fit > 1000
    assert n_pass < 0.6 * n_pairs


def test_lattice_gate_implied_by_pymatgen_lattice_search(prepared):
    """Whenever pymatgen's own lattice search in fit (``_get_lattices`` after ``_preprocess``) finds
    a lattice, the gate passes: a stronger check than fit's final answer."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    from cscli.screen.matching import MatchOptions, lattice_gate

    sm = StructureMatcher()
    opts = MatchOptions()
    found = gated = 0
    for a in prepared[:90]:
        for b in prepared[:90]:
            if a.key != b.key:
                continue
            s1, s2, fu, _ = sm._preprocess(a.reduced, b.reduced, skip_structure_reduction=True)
            has_lattice = next(sm._get_lattices(s2.lattice, s1, fu), None) is not None
            gate = lattice_gate(a, b, opts)
            found += has_lattice
            gated += gate
            assert gate or not has_lattice
    assert found > 100 and gated >= found


def _greedy_unique(structures, sm):
    """MatterGen's get_unique per reduced formula, returning duplicate-of indices."""
    from collections import defaultdict

    groups = defaultdict(list)
    for i, s in enumerate(structures):
        groups[s.composition.reduced_formula].append(i)
    dup = [None] * len(structures)
    for idx in groups.values():
        reps = []
        for i in idx:
            for r in reps:
                if sm.fit(structures[i], structures[r]):
                    dup[i] = r
                    break
            if dup[i] is None:
                reps.append(i)
    return dup


@pytest.fixture(scope="module")
def exhaustive(challenge):
    """Baseline decisions: MatterGen-style greedy uniqueness and novelty with plain fit on raw structures."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    sm = StructureMatcher()
    frames, refs = challenge[:100], challenge[100:]
    dup = _greedy_unique(frames, sm)
    hit = [next((j for j, r in enumerate(refs) if sm.fit(f, r)), None) for f in frames]
    return dup, hit


@pytest.mark.slow
@pytest.mark.parametrize("jobs", [1, 2])
def test_unique_and_novel_equal_exhaustive(challenge, exhaustive, jobs):
    from cscli.screen.matching import MatchOptions, find_duplicates, find_in_references, prepare_many

    expected_dup, expected_hit = exhaustive
    frames, refs = challenge[:100], challenge[100:]
    opts = MatchOptions()
    prepared = prepare_many(frames + refs, opts, jobs)
    dup, stats = find_duplicates(prepared[:100], opts, jobs)
    hit, nstats = find_in_references(prepared[:100], prepared[100:], opts, jobs)
    assert dup == expected_dup
    assert hit == expected_hit
    assert 10 < sum(d is None for d in dup) < 90  # both unique and duplicate frames present
    assert 0 < sum(h is None for h in hit) < 100
    assert stats.pairs_fitted < stats.pairs_in_formula_groups


@pytest.mark.parametrize("kw", [dict(ltol=0.1, stol=0.2, angle_tol=3), dict(scale=False), dict(ltol=0.3, angle_tol=8)])
def test_other_options_never_drop_a_match(challenge, kw):
    """Non-default options (tighter, looser, no volume scaling): the filter still never drops a match."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    from cscli.screen.matching import MatchOptions, may_match, prepare_many

    opts = MatchOptions(**kw)
    sm = opts.matcher()
    assert isinstance(sm, StructureMatcher) and sm.ltol == opts.ltol and sm._scale == opts.scale
    subset = challenge[:60]
    prepared = prepare_many(subset, opts, 1)
    matches = 0
    for a in prepared:
        for b in prepared:
            if a.key[0] == b.key[0] and sm.fit(a.reduced, b.reduced, skip_structure_reduction=True):
                matches += 1
                assert may_match(a, b, opts)
    assert matches > len(subset)  # more than the trivial self-matches
