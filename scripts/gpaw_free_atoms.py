"""Spherically averaged valence pseudo-densities of free Li, P, S atoms from GPAW (system Python).

The superposition-of-atoms baseline of ``cscli density test``/``benchmarks/density.py`` and
the tests: each atom alone in a cubic box (``--box`` Å, Γ point, spin-paired, same PW cutoff and
smearing as the training data), ``get_pseudo_density()`` binned by distance from the nucleus.

    OMP_NUM_THREADS=1 /usr/bin/python3 scripts/gpaw_free_atoms.py OUT.json --ecut 300
"""

import argparse
import json

import numpy as np


def main():
    from ase import Atoms
    from gpaw import GPAW, PW

    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--ecut", type=float, default=300.0)
    ap.add_argument("--box", type=float, default=9.0)
    ap.add_argument("--elements", nargs="*", default=["Li", "P", "S"])
    ap.add_argument("--rmax", type=float, default=4.4)
    ap.add_argument("--dr", type=float, default=0.05)
    args = ap.parse_args()
    out = {
        "settings": {
            "ecut": args.ecut,
            "box": args.box,
            "xc": "PBE",
            "kpts": [1, 1, 1],
            "spinpol": False,
            "smearing": "fermi-dirac",
            "width": 0.1,
            "rmax": args.rmax,
            "dr": args.dr,
        },
        "atoms": {},
    }
    for sym in args.elements:
        atoms = Atoms(sym, positions=[[args.box / 2] * 3], cell=[args.box] * 3, pbc=True)
        atoms.calc = GPAW(
            mode=PW(args.ecut), xc="PBE", kpts=(1, 1, 1), txt=None, occupations={"name": "fermi-dirac", "width": 0.1}
        )
        atoms.get_potential_energy()
        rho = atoms.calc.get_pseudo_density()
        shape = np.array(rho.shape)
        frac = np.stack(np.meshgrid(*[np.arange(n) / n for n in shape], indexing="ij"), -1).reshape(-1, 3)
        dist = np.linalg.norm(frac @ atoms.cell.array - atoms.positions[0], axis=1)
        edges = np.arange(0, args.rmax + args.dr, args.dr)
        which = np.digitize(dist, edges) - 1
        vals = rho.reshape(-1)
        r, prof = [], []
        for b in range(len(edges) - 1):
            sel = which == b
            if sel.any():
                r.append(float(dist[sel].mean()))
                prof.append(float(vals[sel].mean()))
        integral = float(rho.mean() * atoms.get_volume())
        out["atoms"][sym] = {"r": r, "rho": prof, "integral": integral}
        print(sym, shape.tolist(), round(integral, 4), flush=True)
    with open(args.out, "w") as fh:
        json.dump(out, fh)


if __name__ == "__main__":
    main()
