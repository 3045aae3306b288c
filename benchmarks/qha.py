"""CPU time of one QHA structure: cscli's pipeline against matcalc's QHACalc, same settings.

    OMP_NUM_THREADS=1 python benchmarks/qha.py [--model 7net-0] [--repeats 2,3] [--structure li2s|gamma-Li3PS4]
    OMP_NUM_THREADS=1 python benchmarks/qha.py --estimate gamma-Li3PS4 --model default

matcalc comes from the `qha-bench` extra (pip install -c constraints.txt matcalc==0.7.0).

Both run on the same model calculator object, the same input cell (no pre-relaxation: the cell
is taken as a0), the same lattice scale factors (linear strain, 5 volumes), the same supercell
(diagonal, given by --repeats), the same finite displacement (0.01 Å), fixed-volume relaxation of
ions and cell shape (FIRE, fmax 1e-3, at most 200 steps) and temperatures 0–300 K; imaginary
modes are integrated on both sides (matcalc only warns; cscli is given an infinite tolerance). matcalc's
PhononCalc is told not to relax again (cscli does not either). Prints CPU seconds per structure
(time.process_time: on a shared machine wall times measure the neighbours' load) for
each supercell size (fastest of --rounds alternating runs, after one warm-up model call), the
ratio matcalc / cscli, and the largest difference of G(T) per atom
between the two (a check that both computed the same thing). cscli is timed with --batch-size 1
(one structure per model call) and, for SevenNet, with batched graphs.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings

import numpy as np

SCALES = (0.97, 0.985, 1.0, 1.015, 1.03)


def structure(name: str):
    from ase.spacegroup import crystal

    if name == "li2s":
        atoms = crystal(
            ["S", "Li"],
            [(0, 0, 0), (0.25, 0.25, 0.25)],
            spacegroup=225,
            cellpar=[5.70, 5.70, 5.70, 90, 90, 90],
            primitive_cell=True,
        )
    else:
        from cscli.core.datafiles import reference_phases_path
        from cscli.core.frames import read_frames

        atoms = next(a for a in read_frames(str(reference_phases_path())) if a.info.get("phase") == name)
    atoms.info["id"] = name
    return atoms


def run_cscli(atoms, calc, repeat: int, batch_size: int):
    from cscli.props.qha import QHASettings, qha_frame

    lengths = np.linalg.norm(np.array(atoms.cell), axis=1)
    settings = QHASettings(
        scales=SCALES,
        temperatures=tuple(np.arange(0.0, 301.0, 10.0)),
        pressures=(0.0,),
        min_length=float(repeat * lengths.min() - 1e-6),
        mesh=20.0,
        displacement=0.01,
        prerelax=False,
        fmax=1e-3,
        steps=200,
        optimizer="FIRE",  # matcalc's relaxer default
        imaginary_tol=float("inf"),  # matcalc warns about imaginary modes and integrates anyway: so do we here
        batch_size=batch_size,
    )
    t = time.process_time()
    result = qha_frame(atoms, calc, settings)
    elapsed = time.process_time() - t
    return elapsed, result.fit.gibbs[0] / len(atoms), result.supercell


def run_matcalc(atoms, calc, supercell):
    from matcalc import QHACalc

    qha = QHACalc(
        calc,
        t_min=0,
        t_max=300,
        t_step=10,
        fmax=1e-3,
        max_steps=200,
        eos="vinet",
        relax_structure=False,
        scale_factors=SCALES,
        allow_shape_change=True,
        phonon_calc_kwargs={
            "supercell_matrix": np.diag(supercell),
            "atom_disp": 0.01,
            "relax_structure": False,
            "write_phonon": False,
        },
        store_ha_phonon=False,
    )
    t = time.process_time()
    result = qha.calc(atoms.copy())
    elapsed = time.process_time() - t
    return elapsed, np.asarray(result["gibbs_free_energies"]) / len(atoms)


def estimate(phase: str, model: str | None, min_length: float, n_volumes: int) -> None:
    """Cost of a full run of one reference phase from a few timed force calls: supercell size,
    displacements per volume, seconds per force call (the relaxations come on top)."""
    from cscli.core.models import load_calculator
    from cscli.props.qha import (
        evaluate_forces,
        phonopy_for,
        supercell_matrix,
        to_ase_atoms,
    )

    t = time.perf_counter()
    calc = load_calculator(model, "cpu")
    t_load = time.perf_counter() - t
    atoms = structure(phase)
    smatrix = supercell_matrix(atoms.cell, min_length)
    supercells = [to_ase_atoms(s) for s in phonopy_for(atoms, smatrix, 0.01).supercells_with_displacements]
    evaluate_forces(calc, supercells[:1])  # warm-up
    t = time.perf_counter()
    evaluate_forces(calc, supercells[:3])
    per_call = (time.perf_counter() - t) / 3
    print(
        f"{phase}, {calc.cscli_model}, --min-length {min_length:g}: supercell {np.diag(smatrix).tolist()} = "
        f"{len(supercells[0])} atoms, {len(supercells)} displacements per volume, {per_call:.1f} s per force call, "
        f"model load {t_load:.0f} s -> {n_volumes} volumes: {n_volumes * len(supercells) * per_call / 60:.0f} min "
        "of force calls (relaxations on top)"
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="7net-0")
    parser.add_argument("--structure", default="li2s", help="li2s, or a reference phase name (gamma-Li3PS4)")
    parser.add_argument("--repeats", default="2,3", help="supercell multiples of the shortest lattice vector")
    parser.add_argument("--no-matcalc", action="store_true", help="time cscli only")
    parser.add_argument("--no-batched", action="store_true", help="skip cscli --batch-size 16 (SevenNet)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each side, alternating; the fastest counts")
    parser.add_argument(
        "--estimate",
        metavar="PHASE",
        default=None,
        help="only estimate a full default run of one reference phase (e.g. gamma-Li3PS4)",
    )
    parser.add_argument("--min-length", type=float, default=12.0, help="with --estimate")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.estimate:
        estimate(args.estimate, None if args.model == "default" else args.model, args.min_length, 6)
        return
    logging.getLogger("matcalc").setLevel(logging.WARNING)
    from cscli.core.models import load_calculator
    from cscli.props.qha import batched_backend

    calc = load_calculator(args.model, "cpu")
    atoms = structure(args.structure)
    warm = atoms.copy()
    warm.calc = calc
    warm.get_forces()  # first-call set-up (torch, neighbour lists) is not charged to either side
    print(f"{args.structure}: {len(atoms)} atoms, model {calc.cscli_model}, {len(SCALES)} volumes, 0-300 K")
    print(
        f"{'supercell':>10} {'atoms':>6} {'cscli cpu s':>11} {'batched cpu s':>14} {'matcalc cpu s':>14} "
        f"{'matcalc/cscli':>14} {'max |dG| meV/atom':>18}"
    )
    for repeat in [int(r) for r in args.repeats.split(",")]:
        times: dict[str, list[float]] = {"cscli": [], "batched": [], "matcalc": []}
        for _ in range(args.rounds):  # alternate the sides so that load changes hit both
            t_c, g_c, sc = run_cscli(atoms, calc, repeat, 1)
            times["cscli"].append(t_c)
            if batched_backend(calc) and not args.no_batched:
                times["batched"].append(run_cscli(atoms, calc, repeat, 16)[0])
            if not args.no_matcalc:
                t_m, g_m = run_matcalc(atoms, calc, sc)
                times["matcalc"].append(t_m)
        t_c = min(times["cscli"])
        t_b = min(times["batched"], default=float("nan"))
        t_m = min(times["matcalc"], default=float("nan"))
        n_sc = len(atoms) * int(np.prod(sc))
        if args.no_matcalc:
            print(f"{'x'.join(map(str, sc)):>10} {n_sc:>6} {t_c:11.1f} {t_b:14.1f}")
            continue
        n = min(len(g_c), len(g_m))
        print(
            f"{'x'.join(map(str, sc)):>10} {n_sc:>6} {t_c:11.1f} {t_b:14.1f} {t_m:14.1f} {t_m / t_c:14.2f} "
            f"{1e3 * np.abs(g_c[:n] - g_m[:n]).max():18.3f}"
        )


if __name__ == "__main__":
    main()
