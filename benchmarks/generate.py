"""Throughput of the offline generators (frames/second), and how the generated frames relax.

    python benchmarks/generate.py [--num 20] [--relax 0] [--seed 0]

Prints frames/s of each backend (library call, process start excluded) for two seeds (the rate
depends on the draws: hard compositions/space groups need more tries), and the ratios of the
second-seed rates to the random backend's. With --relax N, the first N frames of each backend are relaxed
with the default model (FIRE, fmax 0.1, 200 steps) and the energy per atom and, when `cscli.screen.hull`
exists, the fraction with E_hull < 0.1 eV/atom against the relaxed reference phases are printed.
"""

from __future__ import annotations

import argparse
import time


def rate(backend, settings, num, seed):
    from cscli.explore.generate import generate_offline

    start = time.perf_counter()
    frames = list(generate_offline(backend, settings, num, seed))
    dt = time.perf_counter() - start
    return frames, len(frames) / dt, dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--num", type=int, default=20)
    ap.add_argument("--relax", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from cscli.explore.generate import OfflineSettings, general_multiplicity

    els = ["Li", "P", "S"]
    # warm the space-group caches so the first backend does not pay for them alone
    for n in range(1, 231):
        general_multiplicity(n)
    runs, rates = {}, {}
    for name, backend, kw in [
        ("random", "random", {}),
        ("random --charge-balance", "random", {"charge_balance": True}),
        ("motifs (PS4 + S)", "motifs", {}),
    ]:
        frames, fps, dt = rate(backend, OfflineSettings(elements=els, **kw), args.num, args.seed)
        runs[name] = frames
        natoms = sum(len(a) for a in frames) / len(frames)
        print(
            f"{name:26s} {len(frames):3d} frames in {dt:6.1f} s: {fps:6.2f} frames/s  (mean {natoms:.1f} atoms; "
            f"seed {args.seed}, includes building pyxtal's Wyckoff tables)"
        )
        _, fps, dt = rate(backend, OfflineSettings(elements=els, **kw), args.num, args.seed + 1000)
        rates[name] = fps
        print(
            f"{name:26s} {args.num:3d} frames in {dt:6.1f} s: {fps:6.2f} frames/s  (seed {args.seed + 1000}, tables cached)"
        )
    base = rates["random"]
    for name, fps in rates.items():
        print(f"{name:26s} speed relative to random: {fps / base:5.2f}")
    if args.relax:
        import numpy as np

        from cscli.core.models import load_calculator
        from cscli.explore.relax import relax_atoms

        calc = load_calculator()
        try:
            from cscli.screen import hull  # noqa: F401

            have_hull = True
        except ImportError:
            have_hull = False
        for name, frames in runs.items():
            out = []
            start = time.perf_counter()
            for a in frames[: args.relax]:
                try:
                    out.append(relax_atoms(a, calc, fmax=0.1, steps=200))
                except Exception as exc:  # report, go on
                    print(f"  {a.info['id']}: relax failed: {exc}")
            dt = time.perf_counter() - start
            e = [r.info["energy"] / len(r) for r in out]
            conv = sum(bool(r.info.get("relax_converged")) for r in out)
            print(
                f"{name:26s} relaxed {len(out)} in {dt:.0f} s, {conv} converged, E/atom {np.mean(e):.3f} "
                f"(min {np.min(e):.3f}) eV  [{calc.cscli_model}]"
            )
        if not have_hull:
            print("E_hull fraction: skipped (cscli.screen.hull not on this branch)")


if __name__ == "__main__":
    main()
