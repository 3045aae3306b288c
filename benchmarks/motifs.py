"""Speed of `cscli motifs`: frames/second of graph + hash on N structures, and of the fingerprints.

The structures are perturbed copies (0.03 Å Gaussian displacements) of the 16 shipped Li-P-S
reference phases (1 to 125 atoms, mean 35), cycled to N frames. Figures printed:

* baseline: ASE ``neighbor_list`` alone with the motif cutoffs (the floor of any bond analysis);
* ``analyze``: bond graph + units + dimensionality + charges + names + WL hashes, per frame;
* ``analyze + tag + catalogue``: what the command does per frame, without I/O;
* CLI end to end (``python -m cscli motifs`` reading and writing extxyz, process start included);
* fingerprints: mean CrystalNN "ops" fingerprint (cations removed) on the first ``--n-fp`` frames.

    python benchmarks/motifs.py --n 1000 --n-fp 16
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def make_frames(n: int, sigma: float = 0.03, seed: int = 0):
    import numpy as np

    from cscli.datafiles import reference_phases_path
    from cscli.frames import read_frames

    refs = read_frames(str(reference_phases_path()))
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n):
        a = refs[k % len(refs)].copy()
        a.positions += rng.normal(scale=sigma, size=a.positions.shape)
        a.info["id"] = f"bench-{k}"
        frames.append(a)
    return frames


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:8.1f} frames/s ({1e3 * seconds / n:6.2f} ms/frame)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="frames for the graph+hash timing")
    parser.add_argument("--n-fp", type=int, default=16, help="frames for the fingerprint timing")
    parser.add_argument("--no-cli", action="store_true", help="skip the end-to-end CLI timing")
    args = parser.parse_args()

    from ase.neighborlist import neighbor_list

    from cscli.motifs import Catalogue, MotifSettings, analyze, tag_frame

    frames = make_frames(args.n)
    natoms = sum(len(a) for a in frames)
    settings = MotifSettings()
    print(f"{args.n} frames, {natoms} atoms ({natoms / args.n:.1f} per frame), 16 Li-P-S phases perturbed by 0.03 Å")
    analyze(frames[0], settings)  # imports, element tables

    t = time.perf_counter()
    for a in frames:
        sub = a[[s != "Li" for s in a.get_chemical_symbols()]]
        if len(sub):
            neighbor_list("ijdS", sub, {("P", "S"): 2.35, ("S", "S"): 2.20, ("P", "P"): 2.50})
    t_nl = time.perf_counter() - t
    print(f"baseline neighbor_list only      : {rate(args.n, t_nl)}")

    t = time.perf_counter()
    names = set()
    for a in frames:
        for m in analyze(a, settings):
            names.add(m.name)
    t_an = time.perf_counter() - t
    print(f"analyze (graph+units+hash+names) : {rate(args.n, t_an)}  = {t_an / t_nl:.1f} x baseline")

    cat = Catalogue()
    t = time.perf_counter()
    for a in frames:
        motifs = analyze(a, settings)
        tag_frame(a, motifs, settings)
        cat.add(a.info["id"], motifs)
    t_all = time.perf_counter() - t
    print(f"analyze + tag + catalogue        : {rate(args.n, t_all)}  ({len(cat.records)} distinct motifs: "
          f"{', '.join(sorted(names))})")

    if not args.no_cli:
        from cscli.frames import write_frames

        with tempfile.TemporaryDirectory() as tmp:
            for a in frames:
                for key in ("motifs", "motif_names", "motif_charge_balance"):
                    a.info.pop(key, None)
            src = os.path.join(tmp, "in.extxyz")
            write_frames(frames, src)
            env = dict(os.environ, PYTHONPATH=str(REPO))
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "cscli", "motifs", src, "-o", os.path.join(tmp, "out.extxyz"), "-q",
                            "--catalogue", os.path.join(tmp, "cat.jsonl")], check=True, env=env)
            t_cli = time.perf_counter() - t
        print(f"CLI end to end (extxyz in/out)   : {rate(args.n, t_cli)}")

    from cscli.fingerprints import structure_fingerprint

    fp_frames = make_frames(args.n_fp, seed=1)
    structure_fingerprint(fp_frames[0])  # imports
    for remove, label in ((("Li",), "Li removed"), ((), "all atoms ")):
        t = time.perf_counter()
        for a in fp_frames:
            structure_fingerprint(a, remove=remove)
        t_fp = time.perf_counter() - t
        n_sites = sum(sum(s not in remove for s in a.get_chemical_symbols()) for a in fp_frames)
        print(f"fingerprint ({label}, {args.n_fp} frames): {rate(args.n_fp, t_fp)}  "
              f"= {1e3 * t_fp / n_sites:.0f} ms/site, {t_fp / args.n_fp / (t_an / args.n):.0f} x analyze")


if __name__ == "__main__":
    main()
