"""VASP in and out: relaxation inputs for ``dft-select --write-vasp`` and ``cscli collect``.

Inputs follow the seed paper: pymatgen's ``MPRelaxSet`` (PBE PAW, ENCUT 520 eV, ISIF 3,
ISMEAR -5, ISPIN 2, Li_sv/P/S POTCARs, Γ-centred k-mesh of reciprocal density 64) with

* ``EDIFF = 5e-5 eV/atom × N_atoms`` (VASP's EDIFF is per cell; this is MPRelaxSet's
  ``EDIFF_PER_ATOM``),
* ``EDIFFG = +10 × EDIFF``: a *positive* EDIFFG is VASP's energy criterion for the ionic loop
  (a negative one would be a force criterion in eV/Å). "10× EDIFF" is also VASP's own default
  when EDIFFG is unset, which MPRelaxSet leaves it; we write it explicitly so the INCAR says so.

The k-mesh is pymatgen's ``Kpoints.automatic_density_by_vol(structure, 64, force_gamma=True)``,
the algorithm behind MPRelaxSet's ``reciprocal_density: 64`` (the Materials Project's own):
``kppa = 64 Å³ × V_rec × N`` with ``V_rec = (2π)³/V`` and ``n_i = max(1, floor(m / a_i))`` where
``m = (kppa / N × a b c)^(1/3)``.

POTCARs are licensed with VASP and are never shipped: each folder gets ``POTCAR.spec`` (one
symbol a line), and a POTCAR only when pymatgen finds ``PMG_VASP_PSP_DIR``. The SLURM array
script assembles missing POTCARs from POTCAR.spec at run time.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cscli.core.errors import DataError, UsageError
from cscli.core.log import get_logger

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms

_log = get_logger(__name__)

ENCUT = 520.0  # eV
EDIFF_PER_ATOM = 5e-5  # eV/atom
EDIFFG_FACTOR = 10.0  # EDIFFG = +10 × EDIFF (energy criterion)
RECIPROCAL_DENSITY = 64  # k-points per Å⁻³ of reciprocal volume (2π included)
POTCAR_CHOICE = {"Li": "Li_sv", "P": "P", "S": "S"}  # MPRelaxSet's own choice (asserted in tests)
FRAME_FILE = "cscli_frame.json"
FOLDER_LIST = "folders.txt"
SBATCH_NAME = "run_vasp_array.sbatch"
POTCAR_MESSAGE = (
    "POTCARs are not written (VASP licence): each folder has POTCAR.spec. Either set "
    "PMG_VASP_PSP_DIR (pymatgen layout, `pmg config -p <VASP potpaw dir> <target>`) before "
    "running dft-select, or let {script} assemble them at run time from $PMG_VASP_PSP_DIR or "
    "$VASP_PP_PATH."
)


# ----------------------------------------------------------------------------- inputs


def relax_input_set(
    atoms: Atoms,
    encut: float = ENCUT,
    ediff_per_atom: float = EDIFF_PER_ATOM,
    ediffg_factor: float = EDIFFG_FACTOR,
    reciprocal_density: float = RECIPROCAL_DENSITY,
    incar_overrides: dict | None = None,
):
    """pymatgen ``MPRelaxSet`` for one frame with the seed paper's settings."""
    from pymatgen.io.ase import AseAtomsAdaptor
    from pymatgen.io.vasp.sets import MPRelaxSet

    structure = AseAtomsAdaptor.get_structure(atoms)
    n = len(structure)
    ediff = ediff_per_atom * n
    incar = {"ENCUT": encut, "EDIFF": float(f"{ediff:.6g}"), "EDIFFG": float(f"{ediffg_factor * ediff:.6g}")}
    incar.update(incar_overrides or {})
    return MPRelaxSet(
        structure,
        user_incar_settings=incar,
        user_kpoints_settings={"reciprocal_density": reciprocal_density},
        force_gamma=True,
    )


def safe_name(text: str, limit: int = 80) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text))[:limit].strip("._") or "frame"


def _psp_dir_available() -> bool:
    try:
        from pymatgen.core import SETTINGS
    except ImportError:  # pragma: no cover
        return False
    path = SETTINGS.get("PMG_VASP_PSP_DIR") or os.environ.get("PMG_VASP_PSP_DIR")
    return bool(path) and Path(path).is_dir()


@dataclass
class VaspWriteReport:
    root: str
    folders: list[str]
    potcars_written: int
    script: str


def incar_settings(pairs) -> dict:
    """``--incar`` KEY=VALUE pairs (values already numbers where they parse) → INCAR tags: keys
    upper-cased, Fortran/pymatgen booleans (``.TRUE.``, ``T``, ``false``…) as bools."""
    out = {}
    for key, value in pairs:
        if isinstance(value, str):
            flag = value.strip().upper()
            if flag in (".TRUE.", "TRUE", "T"):
                value = True
            elif flag in (".FALSE.", "FALSE", "F"):
                value = False
            else:
                value = value.strip()
        out[str(key).strip().upper()] = value
    return out


def write_vasp_inputs(
    frames: Sequence[Atoms], root: str, slurm: dict | None = None, incar_overrides: dict | None = None
) -> VaspWriteReport:
    """One relaxation folder per frame under ``root`` + ``folders.txt`` + a SLURM array script."""
    import warnings

    from cscli.core.frames import frame_to_dict

    rootp = Path(root)
    rootp.mkdir(parents=True, exist_ok=True)
    folders = []
    potcars = 0
    try_potcar = _psp_dir_available()
    for i, atoms in enumerate(frames):
        name = f"{i:05d}_{safe_name(atoms.info.get('id', i))}"
        folder = rootp / name
        if any((folder / f).exists() for f in ("OUTCAR", "vasprun.xml")):
            raise DataError(f"{folder}: already holds VASP output; write the inputs to a new directory")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pymatgen warns about missing POTCARs/settings
            vis = relax_input_set(atoms, incar_overrides=incar_overrides)
            folder.mkdir(parents=True, exist_ok=True)
            vis.incar.write_file(folder / "INCAR")
            vis.kpoints.write_file(folder / "KPOINTS")
            vis.poscar.write_file(folder / "POSCAR")
            (folder / "POTCAR.spec").write_text("\n".join(vis.potcar_symbols) + "\n")
            if try_potcar:
                try:
                    vis.potcar.write_file(folder / "POTCAR")
                    potcars += 1
                except Exception:  # missing/incomplete PSP dir: the script assembles them later
                    try_potcar = False
        (folder / FRAME_FILE).write_text(json.dumps(frame_to_dict(atoms)) + "\n")
        folders.append(name)
    (rootp / FOLDER_LIST).write_text("".join(f + "\n" for f in folders))
    script = rootp / SBATCH_NAME
    script.write_text(sbatch_script(len(folders), str(rootp.resolve()), **(slurm or {})))
    script.chmod(0o755)
    return VaspWriteReport(str(rootp), folders, potcars, str(script))


def sbatch_script(
    n_tasks: int,
    root: str,
    time: str = "24:00:00",
    ntasks: int = 32,
    nodes: int = 1,
    max_parallel: int | None = None,
    job_name: str = "cscli-vasp",
    extra: Sequence[str] = (),
) -> str:
    """A SLURM array script running one VASP folder per task (``folders.txt`` line task+1)."""
    if n_tasks < 1:
        raise DataError("no frames selected: no VASP folders to run")
    array = f"0-{n_tasks - 1}" + (f"%{max_parallel}" if max_parallel else "")
    extra_lines = "".join(f"#SBATCH {line.strip()}\n" for line in extra if line.strip())
    return f"""#!/bin/bash
#SBATCH --job-name={job_name}
#SBATCH --array={array}
#SBATCH --nodes={nodes}
#SBATCH --ntasks={ntasks}
#SBATCH --time={time}
#SBATCH --output=slurm-%A_%a.out
{extra_lines}
# Written by `cscli dft-select --write-vasp`: array task i relaxes the folder on line i+1 of
# folders.txt. Submit with:  sbatch {root}/{SBATCH_NAME}
# Then:  cscli collect {root} -o labelled.extxyz --report collect.json
#   VASP_CMD        how to run VASP (default: vasp_std; e.g. "srun vasp_std")
#   PMG_VASP_PSP_DIR / VASP_PP_PATH   where missing POTCARs are assembled from (POTCAR.spec):
#                   $PMG_VASP_PSP_DIR/POT_GGA_PAW_PBE/POTCAR.<symbol>[.gz] (pymatgen layout) or
#                   $VASP_PP_PATH/potpaw_PBE/<symbol>/POTCAR (VASP layout)
set -euo pipefail

ROOT="${{CSCLI_VASP_ROOT:-{root}}}"
TASK="${{SLURM_ARRAY_TASK_ID:?run inside sbatch --array (or set SLURM_ARRAY_TASK_ID)}}"
FOLDER="$(sed -n "$((TASK + 1))p" "$ROOT/{FOLDER_LIST}")"
if [ -z "$FOLDER" ]; then
    echo "task $TASK: no line $((TASK + 1)) in $ROOT/{FOLDER_LIST}" >&2
    exit 1
fi
cd "$ROOT/$FOLDER"

if [ -f OUTCAR ] && grep -q "General timing and accounting" OUTCAR; then
    echo "$FOLDER: finished already, skipping"
    exit 0
fi

if [ ! -s POTCAR ]; then
    : > POTCAR.part
    while read -r SYMBOL; do
        [ -n "$SYMBOL" ] || continue
        FOUND=""
        for CANDIDATE in \\
            "${{PMG_VASP_PSP_DIR:-/nonexistent}}/POT_GGA_PAW_PBE/POTCAR.$SYMBOL" \\
            "${{PMG_VASP_PSP_DIR:-/nonexistent}}/POT_GGA_PAW_PBE/POTCAR.$SYMBOL.gz" \\
            "${{VASP_PP_PATH:-/nonexistent}}/potpaw_PBE/$SYMBOL/POTCAR" \\
            "${{VASP_PP_PATH:-/nonexistent}}/potpaw_PBE/$SYMBOL/POTCAR.Z"; do
            if [ -f "$CANDIDATE" ]; then FOUND="$CANDIDATE"; break; fi
        done
        if [ -z "$FOUND" ]; then
            echo "$FOLDER: no POTCAR for $SYMBOL; set PMG_VASP_PSP_DIR or VASP_PP_PATH" >&2
            rm -f POTCAR.part
            exit 1
        fi
        case "$FOUND" in
            *.gz|*.Z) gzip -dc "$FOUND" >> POTCAR.part ;;
            *) cat "$FOUND" >> POTCAR.part ;;
        esac
    done < POTCAR.spec
    mv POTCAR.part POTCAR
fi

echo "$FOLDER: running ${{VASP_CMD:-vasp_std}} on $(hostname)"
${{VASP_CMD:-vasp_std}} > vasp.out 2>&1
"""


# ----------------------------------------------------------------------------- collect


@dataclass
class RunReport:
    dir: str
    status: str  # ok | unconverged | incomplete | failed
    reader: str | None = None  # vasprun.xml | OUTCAR
    parent_id: str | None = None
    n_steps: int = 0
    scf_unconverged_steps: list[int] = field(default_factory=list)
    relax_converged: bool | None = None
    finished: bool | None = None
    collected_steps: list[int] = field(default_factory=list)
    message: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def find_run_dirs(paths: Iterable[str]) -> list[Path]:
    """VASP run folders from arguments: a run folder itself, a ``folders.txt`` root, or any folder
    whose sub-folders (recursively) hold INCAR/vasprun.xml/OUTCAR."""
    markers = ("vasprun.xml", "OUTCAR", "INCAR", FRAME_FILE)
    found: list[Path] = []
    for text in paths:
        p = Path(text)
        if not p.exists():
            raise DataError(f"{text}: no such directory")
        if p.is_file():
            p = p.parent
        if any((p / m).exists() for m in markers):
            found.append(p)
            continue
        listing = p / FOLDER_LIST
        if listing.exists():
            found.extend(p / line.strip() for line in listing.read_text().splitlines() if line.strip())
            continue
        subs = sorted({q.parent for m in markers for q in p.rglob(m)})
        if not subs:
            raise DataError(f"{text}: no VASP run folders in it (no INCAR, vasprun.xml or OUTCAR)")
        found.extend(subs)
    unique, seen = [], set()
    for d in found:
        key = d.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(d)
    return unique


def _xml_meta(path: Path) -> dict:
    """Per ionic step the number of SCF steps, plus NELM/NSW/IBRION, and whether the file is whole."""
    import xml.etree.ElementTree as ET

    meta = {"scf_counts": [], "NELM": 60, "NSW": 0, "IBRION": -1, "finished": False}
    depth_calc = 0
    n_sc = 0
    try:
        for event, elem in ET.iterparse(str(path), events=("start", "end")):
            tag = elem.tag
            if event == "start" and tag == "calculation":
                depth_calc += 1
                n_sc = 0
            elif event == "end":
                if tag == "scstep" and depth_calc:
                    n_sc += 1
                elif tag == "calculation":
                    depth_calc -= 1
                    if elem.find("energy") is not None:
                        meta["scf_counts"].append(n_sc)
                    elem.clear()
                elif tag == "i" and elem.get("name") in ("NELM", "NSW", "IBRION") and not depth_calc:
                    try:
                        meta[elem.get("name")] = int(float(elem.text))
                    except (TypeError, ValueError):
                        pass
                elif tag == "modeling":
                    meta["finished"] = True
    except ET.ParseError:
        pass
    return meta


def _outcar_meta(path: Path) -> dict:
    meta = {"scf_counts": [], "NELM": 60, "NSW": 0, "IBRION": -1, "finished": False, "reached": False}
    counts: dict[int, int] = {}
    rx_iter = re.compile(r"Iteration\s+(\d+)\(\s*(\d+)\)")
    with open(path, errors="replace") as fh:
        for line in fh:
            if "Iteration" in line and "----" in line:
                m = rx_iter.search(line)
                if m:
                    counts[int(m.group(1))] = max(counts.get(int(m.group(1)), 0), int(m.group(2)))
            elif line.lstrip().startswith(("NELM", "NSW", "IBRION")) and "=" in line:
                for key in ("NELM", "NSW", "IBRION"):
                    m = re.search(rf"\b{key}\s*=\s*(-?\d+)", line)
                    if m:
                        meta[key] = int(m.group(1))
            elif "General timing and accounting" in line:
                meta["finished"] = True
            elif "reached required accuracy" in line:
                meta["reached"] = True
    meta["scf_counts"] = [counts[k] for k in sorted(counts)]
    return meta


def read_run(folder: Path) -> tuple[list[Atoms], RunReport]:
    """All complete ionic steps of one run (energy, forces, stress in info/arrays) and its report.

    vasprun.xml is read first (ASE's reader), OUTCAR when vasprun.xml is missing or holds no
    complete step. A step whose SCF loop ran NELM iterations is marked unconverged.
    """
    from ase.io import read

    from cscli.core.frames import absorb_calculator_results, frame_from_dict

    report = RunReport(dir=str(folder), status="failed")
    parent = None
    frame_file = folder / FRAME_FILE
    if frame_file.exists():
        try:
            parent = frame_from_dict(json.loads(frame_file.read_text()))
            report.parent_id = str(parent.info.get("id"))
        except (ValueError, DataError):
            parent = None
    if report.parent_id is None:
        report.parent_id = safe_name(folder.name)

    steps: list = []
    meta = None
    errors = []
    for name, fmt, meta_fn in (("vasprun.xml", "vasp-xml", _xml_meta), ("OUTCAR", "vasp-out", _outcar_meta)):
        path = folder / name
        if not path.exists() or path.stat().st_size == 0:
            continue
        try:
            images = read(str(path), index=":", format=fmt)
        except UnicodeDecodeError:
            errors.append(f"{name}: not a VASP output file (not UTF-8 text)")
            continue
        except Exception as exc:  # noqa: BLE001 - any parser failure means "try the next file"
            errors.append(f"{name}: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}")
            continue
        images = [
            a
            for a in images
            if a.calc is not None and "energy" in a.calc.results and a.calc.results.get("forces") is not None
        ]
        if not images:
            errors.append(f"{name}: no complete ionic step")
            continue
        steps, meta, report.reader = images, meta_fn(path), name
        break
    if not steps:
        report.message = "; ".join(errors) or "no vasprun.xml or OUTCAR"
        return [], report

    counts = meta["scf_counts"][: len(steps)]
    counts += [0] * (len(steps) - len(counts))
    nelm = meta["NELM"]
    report.n_steps = len(steps)
    report.scf_unconverged_steps = [i for i, c in enumerate(counts) if c >= nelm]
    report.finished = bool(meta["finished"])
    static = meta["NSW"] <= 1 or meta["IBRION"] == -1
    if report.reader == "OUTCAR" and meta.get("reached"):
        report.relax_converged = True
    else:
        report.relax_converged = static or len(steps) < meta["NSW"]
    if not report.finished:
        report.status = "incomplete"
        report.message = "run did not finish (killed, timed out or still running)"
    elif not report.relax_converged:
        report.status = "unconverged"
        report.message = f"ionic loop hit NSW={meta['NSW']} without converging"
    else:
        report.status = "ok"
    if report.scf_unconverged_steps:
        extra = f"{len(report.scf_unconverged_steps)} ionic step(s) hit NELM={nelm} (SCF unconverged)"
        report.message = f"{report.message}; {extra}" if report.message else extra

    frames = []
    for i, atoms in enumerate(steps):
        atoms = absorb_calculator_results(atoms)
        atoms.set_constraint()
        results = {k: atoms.info[k] for k in ("energy", "free_energy", "stress") if k in atoms.info}
        info = atoms.info
        info.clear()
        if parent is not None:
            for key in ("iteration", "history", "generator"):
                if key in parent.info:
                    info[key] = parent.info[key]
        info["id"] = f"{report.parent_id}-step{i:03d}"
        info["parent_id"] = report.parent_id
        info["energy"] = float(results["energy"])
        if "free_energy" in results:
            info["free_energy"] = float(results["free_energy"])
        if "stress" in results:
            info["stress"] = results["stress"]
        info["energy_per_atom"] = info["energy"] / len(atoms)
        info["label_method"] = "dft-vasp"
        info["vasp_step"] = i
        info["vasp_n_steps"] = len(steps)
        info["vasp_scf_converged"] = i not in report.scf_unconverged_steps
        info["vasp_relax_converged"] = bool(report.relax_converged)
        info["vasp_dir"] = str(folder)
        info["source"] = str(folder / report.reader)
        frames.append(atoms)
    return frames, report


def parse_per_run(text: str) -> tuple[int, int]:
    """``"5"`` or ``"1-5"`` → (lo, hi), 1 <= lo <= hi."""
    try:
        parts = [int(x) for x in str(text).split("-")]
    except ValueError:
        raise UsageError(f"--per-run {text!r}: expected N or LO-HI, e.g. 5 or 1-5") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or parts[0] < 1 or parts[0] > parts[1]:
        raise UsageError(f"--per-run {text!r}: need 1 <= LO <= HI")
    return parts[0], parts[1]


def sample_steps(usable: Sequence[int], n_steps: int, per_run: tuple[int, int], rng) -> list[int]:
    """The paper's recipe: k steps per trajectory (k drawn in ``per_run``), always the first and
    the last step (when k >= 2; the last alone when k = 1), the rest uniformly among the others.

    ``usable`` are the SCF-converged step indices; first/last mean the first/last usable ones.
    """
    usable = sorted(usable)
    if not usable:
        return []
    lo, hi = per_run
    k = int(rng.integers(lo, hi + 1)) if hi > lo else lo
    k = min(k, len(usable))
    if k == 1:
        return [usable[-1]]
    first, last = usable[0], usable[-1]
    middle = usable[1:-1]
    extra = sorted(int(x) for x in rng.choice(middle, size=k - 2, replace=False)) if k > 2 else []
    return [first, *extra, last]


def collect_runs(
    folders: Sequence[Path],
    per_run: tuple[int, int] = (5, 5),
    seed: int | None = 0,
    all_steps: bool = False,
    require_converged: bool = False,
    keep_scf_unconverged: bool = False,
):
    """Yield collected frames; reports accumulate in the returned list (filled while iterating).
    Runs that failed, did not converge or hit NELM are reported as warnings. With sampled steps
    (not ``all_steps``) each frame records the seed in ``info['collect_seed']``."""
    import hashlib

    import numpy as np

    reports: list[RunReport] = []

    def gen():
        for folder in folders:
            frames, report = read_run(folder)
            reports.append(report)
            if not frames:
                _log.warning(f"{folder}: failed: {report.message}")
                continue
            if report.status != "ok" or report.scf_unconverged_steps:
                _log.warning(f"{folder}: {report.status}: {report.message}")
            if require_converged and report.status != "ok":
                report.message += " (skipped: --require-converged)"
                continue
            usable = [i for i in range(len(frames)) if keep_scf_unconverged or i not in report.scf_unconverged_steps]
            if all_steps:
                chosen = usable
            else:
                # one generator per run, seeded by (seed, parent id): order-independent, reproducible
                key = hashlib.sha1(f"{seed}:{report.parent_id}".encode()).digest()
                rng = np.random.default_rng(int.from_bytes(key[:8], "big"))
                chosen = sample_steps(usable, len(frames), per_run, rng)
            report.collected_steps = list(chosen)
            for i in chosen:
                if not all_steps:
                    frames[i].info["collect_seed"] = seed
                yield frames[i]

    return gen(), reports


__all__ = [
    "EDIFF_PER_ATOM",
    "ENCUT",
    "RECIPROCAL_DENSITY",
    "RunReport",
    "collect_runs",
    "find_run_dirs",
    "read_run",
    "relax_input_set",
    "sample_steps",
    "sbatch_script",
    "write_vasp_inputs",
]
