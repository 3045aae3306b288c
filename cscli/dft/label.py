"""Label frames with energies, forces and stress (``cscli label``).

Three labellers, each a function ``Atoms -> Atoms`` for :func:`cscli.core.stream.run_stream`:

* ``gpaw``  — real PBE DFT offline with GPAW in plane-wave mode. GPAW runs in a separate
  interpreter (``--gpaw-command``, default ``/usr/bin/python3``, the one Debian's ``gpaw``
  package is built for) through :mod:`cscli.dft.gpaw_worker`, one process per frame, request and
  result passed as JSON files. ``label_method = dft-gpaw``.
* ``vasp``  — VASP through ASE's ``Vasp`` calculator with the INCAR of the seed paper's
  relaxations (pymatgen MPRelaxSet + ENCUT 520, EDIFF 5e-5 eV/atom) turned into a single point
  (NSW 0, IBRION -1). Needs VASP (``ASE_VASP_COMMAND``) and POTCARs (``VASP_PP_PATH``).
  ``label_method = dft-vasp``.
* ``model`` — any cscli force field as a stand-in oracle (tests, dry runs of the loop):
  ``label_method = mlff-oracle:<model>``, never to be mistaken for DFT.

k-points for GPAW: a Γ-centred mesh ``n_i = max(1, ceil(2π |b_i| d))`` (ASE's
``kptdensity2monkhorstpack``; ``|b_i|`` the reciprocal vector without 2π), ``d`` in points per
Å⁻¹ (``d = 4`` is a little denser than the Materials Project's 64 points per Å⁻³: ceil instead of
floor), or with ``reciprocal_density`` exactly the mesh ``dft-select --write-vasp`` gives VASP.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cscli.core.errors import FrameError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms

RESULT_KEYS = ("energy", "free_energy", "stress", "energy_per_atom")
WORKER = Path(__file__).resolve().parent / "gpaw_worker.py"


def kpoint_mesh(atoms: Atoms, density: float) -> list[int]:
    """Γ-centred mesh with ``density`` points per Å⁻¹ along each reciprocal vector (2π included)."""
    import numpy as np

    if density <= 0:
        raise UsageError("--kpt-density must be > 0")
    recip = atoms.cell.reciprocal()  # rows b_i / 2π
    mesh = []
    for i in range(3):
        if not atoms.pbc[i]:
            mesh.append(1)
            continue
        mesh.append(max(1, int(math.ceil(2 * math.pi * float(np.linalg.norm(recip[i])) * density - 1e-9))))
    return mesh


def mp_kpoint_mesh(atoms: Atoms, reciprocal_density: float = 64) -> list[int]:
    """The Γ-centred mesh ``dft-select --write-vasp`` writes (pymatgen, MP reciprocal density)."""
    from pymatgen.io.ase import AseAtomsAdaptor
    from pymatgen.io.vasp import Kpoints

    structure = AseAtomsAdaptor.get_structure(atoms)
    kp = Kpoints.automatic_density_by_vol(structure, reciprocal_density, force_gamma=True)
    return [int(n) for n in kp.kpts[0]]


def _clear_labels(atoms: Atoms) -> None:
    for key in RESULT_KEYS + ("model", "label_method", "label_settings"):
        atoms.info.pop(key, None)
    atoms.arrays.pop("forces", None)
    atoms.calc = None


def _store(atoms: Atoms, energy: float, forces, stress=None, free_energy=None) -> None:
    import numpy as np

    from cscli.core.stream import nan_check

    atoms.info["energy"] = nan_check(float(energy), "energy")
    atoms.info["energy_per_atom"] = atoms.info["energy"] / len(atoms)
    if free_energy is not None:
        atoms.info["free_energy"] = float(free_energy)
    f = np.asarray(forces, dtype=float).reshape(len(atoms), 3)
    if not np.all(np.isfinite(f)):
        raise FrameError("forces are not finite")
    atoms.arrays["forces"] = f
    if stress is not None:
        s = np.asarray(stress, dtype=float)
        if s.shape == (3, 3):
            from ase.stress import full_3x3_to_voigt_6_stress

            s = full_3x3_to_voigt_6_stress(s)
        atoms.info["stress"] = s


# ----------------------------------------------------------------------------- GPAW


@dataclass
class GpawSettings:
    ecut: float = 500.0  # eV, plane-wave cutoff
    kpt_density: float = 4.0  # points per Å⁻¹
    reciprocal_density: float | None = None  # if set: pymatgen's MP mesh instead of kpt_density
    xc: str = "PBE"
    smearing: str = "fermi-dirac"
    width: float = 0.05  # eV
    spinpol: bool = False
    convergence: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    python: str = "/usr/bin/python3"
    timeout: float | None = None  # seconds per frame


def check_gpaw(python: str) -> str:
    """GPAW version under ``python`` (a command line); UsageError with the fix when absent."""
    cmd = shlex.split(python)
    if not cmd or shutil.which(cmd[0]) is None:
        raise UsageError(
            f"--gpaw-command {python!r}: not found; install Debian's gpaw and gpaw-data "
            "(apt-get install gpaw gpaw-data) or point --gpaw-command at a Python with GPAW"
        )
    probe = subprocess.run(
        [*cmd, "-c", "import gpaw; print(gpaw.__version__)"], capture_output=True, text=True, env=_worker_env()
    )
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        raise UsageError(
            f"--gpaw-command {python!r} cannot import gpaw ({last}); install Debian's gpaw and "
            "gpaw-data or point --gpaw-command at a Python with GPAW"
        )
    return probe.stdout.strip().splitlines()[-1]


def _worker_env() -> dict:
    env = dict(os.environ)
    # the venv's site-packages must not leak into the system interpreter (numpy ABI)
    for key in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
        env.pop(key, None)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def gpaw_labeller(settings: GpawSettings, workdir: str | None = None, density_dir: str | None = None):
    """A function labelling one frame with GPAW (PW mode) in a subprocess.

    With ``density_dir`` the SCF's valence pseudo-density is also written there as
    ``<id>.CHGCAR`` (:func:`cscli.props.density.io.write_chgcar`: GPAW's
    ``get_pseudo_density()`` in electrons/Å³ times V_cell, VASP's convention, on GPAW's grid;
    no PAW compensation charges, so it integrates to ``info['density_electrons']``, close to but
    not exactly the valence count)."""
    version = check_gpaw(settings.python)
    cmd = shlex.split(settings.python)

    def label(atoms: Atoms) -> Atoms:
        from cscli.core.frames import _to_builtin

        if settings.reciprocal_density:
            mesh = mp_kpoint_mesh(atoms, settings.reciprocal_density)
        else:
            mesh = kpoint_mesh(atoms, settings.kpt_density)
        worker_settings = {
            "ecut": settings.ecut,
            "xc": settings.xc,
            "kpts": mesh,
            "smearing": settings.smearing,
            "width": settings.width,
            "spinpol": settings.spinpol,
            "convergence": settings.convergence,
            "extra": settings.extra,
        }
        if settings.spinpol and "initial_magmoms" in atoms.arrays:
            worker_settings["magmoms"] = _to_builtin(atoms.arrays["initial_magmoms"])
        base = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="cscli-gpaw-"))
        base.mkdir(parents=True, exist_ok=True)
        stem = _safe(atoms.info.get("id", "frame"))
        req, res = base / f"{stem}.request.json", base / f"{stem}.result.json"
        txt = base / f"{stem}.gpaw.txt"
        request = {
            "symbols": atoms.get_chemical_symbols(),
            "positions": _to_builtin(atoms.positions),
            "cell": _to_builtin(atoms.cell.array),
            "pbc": [bool(p) for p in atoms.pbc],
            "settings": worker_settings,
            "txt": str(txt),
        }
        if density_dir:
            request["density"] = str(base / f"{stem}.density.npy")
        req.write_text(json.dumps(request))
        res.unlink(missing_ok=True)
        try:
            proc = subprocess.run(
                [*cmd, str(WORKER), str(req), str(res)],
                capture_output=True,
                text=True,
                env=_worker_env(),
                timeout=settings.timeout,
            )
        except subprocess.TimeoutExpired:
            raise FrameError(f"GPAW took longer than {settings.timeout:g} s") from None
        if not res.exists():
            tail = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
            raise FrameError(f"GPAW worker produced no result: {tail}")
        result = json.loads(res.read_text())
        rho = _load_density(result) if density_dir and "error" not in result else None
        if not workdir:  # with --work-dir the GPAW text logs and request/result files stay
            shutil.rmtree(base, ignore_errors=True)
        if "error" in result:
            raise FrameError(f"GPAW failed: {result['error']}")
        _clear_labels(atoms)
        _store(atoms, result["energy"], result["forces"], result.get("stress"), result.get("free_energy"))
        atoms.info["label_method"] = "dft-gpaw"
        atoms.info["label_settings"] = {
            "code": "gpaw",
            "version": result.get("gpaw_version", version),
            "mode": "pw",
            "ecut_eV": settings.ecut,
            "xc": settings.xc,
            "kpts": mesh,
            "kpts_gamma": True,
            **(
                {"reciprocal_density": settings.reciprocal_density}
                if settings.reciprocal_density
                else {"kpt_density": settings.kpt_density}
            ),
            "occupations": settings.smearing,
            "width_eV": settings.width,
            "spinpol": settings.spinpol,
            **({"convergence": settings.convergence} if settings.convergence else {}),
            **({"extra": settings.extra} if settings.extra else {}),
        }
        if "iterations" in result:
            atoms.info["label_scf_iterations"] = result["iterations"]
        if density_dir:
            _write_density(atoms, rho, Path(density_dir) / f"{stem}.CHGCAR")
        return atoms

    label.description = f"gpaw {version}, PW {settings.ecut:g} eV, {settings.xc}"
    label.tag = "gpaw"
    return label


def _load_density(result: dict):
    import numpy as np

    npy = Path((result.get("density") or {}).get("path", ""))
    if not npy.is_file():
        raise FrameError("GPAW worker wrote no density")
    rho = np.load(npy)
    npy.unlink(missing_ok=True)
    return rho


def _write_density(atoms: Atoms, rho, path: Path) -> None:
    import numpy as np

    from cscli.props.density.io import write_chgcar

    write_chgcar(path, atoms, rho, comment=f"{atoms.get_chemical_formula()} GPAW pseudo-density")
    atoms.info["density_file"] = str(path)
    atoms.info["density_electrons"] = float(rho.mean() * abs(np.linalg.det(atoms.cell.array)))


def _safe(text) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text))[:100] or "frame"


# ----------------------------------------------------------------------------- VASP via ASE


def vasp_parameters(atoms: Atoms, encut: float = 520.0, reciprocal_density: float = 64) -> dict:
    """ASE ``Vasp`` keyword arguments: the paper's relaxation INCAR as a single point."""
    from cscli.dft.vasp import relax_input_set

    vis = relax_input_set(atoms, encut=encut, reciprocal_density=reciprocal_density)
    incar = dict(vis.incar)
    incar.update({"NSW": 0, "IBRION": -1})
    for key in ("EDIFFG", "ISIF", "MAGMOM"):
        incar.pop(key, None)
    params = {k.lower(): v for k, v in incar.items()}
    kp = vis.kpoints
    params.update(
        {"xc": "PBE", "kpts": list(kp.kpts[0]), "gamma": True, "setups": {"Li": "_sv"}, "lcharg": False, "lwave": False}
    )
    return params


def _ase_vasp_command() -> str | None:
    import warnings

    from ase.config import cfg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ASE warns when it reads these from the environment
        for key in ("ASE_VASP_COMMAND", "VASP_COMMAND", "VASP_SCRIPT"):
            try:
                value = cfg.get(key)
            except Exception:  # noqa: BLE001
                value = os.environ.get(key)
            if value:
                return value
    return None


def vasp_labeller(workdir: str, encut: float = 520.0, command: str | None = None):
    if not command and not _ase_vasp_command():
        raise UsageError(
            "--calculator vasp needs VASP: pass --vasp-command 'mpirun vasp_std' or set "
            "ASE_VASP_COMMAND, and VASP_PP_PATH (the directory holding potpaw_PBE/); "
            "without VASP use `dft-select --write-vasp` + `cscli collect`"
        )

    def label(atoms: Atoms) -> Atoms:
        from ase.calculators.vasp import Vasp

        params = vasp_parameters(atoms, encut=encut)
        folder = Path(workdir) / _safe(atoms.info.get("id", "frame"))
        work = atoms.copy()
        work.calc = Vasp(directory=str(folder), command=command, **params)
        energy = work.get_potential_energy()
        forces = work.get_forces()
        stress = work.get_stress(voigt=True)
        free = work.calc.results.get("free_energy")
        _clear_labels(atoms)
        _store(atoms, energy, forces, stress, free)
        atoms.info["label_method"] = "dft-vasp"
        atoms.info["label_settings"] = {
            "code": "vasp",
            "dir": str(folder),
            **{k: v for k, v in params.items() if k != "setups"},
        }
        return atoms

    label.description = "vasp (ASE)"
    label.tag = "vasp"
    return label


# ----------------------------------------------------------------------------- MLFF oracle


def model_labeller(model: str | None, device: str = "auto"):
    """Label with a cscli force field, marked as an oracle stand-in, not DFT."""
    from cscli.core.models import load_calculator, store_model

    calc = load_calculator(model, device=device)
    name = getattr(calc, "cscli_model", None) or model or "default"

    def label(atoms: Atoms) -> Atoms:
        work = atoms.copy()
        work.info.clear()
        work.calc = calc
        energy = work.get_potential_energy()
        forces = work.get_forces()
        try:
            stress = work.get_stress(voigt=True) if all(work.pbc) else None
        except Exception:  # some models give no stress
            stress = None
        _clear_labels(atoms)
        _store(atoms, energy, forces, stress)
        atoms.info["label_method"] = f"mlff-oracle:{name}"
        store_model(atoms, calc)
        return atoms

    label.description = f"MLFF oracle {name} (not DFT)"
    label.tag = f"mlff-oracle:{name}"
    return label
