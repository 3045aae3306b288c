"""Frame streams: the one place where cscli reads and writes structures.

A *frame* is an :class:`ase.Atoms` whose ``info`` and ``arrays`` carry everything cscli knows about
it. Frames travel between commands as extended XYZ (ASE's ``extxyz``) or JSON lines, through files
or stdin/stdout (``-``). Readers stream: one frame is parsed at a time, so a 100k-frame file is
never held in memory by a command that does not need it.

Frame schema (keys in ``atoms.info`` unless marked *arrays*)
-------------------------------------------------------------
Identity and provenance
    ``id``              stable identifier; kept if present, else ``<file stem>-<index>``
                        (``stdin-<index>`` for standard input)
    ``parent_id``       id of the frame this one was derived from (perturb, collect)
    ``source``          file the frame was first read from
    ``iteration``       exploration-loop iteration that produced the frame
    ``history``         ``;``-separated list of the cscli commands applied, e.g. ``relax(chgnet)``
Energies and forces (eV, Å; stress in eV/Å³, Voigt order xx yy zz yz xz xy, ASE sign convention)
    ``energy``          total energy;  ``energy_per_atom``
    ``forces``          *arrays*, (N, 3)
    ``stress``          6 numbers
    ``model``           model that produced ``energy``/``forces`` (e.g. ``chgnet-0.3.0``)
    ``label_method``    how the labels were made: ``dft-vasp``, ``dft-gpaw``, ``mlff-oracle:<model>``
relax
    ``relax_converged`` bool; ``relax_steps``; ``relax_fmax`` final max force (eV/Å);
    ``relax_optimizer``; ``relax_cell_filter`` (``frechet`` or ``fixed``)
perturb
    ``perturb_sigma``   displacement standard deviation used (Å); ``perturb_sigma_rel`` (in units
                        of a = (V/N)^(1/3)); ``perturb_strain`` largest principal strain; ``perturb_seed``
generate
    ``generator``, ``chemical_system``, ``generate_seed``, ``spacegroup_target``, ``formula_units``,
    ``generate_attempts``, ``seed_motifs`` (motif backend, e.g. ``PS4:4;S:2``); MatterGen:
    ``e_hull_target``, ``batch``, ``guidance``, ``mattergen_model``, ``outside_system``
hull and sun-filter
    ``e_hull`` (eV/atom), ``e_form_per_atom``, ``decomposition`` (JSON string: formula → fraction),
    ``is_stable``, ``is_unique``, ``is_novel``, ``is_sun``, ``duplicate_of``, ``matches_reference``
dft-select, collect, label
    ``dft_bin`` (E_hull bin label); ``vasp_dir``, ``vasp_step``, ``vasp_n_steps``,
    ``vasp_scf_converged``, ``vasp_relax_converged`` (collect); ``label_settings`` (JSON string of
    the DFT settings), ``label_scf_iterations`` (label)
motifs
    ``motifs`` (JSON string: list of {hash, name, count}), ``motif_names`` (plain string),
    ``motif_charge_balance`` (sum of unit charges plus nominal cation charges; 0 = balanced),
    ``fingerprint``, ``fingerprint_kind`` (with ``--map``)
entropy-select
    ``delta_entropy`` (nats), ``entropy_select_step`` (1-based order of selection)
failures
    ``error``           message, on frames written to ``--failed``
provenance: seeds and model versions (issue 10)
    ``model_version``   backend package and version beside ``model``, e.g. ``sevenn 0.13.0``
                        (relax, label with a model)
    ``dft_select_seed`` seed of ``dft-select --method random``; ``collect_seed`` seed of the
                        ionic-step sampling of ``collect``; ``tsne_seed`` seed of ``motifs --map``
                        (each drawn and recorded when ``--seed`` is not given)
md-screen (D in cm²/s, σ in mS/cm; docs/md-screen.md)
    ``md_skipped`` why a frame was not simulated (a filter, e.g. ``x_S = 0.333 <= 0.45``);
    ``md_d_<El>`` D of element El from the weighted fit of the all-origin MSD, ``md_d_<El>_err``
    its block-averaging standard error, ``md_d_<El>_endpoint`` the paper's one-origin formula;
    ``md_sigma_li``, ``md_sigma_li_err``, ``md_sigma_li_endpoint`` Nernst–Einstein σ of the mobile
    ion (``md_sigma_<el>`` for ``--mobile El``); ``md_kinetically_stable`` (every other element's D
    below ``--d-framework-max``); ``md_is_conductor`` (also σ ≥ ``--sigma-min``);
    ``md_temperature_mean`` (K, NVT steps); ``md_volume_per_atom_npt`` (Å³) and
    ``md_pressure_mean_npt`` (bar), second half of NPT; ``md_steps``; ``md_supercell`` (``1x2x2``);
    ``md_n_atoms``; ``md_analysis_ps``, ``md_fit_start_ps``, ``md_fit_end_ps`` (the window used);
    ``md_max_framework_displacement`` (Å, drift-corrected); ``md_settings`` (JSON: protocol,
    integrators, ASE and backend versions); ``seed`` (velocities); ``model``. With
    ``--from-trajectory``: ``md_temperature``, ``md_timestep_fs``, ``md_n_frames``
qha (``cscli qha``; 2-D arrays are indexed [temperature][pressure], JSON text in extxyz)
    ``qha_temperatures`` (K), ``qha_pressures`` (GPa): the grid
    ``qha_gibbs_per_atom`` G(T, p) (eV/atom): min over V of E(V) + F_ph(V, T) + pV
    ``qha_volume_per_atom`` (Å³/atom), ``qha_bulk_modulus`` (GPa), ``qha_thermal_expansion``
    (volumetric, 1/K), ``qha_heat_capacity_p`` (J/K/mol of atoms), each T × p
    ``qha_scales`` lattice scale factors computed; ``qha_min_frequency`` lowest phonon frequency
    (THz, mesh and Γ) at each of them; ``qha_scales_used`` those kept in the fit (no imaginary
    modes); ``qha_imaginary`` bool, some volume had imaginary modes; ``qha_fit_ok`` (T × p bools:
    the EOS minimum is backed by the computed volumes; ``hull --at`` refuses the others);
    ``qha_eos``, ``qha_supercell``
    (diagonal multiples), ``qha_mesh``; ``qha_soft_modes`` (``--follow-soft-modes`` only; JSON list,
    one record per imaginary Γ mode followed: ``scale``, ``frequency`` THz, ``energy_change``
    meV/atom at that volume, ``spacegroup_before``, ``spacegroup_after``; ``[]`` when none was); ``qha_settings`` (JSON string: settings, model, backend and
    phonopy versions); ``model``
hull --at T,p
    ``hull_condition``  what the hull used: ``E(0 K)`` or ``G(300 K, 2 GPa)``
density (label --density-dir, density predict)
    ``density_file`` (path of the frame's CHGCAR), ``density_electrons`` (∫ρ dV of that density,
    electrons; GPAW pseudo-density or model prediction), ``density_model`` (model file and
    version, density predict), ``density_valence_electrons`` (the model's valence count)

Results written by ASE calculators (energy, forces, stress) are moved into ``info``/``arrays`` on
read, so that every command sees one representation; ``ase.io.read`` of a cscli output still gives
``atoms.get_potential_energy()`` because ASE turns those keys back into a calculator.
"""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from cscli.core.errors import DataError, FrameError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms

STREAM_FORMATS = ("extxyz", "jsonl")
INPUT_ONLY_FORMATS = ("cif", "poscar")
_EXTENSIONS = {
    ".extxyz": "extxyz",
    ".xyz": "extxyz",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".cif": "cif",
    ".vasp": "poscar",
    ".poscar": "poscar",
}
CALC_INFO_KEYS = ("energy", "free_energy", "stress")
CALC_ARRAY_KEYS = ("forces",)
DEFAULT_MIN_DISTANCE = 0.5  # Å; closer atoms mean a broken structure, not chemistry
MIN_CELL_HEIGHT = 1e-3  # Å between lattice planes of a periodic direction; thinner is a flat cell
MAX_ATOMIC_NUMBER = 118
NOT_A_STRUCTURE = "not a structure file (extxyz/jsonl/cif/poscar)"


def format_from_path(path: str) -> str | None:
    """Format implied by a file name, or None when the name says nothing."""
    name = Path(path).name
    lower = name.lower()
    if lower.endswith(".gz"):
        raise UsageError(f"{path}: compressed files are not read directly; pipe them: zcat {path} | cscli ...")
    if lower in ("poscar", "contcar") or lower.startswith(("poscar", "contcar")):
        return "poscar"
    return _EXTENSIONS.get(Path(lower).suffix)


def sniff_format(first_line: str) -> str | None:
    """Guess a stream's format from its first non-blank line."""
    stripped = first_line.strip()
    if stripped.startswith("{"):
        return "jsonl"
    if stripped.isdigit():
        return "extxyz"
    if stripped.lower().startswith("data_") or stripped.startswith("#"):
        return "cif"
    return None


# ----------------------------------------------------------------------------- conversion helpers


def _to_builtin(value):
    """Numpy scalars/arrays → JSON-friendly Python objects."""
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, dict):
        return {str(k): _to_builtin(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_builtin(v) for v in value]
    return value


to_builtin = _to_builtin  # public name for modules that write JSON from frame values


def absorb_calculator_results(atoms: Atoms) -> Atoms:
    """Move results held by ``atoms.calc`` into ``info``/``arrays`` and drop the calculator."""
    import numpy as np

    calc = atoms.calc
    if calc is None:
        return atoms
    results = getattr(calc, "results", {}) or {}
    for key in CALC_INFO_KEYS:
        if key in results and results[key] is not None:
            value = np.asarray(results[key], dtype=float)
            if key == "stress" and value.shape == (3, 3):
                from ase.stress import full_3x3_to_voigt_6_stress

                value = full_3x3_to_voigt_6_stress(value)
            atoms.info[key] = float(value) if value.ndim == 0 else value
    for key in CALC_ARRAY_KEYS:
        if key in results and results[key] is not None:
            atoms.arrays[key] = np.asarray(results[key], dtype=float).reshape(len(atoms), 3)
    atoms.calc = None
    return atoms


def frame_to_dict(atoms: Atoms) -> dict:
    """One JSON-lines record: structure plus ``info`` and per-atom ``arrays``."""
    skip_arrays = {"numbers", "positions"}
    return {
        "symbols": atoms.get_chemical_symbols(),
        "positions": _to_builtin(atoms.positions),
        "cell": _to_builtin(atoms.cell.array),
        "pbc": [bool(p) for p in atoms.pbc],
        "info": _to_builtin(dict(atoms.info)),
        "arrays": {k: _to_builtin(v) for k, v in atoms.arrays.items() if k not in skip_arrays},
    }


def frame_from_dict(record: dict) -> Atoms:
    """Inverse of :func:`frame_to_dict`; also accepts a pymatgen ``Structure.as_dict()``."""
    import numpy as np
    from ase import Atoms

    if record.get("@class") == "Structure":
        from pymatgen.core import Structure
        from pymatgen.io.ase import AseAtomsAdaptor

        atoms = AseAtomsAdaptor.get_atoms(Structure.from_dict(record))
        atoms.info.update(record.get("properties", {}) or {})
        return atoms
    try:
        symbols = record["symbols"] if "symbols" in record else record["numbers"]
        positions = record["positions"]
    except KeyError as exc:
        raise DataError(
            f"JSON frame lacks required key {exc.args[0]!r} (needs symbols or numbers, and positions)"
        ) from None
    try:
        atoms = Atoms(symbols=symbols, positions=positions, cell=record.get("cell"), pbc=record.get("pbc", False))
    except (KeyError, ValueError) as exc:
        raise DataError(f"JSON frame is not a valid structure: {_exc_text(exc)}") from None
    atoms.info.update(record.get("info", {}) or {})
    for key, value in (record.get("arrays") or {}).items():
        arr = np.asarray(value)
        if len(arr) != len(atoms):
            raise DataError(f"JSON frame array {key!r} has {len(arr)} rows for {len(atoms)} atoms")
        atoms.arrays[key] = arr
    return atoms


def _exc_text(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    if not text:
        return type(exc).__name__
    if isinstance(exc, KeyError):
        return f"unknown element or key {text[0]}"
    return text[0]


# ----------------------------------------------------------------------------- streaming parsers


def _iter_extxyz_blocks(lines: Iterator[str], where: str) -> Iterator[tuple[str, int]]:
    """Split an extended-XYZ line stream into per-frame text blocks without seeking."""
    lineno = 0
    first = True
    for line in lines:
        lineno += 1
        if not line.strip():
            continue
        start = lineno
        try:
            natoms = int(line.strip())
        except ValueError:
            what = f"{NOT_A_STRUCTURE}: " if first else ""
            raise DataError(f"{where}:{lineno}: {what}expected an atom count, got {line.strip()[:60]!r}") from None
        first = False
        block = [line]
        for _ in range(natoms + 1):
            nxt = next(lines, None)
            if nxt is None:
                raise DataError(f"{where}:{start}: frame truncated (expected {natoms} atoms)")
            lineno += 1
            block.append(nxt)
        yield "".join(block), start


def _parse_extxyz_block(block: str, where: str, lineno: int) -> Atoms:
    from ase.io.extxyz import read_xyz

    try:
        atoms = next(read_xyz(io.StringIO(block), index=0))
    except StopIteration:
        raise DataError(f"{where}:{lineno}: empty frame") from None
    except Exception as exc:  # ASE raises many types for bad text
        raise DataError(f"{where}:{lineno}: malformed extxyz frame: {_exc_text(exc)}") from None
    return absorb_calculator_results(atoms)


def _iter_jsonl(lines: Iterator[str], where: str) -> Iterator[Atoms]:
    first = True
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            what = f"{NOT_A_STRUCTURE}: " if first else ""
            raise DataError(f"{where}:{lineno}: {what}malformed JSON line: {exc.msg} (column {exc.colno})") from None
        if not isinstance(record, dict):
            raise DataError(f"{where}:{lineno}: a JSON line must be an object (a frame), got {type(record).__name__}")
        first = False
        try:
            yield frame_from_dict(record)
        except DataError as exc:
            raise DataError(f"{where}:{lineno}: {exc}") from None


def _read_whole(text_or_path, fmt: str, where: str) -> list[Atoms]:
    from ase.io import read

    ase_format = {"cif": "cif", "poscar": "vasp"}[fmt]
    try:
        frames = read(text_or_path, index=":", format=ase_format)
    except UnicodeDecodeError:
        raise DataError(f"{where}: {NOT_A_STRUCTURE}: not UTF-8 text") from None
    except Exception as exc:
        raise DataError(f"{where}: cannot read as {fmt}: {_exc_text(exc)}") from None
    return frames if isinstance(frames, list) else [frames]


@dataclass
class _Source:
    name: str  # for messages
    stem: str  # for derived ids
    lines: Iterator[str]
    handle: IO[str] | None


def _open_source(path: str) -> _Source:
    if path == "-":
        return _Source("<stdin>", "stdin", iter(sys.stdin), None)
    p = Path(path)
    if not p.exists():
        raise DataError(f"{path}: no such file")
    if p.is_dir():
        raise DataError(f"{path}: is a directory, expected a frame file")
    try:
        handle = open(p, encoding="utf-8")
    except OSError as exc:
        raise DataError(f"{path}: cannot open: {exc.strerror}") from None
    return _Source(path, p.name.split(".")[0] or p.name, iter(handle), handle)


def iter_frames(path: str = "-", fmt: str | None = None, check: bool = True) -> Iterator[Atoms]:
    """Stream frames from a path or ``-``, giving each a stable ``id`` and ``source``.

    The format comes from ``fmt``, else the file extension, else the first line (sniffed). Text
    that does not parse raises DataError naming the file (and line); with ``check`` (the default)
    every frame also passes :func:`check_frame`, and a frame that does not raises DataError
    ``FILE: frame ID: what is wrong``. Stream commands pass ``check=False`` and check each frame
    themselves, so that one broken frame fails alone instead of ending the run.
    """
    if fmt is not None and fmt not in STREAM_FORMATS + INPUT_ONLY_FORMATS:
        raise UsageError(f"unknown input format {fmt!r}; choose from {', '.join(STREAM_FORMATS + INPUT_ONLY_FORMATS)}")
    src = _open_source(path)
    try:
        fmt = fmt or (format_from_path(path) if path != "-" else None)
        first = None
        if fmt is None:
            for first in src.lines:
                if first.strip():
                    break
            if first is None or not first.strip():
                return
            fmt = sniff_format(first)
            if fmt is None:
                raise DataError(
                    f"{src.name}: {NOT_A_STRUCTURE}: cannot tell the format from "
                    f"{first.strip()[:40]!r}; pass --input-format if it is one"
                )
        lines = src.lines if first is None else _chain([first], src.lines)
        if fmt == "extxyz":
            raw = (_parse_extxyz_block(b, src.name, n) for b, n in _iter_extxyz_blocks(lines, src.name))
        elif fmt == "jsonl":
            raw = _iter_jsonl(lines, src.name)
        elif path == "-":
            raw = iter(_read_whole(io.StringIO("".join(lines)), fmt, src.name))
        else:
            raw = iter(_read_whole(path, fmt, src.name))
        for index, atoms in enumerate(raw):
            atoms.info.setdefault("id", f"{src.stem}-{index}")
            atoms.info["id"] = str(atoms.info["id"])
            atoms.info.setdefault("source", src.name if path != "-" else "stdin")
            if check:
                try:
                    check_frame(atoms)
                except FrameError as exc:
                    reason = str(exc).split(": ", 1)[-1]
                    raise DataError(f"{src.name}: frame {atoms.info['id']} (#{index + 1}): {reason}") from None
            yield atoms
    except UnicodeDecodeError:
        raise DataError(f"{src.name}: {NOT_A_STRUCTURE}: not UTF-8 text") from None
    finally:
        if src.handle is not None:
            src.handle.close()


def iter_many(paths: Iterable[str], fmt: str | None = None, check: bool = True) -> Iterator[Atoms]:
    """Frames of several inputs, in order."""
    for path in paths:
        yield from iter_frames(path, fmt, check)


def read_frames(path: str, fmt: str | None = None, check: bool = True) -> list[Atoms]:
    """All frames of one input, as a list (for commands that need the whole set)."""
    return list(iter_frames(path, fmt, check))


def first_frame(path: str, fmt: str | None = None) -> Atoms | None:
    """Parse only the first frame of a file (None when it has none): text errors surface now.

    Commands call it on each input before loading a model, so that a file that is not a structure
    file fails in a moment, not after a minute of model loading (reading itself is lazy).
    """
    frames = iter_frames(path, fmt, check=False)
    try:
        return next(frames, None)
    finally:
        frames.close()


def _chain(head: list[str], tail: Iterator[str]) -> Iterator[str]:
    yield from head
    yield from tail


# ----------------------------------------------------------------------------- validation


def check_frame(atoms: Atoms, min_distance: float = DEFAULT_MIN_DISTANCE) -> None:
    """Raise FrameError (``frame ID: what is wrong``) for a frame no command should compute on.

    The one input check of cscli: atoms present, known elements, finite positions and cell, a
    periodic cell that is not flat (zero volume), no two atoms closer than ``min_distance`` Å
    (periodic images included). Readers run it on every frame (:func:`iter_frames`); stream
    commands run it per frame so that one broken frame fails alone (:func:`cscli.core.stream.run_stream`).
    """
    import numpy as np

    fid = atoms.info.get("id", "?")
    if len(atoms) == 0:
        raise FrameError(f"frame {fid}: has no atoms")
    numbers = atoms.numbers
    unknown = (numbers < 1) | (numbers > MAX_ATOMIC_NUMBER)
    if unknown.any():
        symbol = atoms.get_chemical_symbols()[int(np.argmax(unknown))]
        raise FrameError(f"frame {fid}: unknown element {symbol!r} (atomic number {numbers[unknown][0]})")
    if not np.all(np.isfinite(atoms.positions)):
        raise FrameError(f"frame {fid}: non-finite positions (NaN or inf)")
    cell = atoms.cell.array
    if not np.all(np.isfinite(cell)):
        raise FrameError(f"frame {fid}: non-finite cell (NaN or inf)")
    heights = _periodic_heights(atoms)
    if heights.min() < MIN_CELL_HEIGHT:
        raise FrameError(
            f"frame {fid}: periodic but the cell has zero volume "
            f"({abs(atoms.cell.volume):.3g} Å³; lattice planes {heights.min():.3g} Å apart)"
        )
    dmin = _closest_pair_below(atoms, min_distance, heights)
    if dmin < min_distance:
        raise FrameError(f"frame {fid}: overlapping atoms ({dmin:.3f} Å apart, bound {min_distance} Å)")


def _periodic_heights(atoms: Atoms):
    """Distance between lattice planes along each axis (inf along a non-periodic one; 0 when flat)."""
    import numpy as np

    cell = atoms.cell.complete().array  # non-periodic zero vectors filled in, periodic ones kept
    volume = abs(float(np.linalg.det(cell)))
    areas = np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)
    heights = np.divide(volume, areas, out=np.zeros(3), where=areas > 0)
    return np.where(atoms.pbc, heights, np.inf)


def _closest_pair_below(atoms: Atoms, bound: float, heights) -> float:
    """Shortest interatomic distance if it is below ``bound`` (periodic images included), else inf.

    A KD-tree over the atoms wrapped into the cell plus the periodic images within ``bound`` of
    it: cheap enough to run on every frame read (ASE's neighbour list bins the whole cell in
    ``bound``-sized boxes, several times slower for a 0.5 Å bound).
    """
    import numpy as np
    from scipy.spatial import cKDTree

    if heights.min() <= bound:  # images beyond the next cell can be within bound: ASE's search
        from ase.neighborlist import neighbor_list

        d = neighbor_list("d", atoms, bound)
        return float(d.min()) if len(d) else float("inf")
    points = atoms.positions
    if atoms.pbc.any():
        cell = atoms.cell.complete().array
        frac = np.linalg.solve(cell.T, points.T).T
        frac[:, atoms.pbc] %= 1.0
        ranges = [(-1, 0, 1) if p else (0,) for p in atoms.pbc]
        shifts = np.array([(i, j, k) for i in ranges[0] for j in ranges[1] for k in ranges[2]], dtype=float)
        images = (frac[None, :, :] + shifts[:, None, :]).reshape(-1, 3)
        margin = bound / np.where(atoms.pbc, heights, 1.0)  # fractional width of a bound-thick slab
        keep = np.all((images > -margin) & (images < 1 + margin) | ~atoms.pbc, axis=1)
        points = images[keep] @ cell  # two images of one atom are a lattice vector (> bound) apart
    if len(points) < 2:
        return float("inf")
    pairs = cKDTree(points).query_pairs(bound, output_type="ndarray")
    if len(pairs) == 0:
        return float("inf")
    return float(np.linalg.norm(points[pairs[:, 0]] - points[pairs[:, 1]], axis=1).min())


def info_number(atoms: Atoms, key: str, hint: str, error: type[Exception] = DataError) -> float:
    """The finite number ``atoms.info[key]``, or ``error`` with one line naming the frame and ``hint``
    (what to run to get the key), e.g. ``frame x: no e_hull (info['e_hull']); run `cscli hull` first``."""
    import math

    fid = atoms.info.get("id", "?")
    value = atoms.info.get(key)
    if value is None:
        raise error(f"frame {fid}: no {key} (info[{key!r}]); {hint}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise error(f"frame {fid}: {key} {value!r} is not a number") from None
    if not math.isfinite(number):
        raise error(f"frame {fid}: {key} is not finite ({number})")
    return number


def min_interatomic_distance(atoms: Atoms, search: float = 3.0) -> float:
    """Shortest distance between two atoms, periodic images included (inf if none within ``search``)."""
    from ase.neighborlist import neighbor_list

    if len(atoms) == 1 and not atoms.pbc.any():
        return float("inf")
    d = neighbor_list("d", atoms, search)
    return float(d.min()) if len(d) else float("inf")


# ----------------------------------------------------------------------------- writing


def frame_to_text(atoms: Atoms, fmt: str) -> str:
    """Serialise one frame to its text record (extxyz block or one JSON line)."""
    if fmt == "jsonl":
        return json.dumps(frame_to_dict(atoms), separators=(",", ":")) + "\n"
    if fmt == "extxyz":
        from ase.io.extxyz import write_xyz

        atoms = atoms.copy()  # write_xyz must not see a calculator; results live in info/arrays
        atoms.calc = None
        atoms.info = {k: _extxyz_value(v) for k, v in atoms.info.items()}
        if "stress" in atoms.info:  # extxyz stores stress as a 3x3 matrix
            import numpy as np
            from ase.stress import voigt_6_to_full_3x3_stress

            stress = np.asarray(atoms.info["stress"], dtype=float)
            atoms.info["stress"] = voigt_6_to_full_3x3_stress(stress) if stress.shape == (6,) else stress.reshape(3, 3)
        buf = io.StringIO()
        write_xyz(buf, [atoms], columns=None, write_results=False)
        return buf.getvalue()
    raise UsageError(f"unknown output format {fmt!r}; choose from {', '.join(STREAM_FORMATS)}")


def _extxyz_value(value):
    """extxyz has no nested values: store dicts and lists of mixed items as JSON strings."""
    if isinstance(value, dict) or (
        isinstance(value, (list, tuple)) and any(isinstance(v, (dict, list, str)) for v in value)
    ):
        return json.dumps(_to_builtin(value))
    if value is None:
        return "None"
    return value


_DATA_STDOUT: IO[str] | None = None


def claim_stdout() -> None:
    """Reserve the process's stdout for frames; anything else printed goes to stderr.

    Model backends print banners (CHGNet) or C++ logs to stdout, which would corrupt a frame
    stream in a pipe. CLI commands call this once: fd 1 is duplicated for data and then pointed at
    stderr, so even C-level writes stay out of the data.
    """
    global _DATA_STDOUT
    if _DATA_STDOUT is not None or not _has_fileno(sys.stdout):
        return
    sys.stdout.flush()
    data_fd = os.dup(sys.stdout.fileno())
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    _DATA_STDOUT = os.fdopen(data_fd, "w", encoding="utf-8")
    sys.stdout = sys.stderr


def data_stdout() -> IO[str]:
    return _DATA_STDOUT if _DATA_STDOUT is not None else sys.stdout


class FrameWriter:
    """Append frames to a file or stdout, one flushed write per frame.

    Each frame is serialised first and written with a single call, so a process killed between
    frames leaves only whole frames behind; :func:`scan_output` trims a torn last frame anyway.
    An existing file is replaced (``append=False``) only when the first frame is written or the
    writer closes normally: a command that fails before writing leaves an earlier output as it
    was, and so does a normal close with nothing written when ``keep_if_empty``.
    """

    def __init__(self, path: str = "-", fmt: str | None = None, append: bool = False, keep_if_empty: bool = False):
        self.path = path
        self.fmt = fmt or (format_from_path(path) if path != "-" else None) or "extxyz"
        if self.fmt not in STREAM_FORMATS:
            raise UsageError(f"{path}: cannot write format {self.fmt!r}; use .extxyz or .jsonl")
        self.count = 0
        self._mode = "a" if append else "w"
        self._keep_if_empty = keep_if_empty
        self._fh: IO[str] | None = None
        self._closed = False
        if path == "-":
            self._fh = data_stdout()
        else:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            open(path, "a", encoding="utf-8").close()  # fail now on an unwritable path; truncate later

    def _open(self) -> IO[str]:
        if self._fh is None:
            self._fh = open(self.path, self._mode, encoding="utf-8")
        return self._fh

    def write(self, atoms: Atoms) -> None:
        text = frame_to_text(atoms, self.fmt)
        fh = self._open()
        fh.write(text)
        fh.flush()
        self.count += 1

    def close(self, failed: bool = False) -> None:
        if self.path == "-" or self._closed:
            return
        self._closed = True
        if self._fh is None and (failed or self._keep_if_empty):
            return
        self._open().close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        self.close(failed=exc_type is not None)


def _has_fileno(stream) -> bool:
    try:
        stream.fileno()
        return True
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return False


def write_frames(frames: Iterable[Atoms], path: str = "-", fmt: str | None = None) -> int:
    with FrameWriter(path, fmt) as writer:
        for atoms in frames:
            writer.write(atoms)
        return writer.count


def scan_output(path: str, fmt: str | None = None, repair: bool = True) -> set[str]:
    """Ids already in an output file; trims a torn last frame (from a killed run) when ``repair``.

    Reads only the header line of each extxyz frame, so it is cheap on large outputs.
    """
    p = Path(path)
    if not p.exists() or p.stat().st_size == 0:
        return set()
    fmt = fmt or format_from_path(path) or "extxyz"
    ids: set[str] = set()
    good_end = 0
    with open(p, "rb") as fh:
        if fmt == "jsonl":
            for line in fh:
                try:
                    if not line.endswith(b"\n"):
                        raise ValueError("no newline")
                    if line.strip():
                        ids.add(str(json.loads(line)["info"]["id"]))
                except (ValueError, KeyError, TypeError):
                    break
                good_end = fh.tell()
        else:
            from ase.io.extxyz import key_val_str_to_dict

            while True:
                head = fh.readline()
                if not head:
                    break
                if not head.strip():
                    good_end = fh.tell()
                    continue
                try:
                    natoms = int(head)
                    comment = fh.readline()
                    if not comment.endswith(b"\n"):
                        break
                    complete = True
                    for _ in range(natoms):
                        row = fh.readline()
                        if not row.endswith(b"\n"):
                            complete = False
                            break
                    if not complete:
                        break
                    info = key_val_str_to_dict(comment.decode("utf-8"))
                except (ValueError, UnicodeDecodeError):
                    break
                if "id" in info:
                    ids.add(str(info["id"]))
                good_end = fh.tell()
    size = p.stat().st_size
    if repair and good_end < size:
        from cscli.core.log import get_logger

        get_logger(__name__).warning(
            f"{path}: dropping a torn last frame ({size - good_end} bytes) left by an interrupted run"
        )
        with open(p, "r+b") as fh:
            fh.truncate(good_end)
    return ids


def info_json(atoms: Atoms, key: str, default=None):
    """An info value stored as JSON text in extxyz (dicts, nested lists) but native in JSON lines."""
    value = atoms.info.get(key, default)
    if isinstance(value, str) and value[:1] in "[{":
        return json.loads(value)
    return value


def remove_if_empty(path: str) -> None:
    if path != "-" and os.path.exists(path) and os.path.getsize(path) == 0:
        os.remove(path)


def read_refs(paths: Iterable[str], input_format: str | None = None) -> list[Atoms]:
    """Reference frames from one or more files (ids made unique per file)."""
    refs: list[Atoms] = []
    seen: set[str] = set()
    for path in paths:
        if path == "-":
            raise UsageError("--refs cannot be standard input (the frames come from there)")
        before = len(refs)
        for atoms in iter_frames(path, input_format):  # checked: a broken reference fails the run
            fid = str(atoms.info["id"])
            if fid in seen:  # two files may reuse ids (e.g. two iterations): keep both
                atoms.info["id"] = fid = f"{fid}@{path}"
            seen.add(fid)
            refs.append(atoms)
        if len(refs) == before:
            raise DataError(f"--refs {path}: no frames in it")
    return refs
