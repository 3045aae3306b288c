"""cscli relax vs the same model driven by a bare ASE loop, on the same frames.

Both sides run FIRE + FrechetCellFilter for exactly --steps steps (fmax=1e-9 so none stops early)
with one model object; cscli adds frame checks, result bookkeeping and a flushed extxyz write per
frame. Prints the overhead ratio (goal < 5 %) and frames/hour, and the whole-CLI wall time
(start-up and model load included) for the same work.

    python benchmarks/relax_overhead.py [--frames 8] [--steps 25] [--model 7net-0] [--repeats 3]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ase.filters import FrechetCellFilter
from ase.optimize import FIRE

from cscli.core.datafiles import reference_phases_path
from cscli.core.frames import read_frames, write_frames
from cscli.core.models import load_calculator
from cscli.core.stream import StreamOptions, run_stream
from cscli.explore.perturb import perturb_frame
from cscli.explore.relax import relax_atoms

p = argparse.ArgumentParser()
p.add_argument("--frames", type=int, default=8)
p.add_argument("--steps", type=int, default=25)
p.add_argument("--model", default="7net-0")
p.add_argument("--phase", default="gamma-Li3PS4")
p.add_argument("--repeats", type=int, default=3)
args = p.parse_args()

ref = next(a for a in read_frames(str(reference_phases_path())) if a.info["phase"] == args.phase)
frames = perturb_frame(ref, args.frames, seed=0, sigma_rel=(0.02, 0.03), strain=(0.01, 0.02))
calc = load_calculator(args.model, "cpu")
calc.get_potential_energy(frames[0])  # warm-up (JIT, caches) outside both timings


def bare():
    for atoms in frames:
        work = atoms.copy()
        work.calc = calc
        FIRE(FrechetCellFilter(work), logfile=None).run(fmax=1e-9, steps=args.steps)
        work.get_potential_energy()


def ours(out):
    opts = StreamOptions(output=out, resume=False, quiet=True)
    run_stream(iter(frames), lambda a: relax_atoms(a, calc, fmax=1e-9, steps=args.steps), opts)


with tempfile.TemporaryDirectory() as tmp:
    t_bare, t_ours = [], []
    for r in range(args.repeats):  # interleaved, best of N: robust to other load on the machine
        t0 = time.perf_counter()
        bare()
        t_bare.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ours(os.path.join(tmp, f"o{r}.extxyz"))
        t_ours.append(time.perf_counter() - t0)
    src = Path(tmp) / "in.extxyz"
    write_frames(frames, str(src))
    t0 = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "cscli",
            "relax",
            str(src),
            "-o",
            str(Path(tmp) / "cli.extxyz"),
            "--model",
            args.model,
            "--fmax",
            "1e-9",
            "--steps",
            str(args.steps),
            "-q",
            "--device",
            "cpu",
        ],
        check=True,
    )
    t_cli = time.perf_counter() - t0

b, o = min(t_bare), min(t_ours)
n_atoms = len(ref)
print(
    f"model {args.model}, {args.frames} frames x {n_atoms} atoms ({args.phase}), {args.steps} FIRE steps each, best of {args.repeats}"
)
print(f"bare ASE loop      {b:8.2f} s   {3600 * args.frames / b:9.0f} frames/h")
print(f"cscli relax (lib)  {o:8.2f} s   {3600 * args.frames / o:9.0f} frames/h")
print(f"overhead ratio     {o / b:8.3f}   ({100 * (o / b - 1):+.1f} %, goal < 5 %)")
print(f"cscli relax (CLI, incl. start-up + model load) {t_cli:.2f} s for the same work")
