"""Learning curve of DPA-3 on Li-P-S: held-out energy/force RMSE vs number of training frames.

Data: the NequIP LiPS set (Li27P12S44, VASP-PBE; Batzner et al. 2022; 1000 frames in
``shared/data/lips_dft_frames/lips_nequip_batzner2022``). A fixed held-out test set is drawn first;
training frames come from a disjoint pool, chosen at random or by ``cscli.entropy.entropy_select``
(information-entropy gain, the seed paper's data-efficiency claim) when that module is present.
Baselines measured in the same run: zero-shot CHGNet and SevenNet (7net-0) on the same test set.

Their energies are on the Materials Project scale (MP2020-compatible for CHGNet), not raw VASP
total energies, so energy RMSE is given raw and after removing the mean per-atom offset (the
offset is printed). DPA-3 is trained from scratch (DPA-3.1-3M weights are not available offline;
pass --init to fine-tune a checkpoint instead).

    python benchmarks/finetune_curve.py --sizes 20,40,80 --steps 300 --json curve.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def lips_frames():
    from ase import Atoms

    from cscli.datafiles import shared_data_dir

    base = shared_data_dir()
    if base is None:
        sys.exit("needs shared/data (CSCLI_SHARED_DATA)")
    d = np.load(base / "lips_dft_frames/lips_nequip_batzner2022/lips_val_1000frames_nequip.npz")
    cell = d["cell"].reshape(3, 3)
    frames = []
    for i in range(len(d["pos"])):
        a = Atoms(numbers=d["atomic_numbers"], positions=d["pos"][i], cell=cell, pbc=True)
        a.info["energy"] = float(np.ravel(d["energy"][i])[0])
        a.arrays["forces"] = np.asarray(d["forces"][i], dtype=float)
        a.info["id"] = f"lips-{i}"
        frames.append(a)
    return frames


def errors(calc, frames):
    de, df = [], []
    for atoms in frames:
        a = atoms.copy()
        a.calc = calc
        de.append((a.get_potential_energy() - atoms.info["energy"]) / len(a))
        df.append((a.get_forces() - atoms.arrays["forces"]).ravel())
    de = np.asarray(de)
    df = np.concatenate(df)
    return {
        "rmse_e_meV_atom": 1e3 * math.sqrt(np.mean(de**2)),
        "rmse_e_shifted_meV_atom": 1e3 * float(np.std(de)),
        "e_offset_meV_atom": 1e3 * float(np.mean(de)),
        "rmse_f_eV_A": math.sqrt(np.mean(df**2)),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="20,40,80")
    ap.add_argument("--steps", type=int, default=300, help="training steps per model")
    ap.add_argument("--test", type=int, default=50, help="held-out test frames")
    ap.add_argument("--pool", type=int, default=300, help="candidate pool for selection")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--init", default=None, help="deepmd checkpoint to fine-tune from (else from scratch)")
    ap.add_argument("--baselines", default="chgnet,7net-0")
    ap.add_argument("--selections", default="random,entropy")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    from cscli.finetune import finetune
    from cscli.finetune.deepmd import Schedule
    from cscli.models import load_calculator

    frames = lips_frames()
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(frames))
    test = [frames[i] for i in order[: args.test]]
    pool = [frames[i] for i in order[args.test: args.test + args.pool]]
    valid = [frames[i] for i in order[args.test + args.pool: args.test + args.pool + 10]]
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(args.workdir or tempfile.mkdtemp(prefix="finetune_curve_"))
    results = {"data": "NequIP LiPS Li27P12S44 (VASP-PBE), 83 atoms/frame", "n_test": len(test),
               "n_pool": len(pool), "steps": args.steps, "preset": args.preset, "init": args.init,
               "baselines": {}, "curve": []}

    # reference point: predict the mean test energy per atom and zero forces (the data's own spread)
    e_pa = np.array([a.info["energy"] / len(a) for a in test])
    f_all = np.concatenate([a.arrays["forces"].ravel() for a in test])
    results["baselines"]["mean-predictor"] = {"rmse_e_shifted_meV_atom": 1e3 * float(np.std(e_pa)),
                                              "rmse_f_eV_A": float(np.sqrt(np.mean(f_all**2)))}
    print(f"mean predictor     : E shifted {1e3 * np.std(e_pa):.2f} meV/atom  F {np.sqrt(np.mean(f_all**2)):.3f} eV/Å (zero forces)")
    for name in [b for b in args.baselines.split(",") if b]:
        t0 = time.time()
        try:
            calc = load_calculator(name, device="cpu")
        except Exception as exc:  # a missing model is reported, not fatal
            print(f"baseline {name}: unavailable ({exc})", file=sys.stderr)
            continue
        res = errors(calc, test)
        res["seconds"] = time.time() - t0
        results["baselines"][name] = res
        print(f"zero-shot {name:8s}: E {res['rmse_e_meV_atom']:8.1f} meV/atom (shifted {res['rmse_e_shifted_meV_atom']:.2f}, "
              f"offset {res['e_offset_meV_atom']:.1f})  F {res['rmse_f_eV_A']:.3f} eV/Å", flush=True)

    selections = [s for s in args.selections.split(",") if s]
    entropy_select = None
    if "entropy" in selections:
        try:
            from cscli.entropy import entropy_select
        except ImportError:
            print("entropy selection skipped: cscli.entropy is not installed in this checkout", file=sys.stderr)
            selections = [s for s in selections if s != "entropy"]
            results["note"] = "entropy selection skipped (cscli.entropy absent); random only"
    for how in selections:
        for n in sizes:
            if how == "random":
                train = [pool[i] for i in np.random.default_rng(args.seed + n).permutation(len(pool))[:n]]
            else:
                train, _ = entropy_select(pool, n=n, seed=args.seed)
            t0 = time.time()
            out = work / f"{how}-{n}"
            summary = finetune(train, valid, out, backend="deepmd", quiet=True,
                               schedule=Schedule(steps=args.steps), preset=args.preset, init=args.init,
                               seed=args.seed, device="cpu")
            train_s = time.time() - t0
            res = errors(load_calculator(summary["model"], device="cpu"), test)
            res.update({"selection": how, "n_train": n, "train_seconds": train_s})
            results["curve"].append(res)
            print(f"DPA-3 {how:7s} n={n:4d}: E {res['rmse_e_meV_atom']:8.2f} meV/atom  F {res['rmse_f_eV_A']:.3f} eV/Å "
                  f"({train_s:.0f} s training)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
