"""Label Li–P–S frames with GPAW and keep each SCF's valence pseudo-density (system Python).

Run with Debian's GPAW interpreter (``/usr/bin/python3``), not cscli's venv: it calls
``cscli/dft/gpaw_worker.py``'s ``run`` directly, one frame after another, and writes per frame
``OUT/<id>.npy`` (pseudo-density, electrons/Å³, GPAW grid) and ``OUT/<id>.json`` (structure,
energy, settings). ``cscli.props.density.io.read_gpaw_npy`` turns a pair into a density object;
``scripts/train_density_model.py`` uses them. Same physics as ``cscli label -c gpaw --density-dir``.

    OMP_NUM_THREADS=1 /usr/bin/python3 scripts/gpaw_density_frames.py OUT --ecut 300 --kpt-density 2

Fine-tuning data for one phase (``benchmarks/density.py --finetune``): ``--phase ID --copies N
--tag f --seed S`` labels N perturbed copies of the reference phase ID, named ``<ID>-<tag><i>``
(i = 0..N-1, in order, so a run stopped early leaves a usable prefix), plus the unperturbed phase
with ``--with-ideal``:

    OMP_NUM_THREADS=1 /usr/bin/python3 scripts/gpaw_density_frames.py OUT --phase gamma-Li3PS4 --copies 34 --tag f --seed 1402
"""

import argparse
import json
import math
import os
import sys
import time

import numpy as np
from ase.io import read

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cscli", "dft"))
import gpaw_worker  # noqa: E402

PLAN = [  # (reference id, number of perturbed copies) — smallest first
    ("ref-Li2S", 4),
    ("ref-Li", 2),
    ("ref-Li3P", 3),
    ("ref-Li2P2S6", 1),
    ("ref-Li4P2S6", 1),
    ("ref-gamma-Li3PS4", 0),
    ("ref-Li2PS3-hex", 0),
]
ORDER = ["Li2S", "Li", "Li3P", "Li2P2S6", "gamma-Li3PS4", "Li4P2S6", "Li2PS3-hex"]  # run order (held-out phases early)


def kmesh(atoms, density):
    recip = atoms.cell.reciprocal()
    return [max(1, int(math.ceil(2 * math.pi * np.linalg.norm(recip[i]) * density - 1e-9))) for i in range(3)]


def perturb(atoms, rng, rattle=0.08, strain=0.03):
    a = atoms.copy()
    eps = rng.uniform(-strain, strain, (3, 3))
    eps = 0.5 * (eps + eps.T)
    a.set_cell(a.cell.array @ (np.eye(3) + eps), scale_atoms=True)
    a.positions += rng.normal(0, rattle, a.positions.shape)
    return a


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--ecut", type=float, default=300.0)
    ap.add_argument("--kpt-density", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--phase", default=None, help="reference id without 'ref-': perturbed copies of this phase only")
    ap.add_argument("--copies", type=int, default=0)
    ap.add_argument("--tag", default="f", help="name copies <phase>-<tag><i>")
    ap.add_argument("--with-ideal", action="store_true", help="also label the unperturbed phase")
    ap.add_argument("--rattle", type=float, default=0.08)
    ap.add_argument("--strain", type=float, default=0.03)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    refs = {
        a.info["id"]: a for a in read(os.path.join(HERE, "..", "cscli", "data", "lips_reference_phases.extxyz"), ":")
    }
    rng = np.random.default_rng(args.seed)
    jobs = []
    if args.phase:
        base = refs["ref-" + args.phase]
        if args.with_ideal:
            jobs.append((args.phase, base))
        for i in range(args.copies):
            jobs.append((f"{args.phase}-{args.tag}{i}", perturb(base, rng, args.rattle, args.strain)))
    for rid, n in [] if args.phase else PLAN:
        base = refs[rid]
        jobs.append((rid.replace("ref-", ""), base))
        for i in range(n):
            jobs.append((rid.replace("ref-", "") + f"-p{i}", perturb(base, rng)))
    if not args.phase:  # smallest first, held-out phases early
        jobs.sort(
            key=lambda j: (
                0
                if "-p" not in j[0] or j[0].startswith("Li2S") or j[0].startswith("Li-") or j[0].startswith("Li3P")
                else 1,
                ORDER.index(j[0].split("-p")[0]),
            )
        )
    for name, atoms in jobs:
        if args.only and not any(name.startswith(o) for o in args.only):
            continue
        npy = os.path.join(args.out, name + ".npy")
        meta = os.path.join(args.out, name + ".json")
        if os.path.exists(meta):
            continue
        settings = {
            "ecut": args.ecut,
            "xc": "PBE",
            "kpts": kmesh(atoms, args.kpt_density),
            "smearing": "fermi-dirac",
            "width": 0.1,
            "spinpol": False,
            "convergence": {},
            "extra": {},
        }
        request = {
            "symbols": atoms.get_chemical_symbols(),
            "positions": atoms.positions.tolist(),
            "cell": atoms.cell.array.tolist(),
            "pbc": [True] * 3,
            "settings": settings,
            "txt": os.path.join(args.out, name + ".gpaw.txt"),
            "density": npy,
        }
        t0 = time.time()
        result = gpaw_worker.run(request)
        result["seconds"] = time.time() - t0
        result["request"] = request
        result["id"] = name
        with open(meta, "w") as fh:
            json.dump(result, fh)
        print(
            name,
            len(atoms),
            settings["kpts"],
            result["density"]["shape"],
            round(result["density"]["integral"], 4),
            "{:.1f} s".format(result["seconds"]),
            flush=True,
        )


if __name__ == "__main__":
    main()
