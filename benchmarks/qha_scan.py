"""Imaginary-mode scan: the lowest phonon frequency of every cached volume of a `cscli qha` work dir.

    OMP_NUM_THREADS=1 python benchmarks/qha_scan.py WORK_DIR [--scales 0.85:1.15:0.05] [--mesh 20]

Reads WORK_DIR/<id>-<hash>/scale-*.json (the relaxed cell and force sets of each volume that
`cscli qha --work-dir WORK_DIR` computed), rebuilds the force constants (no model call), and prints
per frame and scale the lowest frequency (THz, q-mesh and Gamma, as `cscli qha` records it in
qha_min_frequency), '*' where it is below -0.1 THz (an imaginary mode: the volume would be left out
of the fit) and '~' where the fixed-volume relaxation did not converge; then, per frame, how many of
the --scales volumes are imaginary and how many stable volumes the default 0.95:1.05:0.02 grid keeps.
The supercell is recovered from the cached force sets (their atom count).
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np


def main() -> None:
    from cscli.props.qha import (
        _atoms_from_json,
        _point_from_json,
        extended_temperatures,
        parse_grid,
        supercell_matrix,
        thermal_of,
    )

    parser = argparse.ArgumentParser()
    parser.add_argument("work_dir")
    parser.add_argument("--scales", default="0.85:1.15:0.05", help="the columns of the table")
    parser.add_argument("--mesh", default="20", help="phonopy mesh length, N,N,N or supercell (as cscli qha --mesh)")
    parser.add_argument("--tol", type=float, default=0.1, help="imaginary below -tol THz")
    parser.add_argument("--json", default=None, help="also write the numbers to this file")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.mesh == "supercell":
        mesh = "supercell"
    else:
        mesh = [int(x) for x in args.mesh.split(",")] if "," in args.mesh else float(args.mesh)
    scales = [float(s) for s in parse_grid(args.scales, "--scales")]
    temps = extended_temperatures(np.array([0.0, 300.0]))
    rows = {}
    for frame_dir in sorted(Path(args.work_dir).iterdir()):
        a0_file = frame_dir / "a0.json"
        if not a0_file.is_file():
            continue
        a0 = _atoms_from_json(json.loads(a0_file.read_text()))
        row = {}
        for path in sorted(frame_dir.glob("scale-*.json")):
            point = _point_from_json(json.loads(path.read_text()))
            n_super = int(point.dataset["first_atoms"][0]["forces"].shape[0])
            smatrix = next(
                supercell_matrix(a0.cell, length)
                for length in np.arange(0.0, 40.0, 0.5)
                if round(abs(np.linalg.det(supercell_matrix(a0.cell, length)))) * len(a0) == n_super
            )
            thermal = thermal_of(point, smatrix, mesh, temps)
            row[round(point.scale, 4)] = {
                "min_frequency": thermal["min_frequency"],
                "converged": point.converged,
                "supercell": np.diag(smatrix).tolist(),
            }
        rows[frame_dir.name] = row
    default = [0.95, 0.97, 0.99, 1.01, 1.03, 1.05]
    head = "".join(f"{s:>8.3g}" for s in scales)
    print(f"{'frame':<34}{'supercell':>10}{head}   imaginary/scan  default-grid stable")
    for name, row in rows.items():
        cells = []
        for s in scales:
            r = row.get(round(s, 4))
            if r is None:
                cells.append(f"{'-':>8}")
                continue
            flag = ("*" if r["min_frequency"] < -args.tol else "") + ("" if r["converged"] else "~")
            cells.append(f"{r['min_frequency']:>6.2f}{flag:<2}")
        done = [s for s in scales if round(s, 4) in row]
        n_imag = sum(row[round(s, 4)]["min_frequency"] < -args.tol for s in done)
        dflt = [s for s in default if round(s, 4) in row]
        n_ok = sum(row[round(s, 4)]["min_frequency"] >= -args.tol for s in dflt)
        sc = "x".join(map(str, next(iter(row.values()))["supercell"])) if row else "-"
        print(f"{name:<34}{sc:>10}{''.join(cells)}   {n_imag}/{len(done):<12}  {n_ok}/{len(dflt)}")
    if args.json:
        Path(args.json).write_text(json.dumps({k: {str(s): v for s, v in r.items()} for k, r in rows.items()}))


if __name__ == "__main__":
    main()
