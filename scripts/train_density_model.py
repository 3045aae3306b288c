"""Train the default Li–P–S density model shipped as ``cscli/data/density_lips.pt``.

Data: GPAW PBE valence pseudo-densities (PW 300 eV, Γ-centred k-points at 2 per Å⁻¹, Fermi–Dirac
0.1 eV) of the small LiPS20 reference phases and perturbed copies (atoms rattled by 0.08 Å,
cell strained up to 3 %), written by ``scripts/gpaw_density_frames.py`` (the same worker as
``cscli label -c gpaw --density-dir``). The held-out phases (default γ-Li3PS4 and Li2PS3-hex,
none of their frames in training or validation) give the test NMAE recorded beside the model in
``cscli/data/density_lips.json``.

    OMP_NUM_THREADS=1 /usr/bin/python3 scripts/gpaw_density_frames.py .density_data/gpaw300
    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python scripts/train_density_model.py .density_data/gpaw300 --steps 1200
"""

import argparse
import glob
import json
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))


def main():
    from cscli.core.log import configure
    from cscli.props.density import io
    from cscli.props.density import predict as P
    from cscli.props.density import train as T

    ap = argparse.ArgumentParser()
    ap.add_argument("dumps", help="folder of <id>.json + <id>.npy from gpaw_density_frames.py")
    ap.add_argument("--held-out", nargs="*", default=["gamma-Li3PS4", "Li2PS3-hex"])
    ap.add_argument("--valid", nargs="*", default=["Li2S-p3", "Li3P-p2"])
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--probes", type=int, default=300)
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--init", default=None, help="continue from this model (fine-tune) instead of a fresh one")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--final-lr", type=float, default=1e-4)
    ap.add_argument("--work", default=".density_data/train_default")
    ap.add_argument("--out", default=os.path.join(HERE, "..", "cscli", "data", "density_lips.pt"))
    args = ap.parse_args()
    configure("train_density_model")
    dens = [io.read_gpaw_dump(f) for f in sorted(glob.glob(os.path.join(args.dumps, "*.json")))]
    base = lambda name: name.split("-p")[0] if "-p" in name else name  # noqa: E731
    held = [d for d in dens if base(d.name) in args.held_out]
    valid = [d for d in dens if d.name in args.valid]
    train = [d for d in dens if d not in held and d not in valid]
    settings = T.TrainSettings(
        steps=args.steps,
        probes=args.probes,
        structures_per_step=2,
        eval_every=100,
        seed=args.seed,
        lr=args.lr,
        final_lr=args.final_lr,
    )
    t0 = time.time()
    summary = T.train(train, args.work, settings, valid=valid, init=args.init)
    seconds = time.time() - t0
    report = P.test_model(os.path.join(args.work, "model.pt"), held)
    shutil.copyfile(os.path.join(args.work, "model.pt"), args.out)
    settings_used = json.loads(open(held[0].source).read())["request"]["settings"] if held else {}
    prov = {
        "model": os.path.basename(args.out),
        "made_by": "scripts/train_density_model.py " + " ".join(sys.argv[1:]),
        "data": {
            "code": "GPAW (Debian gpaw 22.8.0, PBE PAW setups)",
            "density": "get_pseudo_density(), electrons/Å³",
            "settings": {k: settings_used.get(k) for k in ("ecut", "xc", "smearing", "width")},
            "kpt_density_per_A": 2.0,
            "structures": "LiPS20 reference phases (cscli/data/lips_reference_phases.extxyz) "
            "and perturbed copies (rattle 0.08 Å, strain ≤ 3 %)",
        },
        "trained_on": [d.name for d in train],
        "validated_on": [d.name for d in valid],
        "held_out": [d.name for d in held],
        "train_seconds": seconds,
        "steps": args.steps,
        "init": args.init and os.path.basename(args.init),
        "lr": [args.lr, args.final_lr],
        "best_valid_nmae": summary["best_valid_nmae"],
        "n_parameters": summary["n_parameters"],
        "held_out_nmae": report["nmae"],
        "held_out_per_structure": {r["name"]: r["nmae"] for r in report["structures"]},
    }
    with open(os.path.splitext(args.out)[0] + ".json", "w") as fh:
        json.dump(prov, fh, indent=1)
    print(json.dumps({k: prov[k] for k in ("best_valid_nmae", "held_out_nmae", "held_out_per_structure")}, indent=1))


if __name__ == "__main__":
    main()
