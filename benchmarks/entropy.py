"""entropy-select speed and accuracy: exact vs approximate (PyNNDescent, QUESTS's method) δH.

Real Li-P-S environments (QUESTS descriptors, k=32, cutoff 5 Å, h=0.015):
reference set = LiPS20 AIMD frames (16 phases, 3000 K) [+ the 1000-frame beta-Li3PS4/Li7P3S11
trajectories with --large], query set = NequIP LiPS (Li27P12S44) validation frames.

Prints, for each size N (N reference and N query environments):
  * exact δH: query environments per second (cscli float32 log-space kernel sums)
  * approximate δH: environments per second (index build + query; numba compile excluded)
  * agreement: approx vs exact (Pearson r, median/95th-percentile/max |diff|, share within 0.05 nats)
and, once: descriptor throughput, cscli exact vs QUESTS's own float64 delta_entropy on a subset
(max |diff| where QUESTS is finite, speed ratio), and the time of one greedy selection step.

    nice python benchmarks/entropy.py                 # sizes 2000 5000 10000, 32 neighbours
    nice python benchmarks/entropy.py --sizes 2000 10000 40000 --large --ann-neighbors 3 --json out.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def _frames(shared: Path, large: bool):
    from ase import Atoms

    from cscli.core.frames import read_frames

    d = shared / "lips_dft_frames"
    ref = []
    for p in sorted((d / "lips20_egraffbench").glob("lips20_*_3000K_every50.extxyz")):
        ref += read_frames(str(p))
    if large:
        for name in ("beta-Li3PS4", "Li7P3S11"):
            z = np.load(d / "lips20_egraffbench" / f"lips20_{name}_3000K_full1000.npz")
            for box, xyz in zip(z["box"], z["coord"]):
                ref.append(Atoms(symbols=list(z["symbols"]), positions=xyz, cell=box, pbc=True))
    query = read_frames(str(d / "lips_nequip_batzner2022" / "lips_val_every10_100frames.extxyz"))
    return ref, query


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 5000, 10000])
    ap.add_argument("--large", action="store_true", help="add the 1000-frame trajectories (148k more environments)")
    ap.add_argument("--ann-neighbors", type=int, default=32, help="neighbours in the approximate sum (QUESTS: 3)")
    ap.add_argument("--quests-subset", type=int, default=1000, help="query rows compared with QUESTS float64")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from quests.entropy import delta_entropy as q_delta

    from cscli.core.datafiles import shared_data_dir
    from cscli.learn import entropy as E

    shared = shared_data_dir()
    if shared is None:
        raise SystemExit("needs ../shared/data (or CSCLI_SHARED_DATA)")
    rng = np.random.default_rng(0)
    ref_frames, query_frames = _frames(shared, args.large)
    E.descriptors(query_frames[:1])  # numba compile outside the timing
    t = time.perf_counter()
    rx, _ = E.descriptors(ref_frames)
    qx, _ = E.descriptors(query_frames)
    t_desc = time.perf_counter() - t
    n_desc = len(rx) + len(qx)
    out = {
        "descriptor_envs_per_s": n_desc / t_desc,
        "n_ref_pool": len(rx),
        "n_query_pool": len(qx),
        "ann_neighbors": args.ann_neighbors,
        "sizes": [],
    }
    print(f"descriptors: {n_desc} environments in {t_desc:.1f} s = {n_desc / t_desc:.0f} env/s")
    rx = rx[rng.permutation(len(rx))]
    qx = qx[rng.permutation(len(qx))]

    # warm PyNNDescent's numba kernels (its first index in a process compiles for ~1-2 min)
    t = time.perf_counter()
    E.approx_log_kernel_sum(qx[:500], rx[:2000], n_neighbors=args.ann_neighbors)
    print(f"PyNNDescent first-use compile: {time.perf_counter() - t:.0f} s (excluded below)")

    print(
        f"{'N':>7} {'exact env/s':>12} {'approx env/s':>13} {'r':>7} {'med|d|':>8} {'p95|d|':>8} "
        f"{'max|d|':>8} {'<0.05':>6}"
    )
    for size in args.sizes:
        n_ref = min(size, len(rx))
        x = rx[:n_ref]
        y = np.concatenate([qx, rx[n_ref:]])[:size]  # beyond the LiPS pool: held-out LiPS20 rows
        n_q = len(y)
        t = time.perf_counter()
        exact = E.delta_entropy(y, x, method="exact")
        t_exact = time.perf_counter() - t
        t = time.perf_counter()
        approx = E.delta_entropy(y, x, method="approx", n_neighbors=args.ann_neighbors)
        t_approx = time.perf_counter() - t
        diff = np.abs(approx - exact)
        row = {
            "n_ref": n_ref,
            "n_query": n_q,
            "exact_s": t_exact,
            "approx_s": t_approx,
            "exact_envs_per_s": n_q / t_exact,
            "approx_envs_per_s": n_q / t_approx,
            "pearson_r": float(np.corrcoef(exact, approx)[0, 1]),
            "median_abs_diff": float(np.median(diff)),
            "p95_abs_diff": float(np.percentile(diff, 95)),
            "max_abs_diff": float(diff.max()),
            "share_within_0.05": float(np.mean(diff < 0.05)),
            "exact_dh_median": float(np.median(exact)),
        }
        out["sizes"].append(row)
        print(
            f"{n_ref:>7} {row['exact_envs_per_s']:>12.0f} {row['approx_envs_per_s']:>13.0f} {row['pearson_r']:>7.4f} "
            f"{row['median_abs_diff']:>8.4f} {row['p95_abs_diff']:>8.3f} {row['max_abs_diff']:>8.2f} "
            f"{row['share_within_0.05']:>6.3f}"
        )

    # cscli exact (float32 descriptors, log space) vs QUESTS's own float64 delta_entropy
    n_ref = min(args.sizes[0], len(rx))
    x, y = rx[:n_ref], qx[: args.quests_subset]
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    q_delta(y64[:10], x64[:10])  # numba compile
    t = time.perf_counter()
    with np.errstate(divide="ignore"):
        ref = q_delta(y64, x64)
    t_q = time.perf_counter() - t
    t = time.perf_counter()
    ours = E.delta_entropy(y, x)
    t_o = time.perf_counter() - t
    fin = np.isfinite(ref)
    out["vs_quests"] = {
        "n_query": len(y),
        "n_ref": n_ref,
        "finite": int(fin.sum()),
        "max_abs_diff": float(np.abs(ours[fin] - ref[fin]).max()),
        "quests_s": t_q,
        "cscli_s": t_o,
        "speed_ratio": t_q / t_o,
    }
    print(
        f"vs QUESTS delta_entropy (float64), {len(y)} x {n_ref}: max |diff| {out['vs_quests']['max_abs_diff']:.2e} nats "
        f"on {fin.sum()} finite values ({len(y) - fin.sum()} inf in QUESTS, finite here); "
        f"time QUESTS {t_q:.2f} s, cscli {t_o:.2f} s (x{t_q / t_o:.1f})"
    )

    # one greedy step: 10,000 frames x 50 atoms = 500k candidate environments, a 50-atom frame added
    m = 500_000
    cand = rx[rng.integers(0, len(rx), m)]
    new = qx[:50]
    t = time.perf_counter()
    E.log_kernel_sum(cand, new, return_min_dist=True)
    t_step = time.perf_counter() - t
    out["greedy_step_500k_envs_s"] = t_step
    print(f"greedy step, 500k candidate environments x 50 new: {t_step:.2f} s ({m * 50 / t_step:.2e} pairs/s)")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
