"""Benchmark: the shipped Li–P–S density model against GPAW on held-out structures.

For each structure (default: γ-Li3PS4 and Li2PS3-hex, the phases held out of the shipped
model's training) in one run:

1. GPAW SCF with ``cscli label -c gpaw --density-dir`` (same settings as the training data:
   PW 300 eV, k-points 2 per Å⁻¹, Fermi–Dirac 0.1 eV) — timed;
2. ``cscli.props.density`` prediction of the full GPAW grid with the shipped model, as ``cscli
   density predict`` runs it (``Predictor.predict_grid``) — CPU time, median of ``--repeats``
   calls; the exact e3nn network on the same points for reference;
3. NMAE = Σ|Δρ|/Σ|ρ| of the model and of the superposition of free GPAW atoms
   (tests/data/density/free_atoms.json) on the same grid; probe points per second.

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python benchmarks/density.py [--ids gamma-Li3PS4 Li2PS3-hex] [--json out.json]

Edge-chunk size of the fast path (no GPAW; predict_grid on γ-Li3PS4's GPAW grid):

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python benchmarks/density.py --chunk-sizes 2048 4096 8192 16384 32768 --repeats 7

**Fine-tuning curve** (the paper's SI Fig. 6e) with ``--finetune DUMPS``: GPAW densities of one
target phase the shipped model never saw, written by ``scripts/gpaw_density_frames.py --phase``
(same settings as the training data): ``<target>`` and ``<target>-t<i>`` are the test frames,
``<target>-f<i>`` the fine-tuning pool. For N in ``--sizes`` the shipped model is fine-tuned
(``density train --init``) on the first N pool frames for ``--steps`` steps (same steps for every
N; monitored on the training frames only) and its NMAE over every grid point of the test frames
is reported, against the free-atom superposition and the model before fine-tuning (N = 0):

    OMP_NUM_THREADS=1 /usr/bin/python3 scripts/gpaw_density_frames.py DUMPS --phase gamma-Li3PS4 --copies 2 --tag t --seed 1401 --with-ideal
    OMP_NUM_THREADS=1 /usr/bin/python3 scripts/gpaw_density_frames.py DUMPS --phase gamma-Li3PS4 --copies 34 --tag f --seed 1402
    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python benchmarks/density.py --finetune DUMPS --target gamma-Li3PS4 \
        --sizes 0 5 10 20 --steps 300 --json ft300.json
    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python benchmarks/density.py --finetune DUMPS --target gamma-Li3PS4 \
        --sizes 0 5 10 20 --steps 2000 --lr 2e-3 --json ft.json --also ft300.json --plot docs/img/density_finetune.png

(docs/density.md has the curve at 0, 5, 10, 20 and 34 frames.)
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
    ap.add_argument("--repeats", type=int, default=5, help="timed prediction calls (the median is reported)")
    ap.add_argument("--finetune", default=None, metavar="DUMPS", help="fine-tuning curve on these GPAW dumps")
    ap.add_argument("--target", default="gamma-Li3PS4")
    ap.add_argument("--sizes", nargs="*", type=int, default=[0, 5, 10, 20, 34])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--final-lr", type=float, default=3e-5)
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--plot", default=None)
    ap.add_argument("--also", nargs="*", default=[], metavar="JSON", help="earlier --finetune --json runs to plot too")
    ap.add_argument(
        "--chunk-sizes",
        nargs="*",
        type=int,
        default=None,
        metavar="N",
        help="no GPAW: CPU time of predict_grid per edge-chunk size on the first --ids structure's --grid",
    )
    ap.add_argument(
        "--grid", nargs=3, type=int, default=[25, 27, 32], help="grid for --chunk-sizes (GPAW's for γ-Li3PS4)"
    )
    args = ap.parse_args()
    if args.finetune:
        return finetune_curve(args)
    if args.chunk_sizes:
        return chunk_sizes(args)
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
        shape = dft.values.shape
        pred.predict_grid(dft.atoms, shape)  # warm-up (first-call set-up of torch kernels)
        # what `cscli density predict` runs (Predictor.predict_grid, the fast path): the first timed
        # call, then the median of --repeats calls (CPU time; the machine is shared)
        t0, c0 = time.time(), time.process_time()
        rho = pred.predict_grid(dft.atoms, shape)
        t_pred, cpu_first = time.time() - t0, time.process_time() - c0
        cpus = [cpu_first]
        for _ in range(args.repeats - 1):
            c0 = time.process_time()
            pred.predict_grid(dft.atoms, shape)
            cpus.append(time.process_time() - c0)
        cpu_pred = float(np.median(cpus))
        c0 = time.process_time()
        exact = pred.predict(dft.atoms, pts, exact=True)  # the e3nn network itself, for reference
        cpu_exact = time.process_time() - c0
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
            "predict_cpu_s_all": cpus,
            "exact_network_cpu_s": cpu_exact,
            "fast_vs_exact_max_abs_diff_over_peak": float(np.abs(rho - exact).max() / np.abs(exact).max()),
            "cpu_speedup": cpu_gpaw / max(cpu_pred, 1e-9),
            "points_per_s": len(vals) / t_pred,
            "points_per_cpu_s": len(vals) / max(cpu_pred, 1e-9),
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
            f"CPU time GPAW {cpu_gpaw:.1f} s vs prediction {cpu_pred:.3f} s (median of {len(cpus)}; "
            f"{row['cpu_speedup']:.0f}x, {row['points_per_cpu_s']:.0f} points per CPU s; exact e3nn network "
            f"{cpu_exact:.2f} s, max |fast - exact| {row['fast_vs_exact_max_abs_diff_over_peak']:.1e} of the peak)",
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


def chunk_sizes(args):
    """CPU s of ``Predictor.predict_grid`` per edge-chunk size, interleaved, median of --repeats."""
    from ase.io import read

    from cscli.props.density.model import Predictor, load_model

    refs = {a.info["id"]: a for a in read(REPO / "cscli" / "data" / "lips_reference_phases.extxyz", ":")}
    atoms = refs[f"ref-{args.ids[0]}"]
    pred = Predictor(load_model(args.model)[0])
    times = {n: [] for n in args.chunk_sizes}
    for n in args.chunk_sizes:
        pred.predict_grid(atoms, args.grid, edge_chunk=n)
    for _ in range(args.repeats):
        for n in args.chunk_sizes:
            c0 = time.process_time()
            pred.predict_grid(atoms, args.grid, edge_chunk=n)
            times[n].append(time.process_time() - c0)
    for n, t in times.items():
        print(
            f"{args.ids[0]} grid {'x'.join(map(str, args.grid))}: edge chunk {n:8d}: {np.median(t):.3f} CPU s",
            flush=True,
        )


def _pool_index(name: str, target: str, tag: str):
    rest = name[len(target) + 1 :] if name.startswith(target + "-") else ""
    return int(rest[1:]) if rest[:1] == tag and rest[1:].isdigit() else None


def finetune_curve(args):
    """NMAE on held-out frames of ``args.target`` vs the number of fine-tuning frames."""
    import glob

    from cscli.core.log import configure
    from cscli.props.density import io
    from cscli.props.density import predict as P
    from cscli.props.density import train as T

    configure("bench-density", quiet=True)
    dens = [io.read_gpaw_dump(f) for f in sorted(glob.glob(os.path.join(args.finetune, "*.json")))]
    test = [d for d in dens if d.name == args.target or _pool_index(d.name, args.target, "t") is not None]
    pool = sorted(
        (d for d in dens if _pool_index(d.name, args.target, "f") is not None),
        key=lambda d: _pool_index(d.name, args.target, "f"),
    )
    if not test:
        sys.exit(f"no test frames of {args.target} in {args.finetune}")
    sizes = [n for n in args.sizes if n <= len(pool)]
    if len(sizes) < len(args.sizes):
        print(f"only {len(pool)} fine-tuning frames: sizes {sizes}", flush=True)
    table = json.loads((REPO / "tests" / "data" / "density" / "free_atoms.json").read_text())["atoms"]
    radial = {s: (np.asarray(v["r"]), np.asarray(v["rho"])) for s, v in table.items()}
    work = Path(args.work or tempfile.mkdtemp(prefix="cscli-density-ft-"))
    rows = []
    for n in sizes:
        c0, t0 = time.process_time(), time.time()
        if n == 0:
            model = args.model
        else:
            settings = T.TrainSettings(
                steps=args.steps,
                lr=args.lr,
                final_lr=args.final_lr,
                probes=300,
                structures_per_step=2,
                valid_fraction=0.0,
                eval_every=max(args.steps // 3, 1),
                eval_points=5000,
                seed=args.seed,
                resume=True,
            )
            T.train(pool[:n], work / f"n{n}", settings, init=args.model, plot=False)
            model = str(work / f"n{n}" / "model.pt")
        cpu_train = time.process_time() - c0
        report = P.test_model(model, test, baseline=radial)
        row = {
            "n_frames": n,
            "nmae": report["nmae"],
            "nmae_free_atoms": report.get("baseline_nmae"),
            "per_structure": {r["name"]: r["nmae"] for r in report["structures"]},
            "train_cpu_s": cpu_train,
            "train_wall_s": time.time() - t0,
        }
        rows.append(row)
        print(
            f"N = {n:2d} fine-tuning frames: NMAE {100 * row['nmae']:.2f} % on {len(test)} held-out {args.target} "
            f"frames (free atoms {100 * row['nmae_free_atoms']:.2f} %); fine-tune {cpu_train:.0f} s CPU",
            flush=True,
        )
    out = {
        "target": args.target,
        "test_frames": [d.name for d in test],
        "pool": [d.name for d in pool],
        "steps": args.steps,
        "lr": [args.lr, args.final_lr],
        "model": args.model,
        "rows": rows,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(4.6, 3.4))
        for run in [json.loads(Path(f).read_text()) for f in args.also] + [out]:
            ns = [r["n_frames"] for r in run["rows"]]
            label = f"shipped model fine-tuned, {run['steps']} steps"
            ax.plot(ns, [100 * r["nmae"] for r in run["rows"]], "o-", label=label)
        ax.axhline(100 * rows[0]["nmae_free_atoms"], ls="--", c="gray", label="free-atom superposition")
        ax.set_xlabel(f"fine-tuning frames of {args.target}")
        ax.set_ylabel("NMAE on held-out frames (%)")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        plt.close(fig)
    return out


if __name__ == "__main__":
    main()
