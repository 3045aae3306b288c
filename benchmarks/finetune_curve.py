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

    python benchmarks/finetune_curve.py --backend sevennet --sizes 10,30,100 --epochs 3,2,1 --batch-size 1 \
        --start-lr 1e-3 --test 20 --valid-frames 2 --selections random --test-sets nequip,lips20,petmad \
        --test-per-phase 1 --json sevennet.json

Every model is also evaluated on the held-out sets named by ``--test-sets`` (``TEST_SETS``: the NequIP
trajectory, 16 LiPS20 phases from another code, PET-MAD's PBEsol Li3PS4 cells); energies of another
code or functional are compared after a per-element offset fitted on the test frames. The run ends
with a markdown table (docs/finetune.md); ``--table A.json B.json`` reprints the merged table of
earlier runs.
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


def lips20_test_frames(per_phase: int, seed: int = 0):
    """LiPS20 test frames: ``per_phase`` frames of each of the 16 phases, drawn as in
    :func:`lips20_mixed_split` (the same frames are its test set; never in its pool)."""
    from cscli.core.datafiles import shared_data_dir
    from cscli.core.frames import read_frames

    base = shared_data_dir() / "lips_dft_frames/lips20_egraffbench"
    rng = np.random.default_rng(seed)
    test = []
    for path in sorted(base.glob("lips20_*_3000K_every50.extxyz")):
        phase = path.stem.split("_")[1]
        frames = read_frames(str(path))[1:]
        for a in frames:
            a.info["phase"] = phase
        test += [frames[i] for i in rng.permutation(len(frames))[:per_phase]]
    return test


def petmad_test_frames():
    """The 10 test frames of the PET-MAD workshop Li3PS4 set (alpha/beta/gamma-like cells, 16 and 32
    atoms; PBEsol, the functional of PET-MAD's training data)."""
    from cscli.core.datafiles import shared_data_dir
    from cscli.core.frames import read_frames

    path = shared_data_dir() / "lips_dft_frames/petmad_workshop_Li3PS4/petmad_workshop_Li3PS4_test.extxyz"
    frames = read_frames(str(path))
    for a in frames:
        a.info["phase"] = f"Li3PS4-{len(a)}at"
    return frames


TEST_SETS = {
    "nequip": "NequIP LiPS Li27P12S44, VASP-PBE, held out from the same trajectory as the nequip pool",
    "lips20": "LiPS20 (EGraFFBench), 16 Li-P-S phases, 3000 K AIMD, another code (GTH-type energy scale)",
    "petmad": "PET-MAD workshop Li3PS4 test split (alpha/beta/gamma-like cells), PBEsol",
}


def errors(calc, frames):
    """Held-out errors: energy per atom raw, with the mean offset removed (``shifted``) and with a
    per-element offset fitted on these frames removed (``elem``; the labels of another code or
    functional sit on another per-element scale), force RMSE over all components, and for frames
    with ``info['phase']`` the force RMSE per phase (mean and worst). Predictions and labels through
    ``cscli.learn.evaluate`` (the code behind ``cscli evaluate``)."""
    from cscli.learn.evaluate import labels, predict
    from cscli.learn.finetune.sevennet import composition_matrix, fit_element_shift

    e_lab, e_pred, f_sq, f_n = [], [], [], []
    for a in frames:
        lab, pred = labels(a), predict(calc, a, ("energy", "forces"))
        e_lab.append(lab["energy"])
        e_pred.append(pred["energy"])
        d = pred["forces"] - lab["forces"]
        f_sq.append(float((d**2).sum()))
        f_n.append(d.size)
    e_lab, e_pred = np.array(e_lab), np.array(e_pred)
    natoms = np.array([len(a) for a in frames], dtype=float)
    err = (e_pred - e_lab) / natoms
    elements = sorted({s for a in frames for s in a.get_chemical_symbols()})
    counts = composition_matrix(frames, elements)
    delta, rank = fit_element_shift(counts, e_lab - e_pred)
    err_elem = (e_pred + counts @ delta - e_lab) / natoms
    f_sq, f_n = np.array(f_sq), np.array(f_n)
    out = {
        "n_frames": len(frames),
        "rmse_e_meV_atom": 1e3 * float(np.sqrt(np.mean(err**2))),
        "rmse_e_shifted_meV_atom": 1e3 * float(np.std(err)),
        "e_offset_meV_atom": 1e3 * float(np.mean(err)),
        "rmse_e_elem_meV_atom": 1e3 * float(np.sqrt(np.mean(err_elem**2))),
        "elem_shift_rank": rank,
        "rmse_f_eV_A": float(np.sqrt(f_sq.sum() / f_n.sum())),
    }
    phases = [a.info.get("phase") for a in frames]
    if all(phases):  # balanced view: force RMSE of each phase, then their mean and worst
        per = {}
        for p in sorted(set(phases)):
            idx = [i for i, q in enumerate(phases) if q == p]
            per[p] = float(np.sqrt(f_sq[idx].sum() / f_n[idx].sum()))
        out.update(
            {
                "rmse_f_per_phase": per,
                "rmse_f_phase_mean": float(np.mean(list(per.values()))),
                "rmse_f_phase_worst": max(per.values()),
            }
        )
    return out


def all_errors(calc, tests: dict) -> dict:
    return {name: errors(calc, frames) for name, frames in tests.items()}


def _line(res: dict) -> str:
    """One test set's figures: energy raw / offset removed (meV/atom), force RMSE (meV/Å)."""
    text = (
        f"E {res['rmse_e_meV_atom']:8.1f} (shifted {res['rmse_e_shifted_meV_atom']:5.2f}, per-element "
        f"{res['rmse_e_elem_meV_atom']:5.2f}) meV/atom  F {1e3 * res['rmse_f_eV_A']:5.1f} meV/Å"
    )
    if "rmse_f_phase_mean" in res:
        text += f" (phase mean {1e3 * res['rmse_f_phase_mean']:.1f}, worst {1e3 * res['rmse_f_phase_worst']:.1f})"
    return text


def print_errors(name: str, res: dict) -> None:
    for k, (test, r) in enumerate(res.items()):
        print(f"{name if k == 0 else '':28s} [{test:6s}] {_line(r)}", flush=True)


def markdown_table(results: dict) -> str:
    """The run as a markdown table: one row per model, per test set ``E raw / E per-element-shifted
    (meV/atom), F (meV/Å)``; for sets of more than two phases the force column is the mean over phases."""
    names = list(results["test_sets"])
    head = "| model | frames | " + " | ".join(f"{n}: E raw / elem (meV/atom), F (meV/Å)" for n in names)
    lines = [head + " | CPU s/frame-epoch |", "|" + "---|" * (len(names) + 3)]

    def cells(tests):
        out = []
        for n in names:
            r = tests.get(n)
            if r is None:
                out.append("–")
                continue
            # the phase mean where the set spans several phases, else all force components
            f = r["rmse_f_phase_mean"] if len(r.get("rmse_f_per_phase", ())) > 2 else r["rmse_f_eV_A"]
            out.append(f"{r['rmse_e_meV_atom']:.1f} / {r['rmse_e_elem_meV_atom']:.2f}, {1e3 * f:.0f}")
        return " | ".join(out)

    for name, r in results["baselines"].items():
        if "tests" in r:
            lines.append(f"| {name} zero-shot | – | {cells(r['tests'])} | – |")
    for r in results["curve"]:
        model = r.get("model", f"DPA-3 {r['start']}")
        per = r.get("cpu_seconds_per_frame_epoch")
        lines.append(
            f"| {model}, {r['selection']}, {r.get('epochs', '')} ep | {r['n_train']} | {cells(r['tests'])} | "
            + (f"{per:.2f} |" if per else "– |")
        )
    return "\n".join(lines)


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (deepmd trains in a subprocess)."""
    import resource

    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + child.ru_utime + child.ru_stime


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
    ap.add_argument(
        "--start-lr",
        type=float,
        default=None,
        help="sevennet: Adam lr (default: the backend's, sevennet.DEFAULTS: 1e-3)",
    )
    ap.add_argument(
        "--batch-size", type=int, default=None, help="sevennet: frames per batch (default: the backend's 4)"
    )
    ap.add_argument("--valid-frames", type=int, default=10, help="validation frames (nequip data)")
    ap.add_argument("--test-per-phase", type=int, default=4, help="lips20 test set: frames per phase")
    ap.add_argument(
        "--test-sets",
        default="",
        help="extra held-out sets besides the --data one, comma-separated: nequip, lips20, petmad "
        "(every model is evaluated on each; see TEST_SETS)",
    )
    ap.add_argument(
        "--epochs",
        default=None,
        help="sevennet: epochs per model, one number or one per --sizes entry (instead of --steps)",
    )
    ap.add_argument("--stop-lr", type=float, default=None, help="sevennet: final lr (exp/wsd schedules)")
    ap.add_argument("--lr-schedule", default=None, help="sevennet: exp, wsd or constant")
    ap.add_argument("--loss-weights", default=None, help="sevennet: energy:force:stress loss weights")
    ap.add_argument(
        "--selection-seeds",
        default=None,
        help="seeds of the random selections (default: --seed); the pool and test sets stay those of --seed",
    )
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument(
        "--table",
        nargs="+",
        default=None,
        metavar="JSON",
        help="print the markdown table of earlier runs' --json files (merged) and exit",
    )
    args = ap.parse_args(argv)
    if args.table:
        runs = [json.loads(Path(p).read_text()) for p in args.table]
        merged = {"test_sets": runs[0]["test_sets"], "baselines": {}, "curve": []}
        for r in runs:
            merged["baselines"].update(r["baselines"])
            merged["curve"] += r["curve"]
        print(markdown_table(merged))
        return merged

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
            f"trajectories + 6 per other phase; test: {args.test_per_phase} unseen frames per phase"
        )
        main_test = "lips20"
    else:
        frames = lips_frames()
        rng = np.random.default_rng(args.seed)
        order = rng.permutation(len(frames))
        test = [frames[i] for i in order[: args.test]]
        pool = [frames[i] for i in order[args.test : args.test + args.pool]]
        valid = [frames[i] for i in order[args.test + args.pool : args.test + args.pool + args.valid_frames]]
        label = "NequIP LiPS Li27P12S44 (VASP-PBE), 83 atoms/frame"
        main_test = "nequip"
    tests = {main_test: test}
    for name in [t for t in args.test_sets.split(",") if t and t != main_test]:
        if name == "nequip":
            frames = lips_frames()
            tests[name] = [frames[i] for i in np.random.default_rng(args.seed).permutation(len(frames))[: args.test]]
        elif name == "lips20":
            tests[name] = lips20_test_frames(args.test_per_phase, args.seed)
        elif name == "petmad":
            tests[name] = petmad_test_frames()
        else:
            sys.exit(f"unknown test set {name!r}; choose from {', '.join(TEST_SETS)}")
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(args.workdir or tempfile.mkdtemp(prefix="finetune_curve_"))
    results = {
        "data": label,
        "n_test": len(test),
        "n_pool": len(pool),
        "steps": args.steps,
        "preset": args.preset,
        "init": args.init,
        "test_sets": {k: {"n_frames": len(v), "about": TEST_SETS[k]} for k, v in tests.items()},
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
        every = all_errors(calc, tests)
        res = dict(every[main_test], tests=every, seconds=time.time() - t0)
        results["baselines"][name] = res
        print_errors(f"zero-shot {name}", every)

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
    seeds = [int(x) for x in args.selection_seeds.split(",")] if args.selection_seeds else [args.seed]
    runs = []  # (selection label, n, training seed)
    for how in selections:
        for n in sizes:
            if how == "random":
                for sd in seeds:
                    lab = "random" if len(seeds) == 1 else f"random{sd}"
                    chosen[lab, n] = [pool[i] for i in np.random.default_rng(sd + n).permutation(len(pool))[:n]]
                    runs.append((lab, n, sd))
            else:
                runs.append((how, n, args.seed))
                t0 = time.time()
                chosen[how, n], _ = entropy_select(pool, n=n, seed=args.seed)
                print(f"entropy-select {n} of {len(pool)} frames: {time.time() - t0:.1f} s", flush=True)
    if args.epochs is not None:
        ep = [float(x) for x in str(args.epochs).split(",")]
        epochs_of = dict(zip(sizes, ep if len(ep) == len(sizes) else ep * len(sizes)))
    for start in starts:
        for how, n, run_seed in runs:
            t0, c0 = time.time(), cpu_seconds()
            out = work / f"{start}-{how}-{n}"
            if args.backend == "sevennet":
                opts = backend_options(
                    "sevennet",
                    init=args.sevennet_init,
                    steps=None if args.epochs is not None else args.steps,
                    epochs=epochs_of[n] if args.epochs is not None else None,
                    seed=run_seed,
                    start_lr=args.start_lr,
                    stop_lr=args.stop_lr,
                    lr_schedule=args.lr_schedule,
                    loss_weights=args.loss_weights,
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
            train_s, train_cpu = time.time() - t0, cpu_seconds() - c0
            every = all_errors(load_calculator(summary["model"], device="cpu"), tests)
            res = dict(every[main_test], tests=every)
            res.update(
                {
                    "start": start,
                    "selection": how,
                    "n_train": n,
                    "seed": run_seed,
                    "train_seconds": train_s,
                    "train_cpu_seconds": train_cpu,
                }
            )
            if args.backend == "sevennet":
                res.update(
                    {
                        "model": args.sevennet_init,
                        "epochs": summary["epochs"],
                        "steps": summary["steps"],
                        "seconds_per_epoch": summary["seconds_per_epoch"],
                        "cpu_seconds_per_epoch": summary.get("cpu_seconds_per_epoch"),
                        # CPU seconds per frame seen in training (one frame, one epoch)
                        "cpu_seconds_per_frame_epoch": summary.get("cpu_seconds_per_epoch") / n,
                        "lr": [args.start_lr, args.stop_lr, args.lr_schedule],
                        "batch_size": summary["batch_size"],
                        "energy_shift_eV": summary["energy_shift"].get("per_element_eV"),
                    }
                )
            if all(a.info.get("phase") for a in chosen[how, n]):
                res["phases_in_training"] = len({a.info["phase"] for a in chosen[how, n]})
            results["curve"].append(res)
            name = f"{args.sevennet_init} fine-tuned" if args.backend == "sevennet" else f"DPA-3 {start}"
            extra = f", {summary['epochs']} epochs" if args.backend == "sevennet" else ""
            extra += f", phases {res['phases_in_training']}/16" if "phases_in_training" in res else ""
            print(f"{name}, {how} n={n} ({train_cpu:.0f} CPU s training{extra}):", flush=True)
            print_errors("", every)
            if args.json:  # partial results survive an interrupted run
                Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(markdown_table(results))
    return results


if __name__ == "__main__":
    main()
