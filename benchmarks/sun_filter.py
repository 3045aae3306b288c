"""Benchmark: cscli's bucketed StructureMatcher dedup vs MatterGen-style grouped pairwise matching.

A batch of N frames (perturbed / permuted / supercelled / rotated / strained copies of the 16
shipped Li-P-S phases, plus random Li-P-S structures) is checked for uniqueness within itself and
novelty against R references (the 16 phases, more copies and more random structures: an "earlier
iteration"). Both methods must give the same decisions; the script prints both times and the ratio.

Baseline = MatterGen's evaluator (mattergen/evaluation/utils/dataset_matcher.py), reimplemented:
structures grouped by reduced formula; uniqueness: a structure is compared with every earlier
unique structure of its group, ``StructureMatcher().fit(new, rep)``, until one matches; novelty:
``fit(frame, ref)`` for *every* pair in the group. One process, pymatgen defaults.

    python benchmarks/sun_filter.py --n 1000 --refs 1000            # full baseline
    python benchmarks/sun_filter.py --n 10000 --refs 1000 --baseline-sample 0.05
    python benchmarks/sun_filter.py --check 2000                    # exhaustive pair check only

``--baseline-sample f`` runs the baseline's loops only for a random fraction f of the frames
(each exactly as the full run would: same group, same earlier unique structures, same references)
and scales its time by 1/f; the decisions on the sample are compared with cscli's. Without it
the full baseline runs. ``--check M`` compares the pair filter with exhaustive ``fit`` on all
ordered pairs of M challenge structures (every pair that fit accepts must pass the filter).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# reduced formulas of known Li-P-S compounds (random structures are drawn at these compositions)
RANDOM_FORMULAS = [
    "Li3PS4",
    "Li7P3S11",
    "Li4P2S6",
    "Li2PS3",
    "LiPS3",
    "Li7PS6",
    "Li4P2S7",
    "Li2S",
    "P2S5",
    "Li3P",
    "LiP",
    "Li5PS4",
    "Li2P2S5",
    "Li6PS5",
    "LiS",
    "P4S3",
]


def load_phases():
    from cscli.core.datafiles import reference_phases_path
    from cscli.core.frames import read_frames
    from cscli.screen.matching import atoms_to_structure

    frames = read_frames(str(reference_phases_path()))
    return [(a.info["phase"], atoms_to_structure(a)) for a in frames]


def random_rotation(rng):
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    a, b, c, d = q
    return np.array(
        [
            [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
            [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
            [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d],
        ]
    )


SUPERCELLS = [
    np.diag([2, 1, 1]),
    np.diag([1, 2, 1]),
    np.diag([1, 1, 2]),
    np.array([[1, 1, 0], [-1, 1, 0], [0, 0, 1]]),
    np.array([[1, 0, 1], [0, 1, 0], [-1, 0, 1]]),
]


def variant(structure, rng, sigma_max=0.15, strain_max=0.04, max_atoms=80):
    """A copy of a phase a generator or relaxer could produce: strained, rattled, permuted,
    possibly a supercell, rotated in space. Strain components up to ±a, a ~ U(0, ``strain_max``)."""
    from pymatgen.core import Lattice, Structure

    s = structure.copy()
    if rng.random() < 0.3 and len(s) * 2 <= max_atoms:
        s.make_supercell(SUPERCELLS[rng.integers(len(SUPERCELLS))])
    amp = rng.uniform(0, strain_max)
    eps = rng.uniform(-amp, amp, (3, 3))
    eps = (eps + eps.T) / 2
    matrix = s.lattice.matrix @ (np.eye(3) + eps)
    cart = s.frac_coords @ matrix + rng.normal(0, rng.uniform(0, sigma_max), (len(s), 3))
    if rng.random() < 0.5:
        rot = random_rotation(rng)
        matrix, cart = matrix @ rot.T, cart @ rot.T
    perm = rng.permutation(len(s))
    return Structure(Lattice(matrix), [s.species[i] for i in perm], cart[perm], coords_are_cartesian=True)


def random_structure(formula, rng, max_atoms=40, dmin=1.7, vol_per_atom=(18.0, 30.0)):
    """Random periodic structure: random triclinic cell, atoms placed with a minimum distance."""
    from pymatgen.core import Composition, Lattice, Structure

    comp = Composition(formula).reduced_composition
    per_fu = int(comp.num_atoms)
    zmax = max(1, max_atoms // per_fu)
    z = int(rng.integers(1, zmax + 1))
    species = [el.symbol for el, k in comp.items() for _ in range(int(k) * z)]
    n = len(species)
    for _attempt in range(50):
        volume = n * rng.uniform(*vol_per_atom)
        abc = rng.uniform(0.7, 1.4, 3)
        angles = rng.uniform(65, 115, 3)
        lat = Lattice.from_parameters(*abc, *angles)
        if not np.isfinite(lat.volume) or lat.volume <= 0.05:
            continue
        lat = lat.scale(volume)
        m = lat.matrix
        placed = np.zeros((0, 3))
        ok = True
        for _ in range(n):
            for _try in range(200):
                f = rng.random(3)
                if len(placed) == 0:
                    break
                d = placed - f
                d -= np.round(d)
                if np.min(np.linalg.norm(d @ m, axis=1)) >= dmin:
                    break
            else:
                ok = False
                break
            placed = np.vstack([placed, f])
        if ok:
            order = rng.permutation(n)
            return Structure(lat, [species[i] for i in order], placed[order])
    raise RuntimeError(f"could not place {formula}")


def make_batch(n, rng, phases, copy_fraction=0.5, **kw):
    out = []
    for i in range(n):
        if rng.random() < copy_fraction:
            name, s = phases[rng.integers(len(phases))]
            out.append((f"copy-{name}-{i}", variant(s, rng, **kw)))
        else:
            formula = RANDOM_FORMULAS[rng.integers(len(RANDOM_FORMULAS))]
            out.append((f"rand-{formula}-{i}", random_structure(formula, rng)))
    return out


# ----------------------------------------------------------------------------- baseline


def baseline(frames, refs, sample=None, rng=None):
    """MatterGen-style grouped pairwise matching. Returns (dup, hit, seconds, fits, sampled idx)."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    sm = StructureMatcher()
    c0 = cpu_seconds()
    t0 = time.perf_counter()
    groups = defaultdict(list)
    for i, s in enumerate(frames):
        groups[s.composition.reduced_formula].append(i)
    ref_groups = defaultdict(list)
    for j, s in enumerate(refs):
        ref_groups[s.composition.reduced_formula].append(j)
    chosen = None
    if sample is not None:
        chosen = set(np.flatnonzero(rng.random(len(frames)) < sample).tolist())
    dup = [None] * len(frames)
    hit = [None] * len(frames)
    fits = 0
    # uniqueness: greedy over earlier unique structures of the group. With a sample, the list of
    # earlier unique structures comes from `sample_reps` (cscli's decisions, checked on the sample).
    for _formula, idx in groups.items():
        reps = []
        for i in idx:
            if chosen is None or i in chosen:
                for r in reps:
                    fits += 1
                    if sm.fit(frames[i], frames[r]):
                        dup[i] = r
                        break
            else:
                dup[i] = baseline.known_dup[i]
            if dup[i] is None:
                reps.append(i)
    # novelty: every pair (MatterGen's get_matches does not stop at the first match)
    for i, s in enumerate(frames):
        if chosen is not None and i not in chosen:
            continue
        for j in ref_groups.get(s.composition.reduced_formula, ()):
            fits += 1
            if sm.fit(s, refs[j]) and hit[i] is None:
                hit[i] = j
    seconds = time.perf_counter() - t0
    baseline.cpu_s = cpu_seconds() - c0
    return dup, hit, seconds, fits, (sorted(chosen) if chosen is not None else None)


# ----------------------------------------------------------------------------- cscli path


def cpu_seconds():
    """CPU time of this process and its finished children (the machine is shared: wall time is noisy)."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def fast(frames, refs, jobs):
    from cscli.screen.matching import MatchOptions, find_duplicates, find_in_references, prepare_many

    opts = MatchOptions()
    c0 = cpu_seconds()
    t0 = time.perf_counter()
    prepared = prepare_many(frames + refs, opts, jobs)
    t1 = time.perf_counter()
    dup, ust = find_duplicates(prepared[: len(frames)], opts, jobs)
    hit, nst = find_in_references(prepared[: len(frames)], prepared[len(frames) :], opts, jobs)
    t2 = time.perf_counter()
    return (
        dup,
        hit,
        t2 - t0,
        {
            "cpu_s": round(cpu_seconds() - c0, 1),
            "reduce_s": round(t1 - t0, 2),
            "match_s": round(t2 - t1, 2),
            "fits_unique": ust.pairs_fitted,
            "fits_novel": nst.pairs_fitted,
            "pairs_formula_groups": ust.pairs_in_formula_groups + nst.pairs_in_formula_groups,
            "pairs_buckets": ust.pairs_in_buckets + nst.pairs_in_buckets,
        },
    )


def check_pairs(m, seed, jobs):
    """Exhaustive check: every ordered pair that fit accepts passes may_match."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    from cscli.screen.matching import MatchOptions, may_match, prepare_many

    rng = np.random.default_rng(seed)
    phases = [p for p in load_phases() if len(p[1]) <= 56]
    # harder than the benchmark batch: strains up to ±12 % per component put pairs on both sides of ltol
    structs = [s for _, s in make_batch(m, rng, phases, copy_fraction=0.8, strain_max=0.12, sigma_max=0.3)]
    opts = MatchOptions()
    prepared = prepare_many(structs, opts, jobs)
    sm = StructureMatcher()
    t0 = time.perf_counter()
    n_pairs = n_fit = n_pass = violations = 0
    for i, a in enumerate(prepared):
        for j, b in enumerate(prepared):
            if i == j or a.key[0] != b.key[0]:
                continue  # fit is False across reduced formulas by its own first test
            n_pairs += 1
            f = bool(sm.fit(a.reduced, b.reduced, skip_structure_reduction=True))
            p = bool(may_match(a, b, opts))
            n_fit += f
            n_pass += p
            violations += f and not p
    return {
        "structures": m,
        "ordered_pairs_same_formula": n_pairs,
        "fit_true": n_fit,
        "filter_pass": n_pass,
        "violations": violations,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main(argv=None):
    from cscli.screen.matching import atoms_to_structure, default_jobs  # noqa: F401

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10000, help="frames in the batch")
    ap.add_argument("--refs", type=int, default=1000, help="reference structures")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=None)
    ap.add_argument("--baseline-sample", type=float, default=None, help="fraction of frames the baseline runs on")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--check", type=int, default=0, help="only the exhaustive pair check on this many structures")
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args(argv)
    jobs = args.jobs or default_jobs()
    if args.check:
        res = check_pairs(args.check, args.seed, jobs)
        print(json.dumps(res, indent=1))
        return 0 if res["violations"] == 0 else 1

    rng = np.random.default_rng(args.seed)
    phases = load_phases()
    t = time.perf_counter()
    refs = [s for _, s in phases] + [s for _, s in make_batch(args.refs - len(phases), rng, phases)]
    frames = [s for _, s in make_batch(args.n, rng, phases)]
    print(f"generated {len(frames)} frames, {len(refs)} refs in {time.perf_counter() - t:.1f} s", file=sys.stderr)

    dup, hit, t_fast, info = fast(frames, refs, jobs)
    res = {
        "frames": len(frames),
        "refs": len(refs),
        "jobs": jobs,
        "cscli_s": round(t_fast, 2),
        **info,
        "unique": sum(d is None for d in dup),
        "novel": sum(h is None for h in hit),
    }
    print(f"cscli: {t_fast:.1f} s ({info})", file=sys.stderr)
    if not args.no_baseline:
        baseline.known_dup = dup
        bdup, bhit, t_base, fits, sampled = baseline(
            frames, refs, args.baseline_sample, np.random.default_rng(args.seed + 1)
        )
        idx = range(len(frames)) if sampled is None else sampled
        # same decisions: unique/duplicate-of and novel; (novelty: same matched/not matched)
        mism_u = sum((dup[i] is None) != (bdup[i] is None) or dup[i] != bdup[i] for i in idx)
        mism_n = sum((hit[i] is None) != (bhit[i] is None) for i in idx)
        scale = 1.0 if sampled is None else len(frames) / max(1, len(sampled))
        res.update(
            {
                "baseline_s": round(t_base * scale, 1),
                "baseline_cpu_s": round(baseline.cpu_s * scale, 1),
                "speedup_cpu": round(baseline.cpu_s * scale / info["cpu_s"], 1),
                "baseline_fits": int(fits * scale),
                "baseline_sampled_frames": None if sampled is None else len(sampled),
                "decision_mismatches": {"unique": mism_u, "novel": mism_n},
                "speedup": round(t_base * scale / t_fast, 1),
            }
        )
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
