"""Energy and force errors of the shipped (offline) force fields on real DFT Li–P–S frames.

This is how cscli's default model is chosen. Datasets (see ../shared/data/PROVENANCE.md):
- NequIP LiPS (Li6.75P3S11, 83 atoms, VASP-PBE): lips_val_every10_100frames.extxyz
- PET-MAD workshop Li3PS4 test frames (16/32 atoms; functional probably PBEsol)

Energy RMSE is reported twice: raw (absolute per-atom energies, which depend on the model's
reference scale) and after removing the mean offset (what matters for relative energies).

    python benchmarks/model_accuracy.py [--every 2] [--models chgnet,7net-0,...] [--json out.json]
"""

import argparse
import json
import time

import numpy as np

from cscli.core.datafiles import shared_data_dir
from cscli.core.frames import read_frames
from cscli.core.models import load_calculator

p = argparse.ArgumentParser()
p.add_argument("--every", type=int, default=2, help="take every k-th frame of each set")
p.add_argument("--models", default="chgnet,7net-0,7net-mf-0,7net-l3i5")
p.add_argument("--json", default=None)
args = p.parse_args()

shared = shared_data_dir()
if shared is None:
    raise SystemExit("needs ../shared/data")
sets = {
    "NequIP-LiPS (PBE)": shared / "lips_dft_frames/lips_nequip_batzner2022/lips_val_every10_100frames.extxyz",
    "PET-MAD Li3PS4": shared / "lips_dft_frames/petmad_workshop_Li3PS4/petmad_workshop_Li3PS4_test.extxyz",
}
results = []
for model in args.models.split(","):
    calc = load_calculator(model, "cpu")
    for set_name, path in sets.items():
        frames = read_frames(str(path))[:: args.every]
        de, df = [], []
        t0 = time.perf_counter()
        n_atoms = 0
        for atoms in frames:
            ref_e = atoms.info["energy"] / len(atoms)
            ref_f = atoms.arrays["forces"]
            work = atoms.copy()
            work.calc = calc
            de.append(work.get_potential_energy() / len(atoms) - ref_e)
            df.append((work.get_forces() - ref_f).ravel())
            n_atoms += len(atoms)
        dt = time.perf_counter() - t0
        de = np.array(de)
        df = np.concatenate(df)
        row = {
            "model": calc.cscli_model,
            "set": set_name,
            "frames": len(frames),
            "e_rmse_raw_meV_atom": 1000 * float(np.sqrt(np.mean(de**2))),
            "e_rmse_offset_meV_atom": 1000 * float(np.std(de)),
            "f_rmse_eV_A": float(np.sqrt(np.mean(df**2))),
            "f_mae_eV_A": float(np.mean(np.abs(df))),
            "atoms_per_s": n_atoms / dt,
        }
        results.append(row)
        print(
            f"{row['model']:12s} {set_name:20s} n={row['frames']:3d}  E_rmse raw {row['e_rmse_raw_meV_atom']:8.1f}  "
            f"offset-free {row['e_rmse_offset_meV_atom']:6.1f} meV/atom  F_rmse {row['f_rmse_eV_A']:.3f} eV/Å  "
            f"F_mae {row['f_mae_eV_A']:.3f}  {row['atoms_per_s']:.0f} atoms/s",
            flush=True,
        )
if args.json:
    with open(args.json, "w") as fh:
        json.dump(results, fh, indent=1)
