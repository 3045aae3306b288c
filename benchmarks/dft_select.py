"""Speed of dft-select's fingerprints and farthest-point sampling, and of collect's reader.

    python benchmarks/dft_select.py [--n 200]

Prints ms per frame for the Oganov-Valle fingerprint (default) and matminer's CrystalNN
site-statistics fingerprint (baseline) on the 16 Li-P-S reference phases, the ratio, and the time
of a farthest-point selection of 300 out of N frames.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from cscli.core.datafiles import reference_phases_path
from cscli.core.frames import read_frames
from cscli.dft.dft_select import Bin, fingerprints, select


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200, help="pool size for the FPS timing")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    refs = [a for a in read_frames(str(reference_phases_path())) if len(a) <= 60]
    n_atoms = sum(len(a) for a in refs)
    t = time.perf_counter()
    fingerprints(refs, "ov")
    t_ov = time.perf_counter() - t
    t = time.perf_counter()
    fingerprints(refs, "crystalnn")
    t_cnn = time.perf_counter() - t
    print(f"{len(refs)} reference phases ({n_atoms} atoms)")
    print(f"ov fingerprint:        {1e3 * t_ov / len(refs):8.1f} ms/frame")
    print(f"crystalnn fingerprint: {1e3 * t_cnn / len(refs):8.1f} ms/frame  (baseline)")
    print(f"speed-up ov vs crystalnn: {t_cnn / t_ov:.0f}x")
    rng = np.random.default_rng(0)
    pool = []
    for i in range(args.n):
        a = refs[i % len(refs)].copy()
        a.rattle(0.02, seed=i)
        a.info = {"id": f"p{i}", "e_hull": float(rng.uniform(0.03, 0.1))}
        pool.append(a)
    t = time.perf_counter()
    chosen, _ = select(pool, (Bin(0.03, 0.1, min(300, args.n // 2)),), method="fps")
    t_fps = time.perf_counter() - t
    print(f"fps: {len(chosen)} of {args.n} frames in {t_fps:.2f} s ({1e3 * t_fps / args.n:.1f} ms/frame)")


if __name__ == "__main__":
    main()
