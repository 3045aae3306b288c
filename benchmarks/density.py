"""Benchmark: the shipped Li–P–S density model against GPAW on held-out structures.

For each structure (default: γ-Li3PS4 and Li2PS3-hex, the phases held out of the shipped
model's training) in one run:

1. GPAW SCF with ``cscli label -c gpaw --density-dir`` (same settings as the training data:
   PW 300 eV, k-points 2 per Å⁻¹, Fermi–Dirac 0.1 eV) — timed;
2. ``cscli.props.density`` prediction of the full GPAW grid with the shipped model — timed;
3. NMAE = Σ|Δρ|/Σ|ρ| of the model and of the superposition of free GPAW atoms
   (tests/data/density/free_atoms.json) on the same grid; probe points per second.

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python benchmarks/density.py [--ids gamma-Li3PS4 Li2PS3-hex] [--json out.json]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main():
    from ase.io import read, write

    from cscli.props.density import io
    from cscli.props.density import predict as P
    from cscli.props.density.model import Predictor, load_model

    ap = argparse.ArgumentParser()
    ap.add_argument("--ids", nargs="*", default=["gamma-Li3PS4", "Li2PS3-hex"])
    ap.add_argument("--model", default=str(P.default_model_path()))
    ap.add_argument("--json", default=None)
    ap.add_argument("--work", default=None)
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="cscli-density-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    refs = {a.info["id"]: a for a in read(REPO / "cscli" / "data" / "lips_reference_phases.extxyz", ":")}
    table = json.loads((REPO / "tests" / "data" / "density" / "free_atoms.json").read_text())["atoms"]
    radial = {s: (np.asarray(v["r"]), np.asarray(v["rho"])) for s, v in table.items()}
    net, meta = load_model(args.model)
    pred = Predictor(net)
    rows = []
    for rid in args.ids:
        atoms = refs[f"ref-{rid}"]
        frames = work / f"{rid}.extxyz"
        write(frames, atoms)
        env = dict(os.environ, PYTHONPATH=str(REPO))
        t0, c0 = time.time(), resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "cscli",
                "label",
                "-c",
                "gpaw",
                str(frames),
                "--ecut",
                "300",
                "--kpt-density",
                "2",
                "--width",
                "0.1",
                "--density-dir",
                str(work / "dens"),
                "-o",
                str(work / f"{rid}.labelled.extxyz"),
                "-q",
            ],
            check=True,
            env=env,
        )
        t_gpaw = time.time() - t0
        c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_gpaw = (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)  # label + GPAW worker processes
        dft = io.read_chgcar(work / "dens" / f"ref-{rid}.CHGCAR")
        pts, vals = dft.all_points()
        pred.predict(dft.atoms, pts[:100])  # warm-up (first-call set-up of e3nn's compiled kernels)
        t0, c0 = time.time(), time.process_time()
        rho = pred.predict(dft.atoms, pts)
        t_pred, cpu_pred = time.time() - t0, time.process_time() - c0
        base = P.superposition_baseline(dft, radial)
        row = {
            "id": rid,
            "n_atoms": len(atoms),
            "grid": list(dft.values.shape),
            "n_points": int(len(vals)),
            "gpaw_scf_s": t_gpaw,
            "predict_s": t_pred,
            "speedup": t_gpaw / t_pred,
            "gpaw_cpu_s": cpu_gpaw,
            "predict_cpu_s": cpu_pred,
            "cpu_speedup": cpu_gpaw / max(cpu_pred, 1e-9),
            "points_per_s": len(vals) / t_pred,
            "nmae_model": float(np.abs(rho - vals).sum() / np.abs(vals).sum()),
            "nmae_free_atoms": float(np.abs(base - vals).sum() / np.abs(vals).sum()),
            "electrons_dft": dft.electrons(),
            "electrons_model": float(rho.mean() * dft.volume),
        }
        rows.append(row)
        print(
            f"{rid:14s} {len(atoms):3d} atoms grid {'x'.join(map(str, row['grid']))}: NMAE model "
            f"{100 * row['nmae_model']:.2f} % vs free atoms {100 * row['nmae_free_atoms']:.2f} % "
            f"(ratio {row['nmae_free_atoms'] / row['nmae_model']:.1f}x); GPAW SCF {t_gpaw:.1f} s, "
            f"prediction {t_pred:.2f} s ({row['speedup']:.0f}x faster, {row['points_per_s']:.0f} points/s); "
            f"CPU time GPAW {cpu_gpaw:.1f} s vs prediction {cpu_pred:.2f} s ({row['cpu_speedup']:.0f}x)",
            flush=True,
        )
    out = {
        "model": args.model,
        "model_meta": {k: meta.get(k) for k in ("trained_on", "valid_nmae")},
        "rows": rows,
        "threads": os.environ.get("OMP_NUM_THREADS"),
    }
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
