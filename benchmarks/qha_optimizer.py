"""CPU cost of cscli qha's fixed-volume relaxations with FIRE, BFGS and LBFGS, same starts.

    OMP_NUM_THREADS=1 python benchmarks/qha_optimizer.py [--phases Li2P2S6,gamma-Li3PS4] [--model 7net-0]

Per shipped reference phase: one pre-relaxation (FIRE, ``--fmax``, space group kept at 1e-3 Å) gives
a0; then, for each optimizer, the relaxation of ions and cell shape at every default lattice scale
(0.95–1.05, step 0.02), each started from the scaled a0 (what ``cscli qha`` does for the first
volume; later volumes start from the nearest relaxed one, which helps every optimizer alike).
Prints per optimizer the total steps, the unconverged count, the CPU seconds
(``time.process_time``), the ratio CPU(FIRE) / CPU(optimizer) measured in the same run, and the
largest |ΔE| per atom against FIRE's relaxed energies (a check that both found the same minimum).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

SCALES = (0.95, 0.97, 0.99, 1.01, 1.03, 1.05)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phases", default="Li2P2S6,gamma-Li3PS4")
    ap.add_argument("--model", default="7net-0")
    ap.add_argument("--optimizers", default="FIRE,BFGS,LBFGS")
    ap.add_argument("--fmax", type=float, default=1e-3)
    ap.add_argument("--steps", type=int, default=500)
    args = ap.parse_args(argv)

    from cscli.core.datafiles import reference_phases_path
    from cscli.core.frames import read_frames
    from cscli.core.models import load_calculator
    from cscli.explore.relax import relax_atoms
    from cscli.props.qha import relax_fixed_volume, scaled_cell

    calc = load_calculator(args.model, "cpu")
    phases = {a.info["phase"]: a for a in read_frames(str(reference_phases_path()))}
    optimizers = args.optimizers.split(",")
    print(f"model {args.model}, fmax {args.fmax} eV/Å, at most {args.steps} steps, scales {SCALES}")
    print("| phase (atoms) | optimizer | steps | unconverged | CPU s | FIRE / this | max abs dE (meV/atom) |")
    print("|---|---|---|---|---|---|---|")
    for name in args.phases.split(","):
        a0 = relax_atoms(phases[name], calc, fmax=args.fmax, steps=args.steps, symprec=1e-3)
        a0.calc = None
        rows = {}
        for opt in optimizers:
            t0 = time.process_time()
            runs = [relax_fixed_volume(scaled_cell(a0, s), calc, args.fmax, args.steps, 1e-3, opt) for s in SCALES]
            cpu = time.process_time() - t0
            energies = np.array([r.info["energy"] for r, _ in runs]) / len(a0)
            rows[opt] = (sum(r.info["relax_steps"] for r, _ in runs), sum(not ok for _, ok in runs), cpu, energies)
        ref = rows[optimizers[0]]
        for opt, (steps, bad, cpu, energies) in rows.items():
            de = 1e3 * np.abs(energies - ref[3]).max()
            print(f"| {name} ({len(a0)}) | {opt} | {steps} | {bad} | {cpu:.1f} | {ref[2] / cpu:.2f} | {de:.3f} |")


if __name__ == "__main__":
    main()
