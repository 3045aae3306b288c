"""Learning curve of DPA-3 or a fine-tuned SevenNet on Li-P-S: held-out energy/force RMSE vs number of training frames.

Data: the NequIP LiPS set (Li27P12S44, VASP-PBE; Batzner et al. 2022; 1000 frames in
``shared/data/lips_dft_frames/lips_nequip_batzner2022``). A fixed held-out test set is drawn first;
training frames come from a disjoint pool, chosen at random or by ``cscli.learn.entropy.entropy_select``
(information-entropy gain, the seed paper's data-efficiency claim) when that module is present.
Baselines measured in the same run: zero-shot CHGNet and SevenNet (7net-0) on the same test set.

Their energies are on the Materials Project scale (MP2020-compatible for CHGNet), not raw VASP
total energies, so energy RMSE is given raw and after removing the mean per-atom offset (the
offset is printed).

DPA-3 starts either from scratch (``scratch``: deepmd's wsd schedule at lr 1e-2, since a DPA-3 from
scratch needs a summed lr of ~1.5 before its forces move) or fine-tuned (``finetune``: the paper's
exponential 1e-3 -> 3e-5 schedule, ``dp --pt train --finetune``) from a pretrained checkpoint.
DPA-3.1-3M cannot be downloaded here, so ``--pretrain-steps N`` first trains a stand-in foundation
model on a *different* Li-P-S data set: LiPS20 (16 phases, 3000 K AIMD, another DFT code and
pseudopotentials; energies on another scale, which deepmd's fine-tune re-biases), or pass
``--init CHECKPOINT`` (e.g. DPA-3.1-3M.pt where it is available).

    python benchmarks/finetune_curve.py --sizes 10,30,100 --steps 1500 --pretrain-steps 3000 --json curve.json

``--backend sevennet`` fine-tunes a pretrained SevenNet instead (``--sevennet-init 7net-0``, the
weights ship in the sevenn wheel; ``--steps`` batches of ``--batch-size`` frames at ``--start-lr``),
with its per-element energy shift fitted first (``cscli finetune --backend sevennet``):

    python benchmarks/finetune_curve.py --backend sevennet --sizes 10,30 --steps 30 --batch-size 1 \
        --start-lr 1e-3 --test 20 --valid-frames 2 --selections random --json sevennet.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def lips_frames():
    from ase import Atoms

    from cscli.core.datafiles import shared_data_dir

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


def pretraining_frames(step: int = 5):
    """LiPS20 (EGraFFBench): the 16 phases' every-50 frames plus every ``step``-th frame of the two
    1000-frame trajectories (beta-Li3PS4, Li7P3S11)."""
    from ase import Atoms

    from cscli.core.datafiles import shared_data_dir
    from cscli.core.frames import read_frames

    base = shared_data_dir() / "lips_dft_frames/lips20_egraffbench"
    frames = []
    for path in sorted(base.glob("lips20_*_3000K_every50.extxyz")):
        frames += read_frames(str(path))
    for path in sorted(base.glob("lips20_*_full1000.npz")):
        d = np.load(path)
        symbols = [str(x) for x in np.ravel(d["symbols"])]
        for i in range(0, len(d["energy"]), step):
            a = Atoms(
                symbols=symbols,
                positions=np.asarray(d["coord"][i], float).reshape(-1, 3),
                cell=np.asarray(d["box"][i], float).reshape(3, 3),
                pbc=True,
            )
            a.info["energy"] = float(np.ravel(d["energy"][i])[0])
            a.arrays["forces"] = np.asarray(d["force"][i], float).reshape(-1, 3)
            a.info["virial_eV"] = [float(x) for x in np.ravel(d["virial"][i])]
            a.info["id"] = f"{path.stem}-{i}"
            a.info["phase"] = path.stem.split("_")[1]
            frames.append(a)
    return frames


def lips20_mixed_split(seed: int = 0, test_per_phase: int = 4):
    """An unbalanced candidate pool, the case entropy selection is for: most candidates come from two
    long trajectories (beta-Li3PS4, Li7P3S11), a few from each of the 14 other phases. The test set
    is balanced: 4 frames of every phase that are not in the pool (errors averaged over phases)."""
    from cscli.core.datafiles import shared_data_dir
    from cscli.core.frames import read_frames

    base = shared_data_dir() / "lips_dft_frames/lips20_egraffbench"
    rng = np.random.default_rng(seed)
    test, pool, valid = [], [], []
    long = {p.stem.split("_")[1] for p in base.glob("lips20_*_full1000.npz")}
    # trajectory frames; multiples of 50 are the every-50 files' frames, which may be test frames
    full = [
        a for a in pretraining_frames(step=3) if "full1000" in a.info["id"] and int(a.info["id"].rsplit("-", 1)[1]) % 50
    ]
    rng.shuffle(full)
    pool += full[:300]
    valid += full[300:306]
    for path in sorted(base.glob("lips20_*_3000K_every50.extxyz")):
        phase = path.stem.split("_")[1]
        frames = read_frames(str(path))[1:]  # frame 0 is the ideal crystal
        for a in frames:
            a.info["phase"] = phase
        idx = rng.permutation(len(frames))
        test += [frames[i] for i in idx[:test_per_phase]]
        if phase not in long:
            pool += [frames[i] for i in idx[4:10]]
    return test, pool, valid


def errors(calc, frames):
    """Held-out errors through ``cscli.learn.evaluate`` (the code behind ``cscli evaluate``)."""
    from cscli.learn.evaluate import evaluate_model

    def summary(subset):
        rep = evaluate_model(calc, subset, per_composition=False)["overall"]
        e = rep["energy_per_atom"]
        return {
            "rmse_e_meV_atom": 1e3 * e["rmse"],
            "rmse_e_shifted_meV_atom": 1e3 * e["std_error"],
            "e_offset_meV_atom": 1e3 * e["mean_error"],
            "rmse_f_eV_A": rep["forces"]["rmse"],
        }

    out = summary(frames)
    phases = [a.info.get("phase") for a in frames]
    if all(phases):  # balanced view: force RMSE of each phase, then their mean and worst
        per = {p: summary([a for a, q in zip(frames, phases) if q == p])["rmse_f_eV_A"] for p in sorted(set(phases))}
        out.update(
            {
                "rmse_f_per_phase": per,
                "rmse_f_phase_mean": float(np.mean(list(per.values()))),
                "rmse_f_phase_worst": max(per.values()),
            }
        )
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="20,40,80")
    ap.add_argument("--steps", type=int, default=300, help="training steps per model")
    ap.add_argument("--test", type=int, default=50, help="held-out test frames")
    ap.add_argument("--pool", type=int, default=300, help="candidate pool for selection")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument(
        "--data",
        choices=["nequip", "lips20-mixed"],
        default="nequip",
        help="nequip: one VASP-PBE trajectory; lips20-mixed: an unbalanced 16-phase pool",
    )
    ap.add_argument("--starts", default="scratch,finetune", help="scratch and/or finetune")
    ap.add_argument("--init", default=None, help="deepmd checkpoint to fine-tune from (else --pretrain-steps)")
    ap.add_argument(
        "--pretrain-steps",
        type=int,
        default=3000,
        help="steps of the stand-in foundation model on LiPS20 (when no --init)",
    )
    ap.add_argument("--baselines", default="chgnet,7net-0,7net-l3i5")
    ap.add_argument("--selections", default="random,entropy")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--backend",
        choices=["deepmd", "sevennet"],
        default="deepmd",
        help="sevennet: fine-tune a pretrained SevenNet (--sevennet-init) for --steps batches",
    )
    ap.add_argument("--sevennet-init", default="7net-0")
    ap.add_argument("--start-lr", type=float, default=None, help="sevennet: Adam lr (default: the backend's 4e-3)")
    ap.add_argument("--batch-size", type=int, default=None, help="sevennet: frames per batch (default 4)")
    ap.add_argument("--valid-frames", type=int, default=10, help="validation frames (nequip data)")
    ap.add_argument("--test-per-phase", type=int, default=4, help="lips20-mixed: test frames per phase")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    from cscli.core.log import configure
    from cscli.learn.finetune import backend_options, finetune

    configure("finetune_curve", quiet=True)
    from cscli.core.models import load_calculator
    from cscli.learn.finetune.deepmd import Schedule

    scratch = Schedule(steps=args.steps, start_lr=1e-2, stop_lr=1e-4, lr_schedule="wsd")
    paper = Schedule(steps=args.steps)  # exp 1e-3 -> 3e-5

    if args.data == "lips20-mixed":
        test, pool, valid = lips20_mixed_split(args.seed, args.test_per_phase)
        valid = valid[: args.valid_frames]
        label = (
            "LiPS20 (EGraFFBench, 3000 K AIMD), 16 phases; pool: 300 frames of beta-Li3PS4 and Li7P3S11 "
            "trajectories + 6 per other phase; test: 4 unseen frames per phase"
        )
    else:
        frames = lips_frames()
        rng = np.random.default_rng(args.seed)
        order = rng.permutation(len(frames))
        test = [frames[i] for i in order[: args.test]]
        pool = [frames[i] for i in order[args.test : args.test + args.pool]]
        valid = [frames[i] for i in order[args.test + args.pool : args.test + args.pool + args.valid_frames]]
        label = "NequIP LiPS Li27P12S44 (VASP-PBE), 83 atoms/frame"
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(args.workdir or tempfile.mkdtemp(prefix="finetune_curve_"))
    results = {
        "data": label,
        "n_test": len(test),
        "n_pool": len(pool),
        "steps": args.steps,
        "preset": args.preset,
        "init": args.init,
        "baselines": {},
        "curve": [],
    }
    starts = [s for s in args.starts.split(",") if s]
    if args.backend == "sevennet":
        starts = ["finetune"]
        results.update(backend="sevennet", init=args.sevennet_init, preset=None)
    init = args.init
    if "finetune" in starts and init is None and args.backend == "deepmd":
        pre = pretraining_frames()
        t0 = time.time()
        summary = finetune(
            pre,
            [],
            work / "pretrain",
            backend="deepmd",
            plot=False,
            schedule=Schedule(steps=args.pretrain_steps, start_lr=1e-2, stop_lr=1e-4, lr_schedule="wsd"),
            preset=args.preset,
            seed=args.seed,
            device="cpu",
        )
        init = summary["checkpoint"]
        res = errors(load_calculator(summary["model"], device="cpu"), test)
        res.update({"n_frames": len(pre), "steps": args.pretrain_steps, "train_seconds": time.time() - t0})
        results["pretrain"] = res
        print(
            f"stand-in foundation model (LiPS20, {len(pre)} frames, {args.pretrain_steps} steps, "
            f"{res['train_seconds']:.0f} s), zero-shot: E shifted {res['rmse_e_shifted_meV_atom']:.2f} meV/atom  "
            f"F {res['rmse_f_eV_A']:.3f} eV/Å",
            flush=True,
        )

    # reference point: predict the mean test energy per atom and zero forces (the data's own spread)
    e_pa = np.array([a.info["energy"] / len(a) for a in test])
    f_all = np.concatenate([a.arrays["forces"].ravel() for a in test])
    results["baselines"]["mean-predictor"] = {
        "rmse_e_shifted_meV_atom": 1e3 * float(np.std(e_pa)),
        "rmse_f_eV_A": float(np.sqrt(np.mean(f_all**2))),
    }
    print(
        f"mean predictor     : E shifted {1e3 * np.std(e_pa):.2f} meV/atom  F {np.sqrt(np.mean(f_all**2)):.3f} eV/Å (zero forces)"
    )
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
        print(
            f"zero-shot {name:8s}: E {res['rmse_e_meV_atom']:8.1f} meV/atom (shifted {res['rmse_e_shifted_meV_atom']:.2f}, "
            f"offset {res['e_offset_meV_atom']:.1f})  F {res['rmse_f_eV_A']:.3f} eV/Å",
            flush=True,
        )

    selections = [s for s in args.selections.split(",") if s]
    entropy_select = None
    if "entropy" in selections:
        try:
            from cscli.learn.entropy import entropy_select
        except ImportError:
            print("entropy selection skipped: cscli.learn.entropy is not installed in this checkout", file=sys.stderr)
            selections = [s for s in selections if s != "entropy"]
            results["note"] = "entropy selection skipped (cscli.learn.entropy absent); random only"
    chosen = {}
    for how in selections:
        for n in sizes:
            if how == "random":
                chosen[how, n] = [pool[i] for i in np.random.default_rng(args.seed + n).permutation(len(pool))[:n]]
            else:
                t0 = time.time()
                chosen[how, n], _ = entropy_select(pool, n=n, seed=args.seed)
                print(f"entropy-select {n} of {len(pool)} frames: {time.time() - t0:.1f} s", flush=True)
    for start in starts:
        for how in selections:
            for n in sizes:
                t0 = time.time()
                out = work / f"{start}-{how}-{n}"
                if args.backend == "sevennet":
                    opts = backend_options(
                        "sevennet",
                        init=args.sevennet_init,
                        steps=args.steps,
                        seed=args.seed,
                        start_lr=args.start_lr,
                        batch_size=args.batch_size,
                        device="cpu",
                    )
                    summary = finetune(chosen[how, n], valid, out, backend="sevennet", plot=False, **opts)
                else:
                    summary = finetune(
                        chosen[how, n],
                        valid,
                        out,
                        backend="deepmd",
                        plot=False,
                        schedule=scratch if start == "scratch" else paper,
                        preset=args.preset,
                        init=None if start == "scratch" else init,
                        seed=args.seed,
                        device="cpu",
                    )
                train_s = time.time() - t0
                res = errors(load_calculator(summary["model"], device="cpu"), test)
                res.update({"start": start, "selection": how, "n_train": n, "train_seconds": train_s})
                if args.backend == "sevennet":
                    res.update(
                        {
                            "model": args.sevennet_init,
                            "epochs": summary["epochs"],
                            "steps": summary["steps"],
                            "seconds_per_epoch": summary["seconds_per_epoch"],
                            "cpu_seconds_per_epoch": summary.get("cpu_seconds_per_epoch"),
                            "energy_shift_eV": summary["energy_shift"].get("per_element_eV"),
                        }
                    )
                if all(a.info.get("phase") for a in chosen[how, n]):
                    res["phases_in_training"] = len({a.info["phase"] for a in chosen[how, n]})
                results["curve"].append(res)
                name = f"{args.sevennet_init} fine-tuned" if args.backend == "sevennet" else f"DPA-3 {start:8s}"
                print(
                    f"{name} {how:7s} n={n:4d}: E shifted {res['rmse_e_shifted_meV_atom']:6.2f} meV/atom "
                    f"(raw {res['rmse_e_meV_atom']:7.2f})  F {res['rmse_f_eV_A']:.3f} eV/Å ({train_s:.0f} s training)"
                    + (
                        f"; phases {res['phases_in_training']}/16, F per phase mean {res['rmse_f_phase_mean']:.3f} "
                        f"worst {res['rmse_f_phase_worst']:.3f}"
                        if "rmse_f_phase_mean" in res
                        else ""
                    ),
                    flush=True,
                )
                if args.json:  # partial results survive an interrupted run
                    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
