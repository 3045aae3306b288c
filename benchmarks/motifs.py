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

    from cscli.core.datafiles import reference_phases_path
    from cscli.core.frames import read_frames

    refs = read_frames(str(reference_phases_path()))
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n):
        a = refs[k % len(refs)].copy()
        a.positions += rng.normal(scale=sigma, size=a.positions.shape)
        a.info["id"] = f"bench-{k}"
        frames.append(a)
    return frames


class Clock:
    """Wall and CPU time of a block (CPU time is the steadier figure on a shared machine)."""

    def __enter__(self):
        self.w, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.w
        self.cpu = time.process_time() - self.c


def rate(n: int, clock) -> str:
    if isinstance(clock, float):
        return f"{n / clock:8.1f} frames/s wall ({1e3 * clock / n:6.2f} ms/frame)"
    return (
        f"{n / clock.wall:8.1f} frames/s wall, {n / clock.cpu:8.1f} frames/s CPU "
        f"({1e3 * clock.cpu / n:6.2f} CPU ms/frame)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="frames for the graph+hash timing")
    parser.add_argument("--n-fp", type=int, default=16, help="frames for the fingerprint timing")
    parser.add_argument("--no-cli", action="store_true", help="skip the end-to-end CLI timing")
    args = parser.parse_args()

    from ase.neighborlist import neighbor_list

    from cscli.screen.motifs import Catalogue, MotifSettings, analyze, tag_frame

    frames = make_frames(args.n)
    natoms = sum(len(a) for a in frames)
    settings = MotifSettings()
    print(f"{args.n} frames, {natoms} atoms ({natoms / args.n:.1f} per frame), 16 Li-P-S phases perturbed by 0.03 Å")
    analyze(frames[0], settings)  # imports, element tables

    with Clock() as nl:
        for a in frames:
            sub = a[[s != "Li" for s in a.get_chemical_symbols()]]
            if len(sub):
                neighbor_list("ijdS", sub, {("P", "S"): 2.35, ("S", "S"): 2.20, ("P", "P"): 2.50})
    print(f"baseline neighbor_list only      : {rate(args.n, nl)}")

    names = set()
    with Clock() as an:
        for a in frames:
            for m in analyze(a, settings):
                names.add(m.name)
    print(f"analyze (graph+units+hash+names) : {rate(args.n, an)}  = {an.cpu / nl.cpu:.1f} x baseline (CPU)")

    cat = Catalogue()
    with Clock() as full:
        for a in frames:
            motifs = analyze(a, settings)
            tag_frame(a, motifs, settings)
            cat.add(a.info["id"], motifs)
    print(f"analyze + tag + catalogue        : {rate(args.n, full)}")
    print(f"  {len(cat.records)} distinct motifs: {', '.join(sorted(names))}")

    if not args.no_cli:
        from cscli.core.frames import write_frames

        with tempfile.TemporaryDirectory() as tmp:
            for a in frames:
                for key in ("motifs", "motif_names", "motif_charge_balance"):
                    a.info.pop(key, None)
            src = os.path.join(tmp, "in.extxyz")
            write_frames(frames, src)
            env = dict(os.environ, PYTHONPATH=str(REPO))
            import resource

            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t = time.perf_counter()
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "cscli",
                    "motifs",
                    src,
                    "-o",
                    os.path.join(tmp, "out.extxyz"),
                    "-q",
                    "--catalogue",
                    os.path.join(tmp, "cat.jsonl"),
                ],
                check=True,
                env=env,
            )
            t_cli = time.perf_counter() - t
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
        print(
            f"CLI end to end (extxyz in/out)   : {args.n / t_cli:8.1f} frames/s wall, {args.n / cpu:8.1f} frames/s CPU "
            f"({t_cli:.1f} s wall, {cpu:.1f} s CPU incl. start-up)"
        )
        del proc

    from cscli.screen.fingerprints import structure_fingerprint

    fp_frames = make_frames(args.n_fp, seed=1)
    structure_fingerprint(fp_frames[0])  # imports
    for remove, label in ((("Li",), "Li removed"), ((), "all atoms ")):
        with Clock() as fp:
            for a in fp_frames:
                structure_fingerprint(a, remove=remove)
        n_sites = sum(sum(s not in remove for s in a.get_chemical_symbols()) for a in fp_frames)
        print(
            f"fingerprint ({label}, {args.n_fp} frames): {rate(args.n_fp, fp)}  "
            f"= {1e3 * fp.cpu / n_sites:.0f} CPU ms/site, {fp.cpu / args.n_fp / (an.cpu / args.n):.0f} x analyze"
        )


if __name__ == "__main__":
    main()
