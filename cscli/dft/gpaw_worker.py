"""GPAW single-point worker, run by ``cscli label --calculator gpaw`` in a separate interpreter.

Debian's GPAW is built for the system Python (numpy 1 ABI) while cscli may live in a virtual
environment with numpy 2, so cscli never imports GPAW itself: it runs

    <gpaw-python> /path/to/cscli/dft/gpaw_worker.py request.json result.json

where ``<gpaw-python>`` is ``/usr/bin/python3`` (serial) or e.g. ``gpaw -P 4 python`` (MPI).
This file must stay self-contained: standard library, numpy, ASE and GPAW only, no cscli import.

Request: ``{"symbols", "positions", "cell", "pbc", "settings": {"ecut", "xc", "kpts",
"smearing", "width", "spinpol", "magmoms", "convergence", "extra"}, "txt", "density"}``.
Result: ``{"energy", "free_energy", "forces", "stress", "gpaw_version", "ase_version",
"iterations", "density"}`` or ``{"error": message}``.

With ``"density": "PATH.npy"`` the converged valence pseudo-density (``calc.get_pseudo_density()``,
electrons/Å³, spin summed, on GPAW's real-space grid; no PAW compensation charges) is saved there
with ``numpy.save`` and ``result["density"]`` holds ``{"path", "shape", "integral"}`` (∫ñ dV in
electrons).
"""

import json
import sys
import traceback


def run(request):
    import ase
    import gpaw
    from ase import Atoms
    from gpaw import GPAW, PW

    s = request["settings"]
    atoms = Atoms(symbols=request["symbols"], positions=request["positions"], cell=request["cell"], pbc=request["pbc"])
    if s.get("magmoms") is not None:
        atoms.set_initial_magnetic_moments(s["magmoms"])
    kwargs = dict(
        mode=PW(float(s["ecut"])),
        xc=s.get("xc", "PBE"),
        kpts={"size": list(s["kpts"]), "gamma": True},
        occupations={"name": s.get("smearing", "fermi-dirac"), "width": float(s.get("width", 0.05))},
        spinpol=bool(s.get("spinpol", False)),
        txt=request.get("txt") or None,
    )
    if s.get("convergence"):
        kwargs["convergence"] = s["convergence"]
    kwargs.update(s.get("extra") or {})
    calc = GPAW(**kwargs)
    atoms.calc = calc
    energy = atoms.get_potential_energy()  # extrapolated to zero smearing width
    free_energy = atoms.get_potential_energy(force_consistent=True)
    forces = atoms.get_forces()
    result = {
        "energy": float(energy),
        "free_energy": float(free_energy),
        "forces": forces.tolist(),
        "gpaw_version": gpaw.__version__,
        "ase_version": ase.__version__,
    }
    if all(atoms.pbc):
        result["stress"] = atoms.get_stress(voigt=True).tolist()
    if request.get("density"):
        import numpy as np

        rho = np.asarray(calc.get_pseudo_density(), dtype=float)  # electrons / Å^3
        np.save(request["density"], rho)
        result["density"] = {
            "path": request["density"],
            "shape": list(rho.shape),
            "integral": float(rho.mean() * abs(np.linalg.det(atoms.cell.array))),
        }
    try:
        result["iterations"] = int(calc.get_number_of_iterations())
    except Exception:  # older/newer GPAW API
        pass
    return result


def main(argv):
    if len(argv) != 3:
        print("usage: gpaw_worker.py REQUEST.json RESULT.json", file=sys.stderr)
        return 2
    with open(argv[1]) as fh:
        request = json.load(fh)
    try:
        from gpaw.mpi import world

        rank = world.rank
    except Exception:
        rank = 0
    try:
        result = run(request)
    except Exception as exc:  # reported back to cscli as this frame's failure
        lines = str(exc).strip().splitlines()
        result = {
            "error": "{}: {}".format(type(exc).__name__, lines[0] if lines else ""),
            "traceback": traceback.format_exc(),
        }
    if rank == 0:
        with open(argv[2], "w") as fh:
            json.dump(result, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
