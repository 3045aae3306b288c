"""Drive MatterGen (an external program in its own environment) and prepare its fine-tuning data.

MatterGen pins its own torch/numpy, so cscli never imports it: it runs ``mattergen-generate``,
``csv-to-dataset`` and ``mattergen-finetune`` as commands. This module is the one place that
configures them: ``--mattergen-command``, else ``$CSCLI_MATTERGEN_CMD`` (default
``mattergen-generate`` on PATH), e.g. ``"conda run -n mattergen mattergen-generate"`` or
``/opt/mattergen/.venv/bin/mattergen-generate``; the other entry points run the same way
(:func:`sibling_command`), or behind the prefix in ``$CSCLI_MATTERGEN`` (a bin folder or a wrapper
such as ``"conda run -n mattergen"``, :func:`mattergen_command`).

Streaming: ``mattergen-generate`` writes its results only when all batches are done (a crash loses
everything, mattergen issue #88), so cscli runs it once per batch (``--num_batches=1``, its own
results folder and seed) and writes that batch's frames as soon as it finishes. Resume skips
batches whose frames are in the output already (or that were finished and fully filtered out).

Chemical-system leak: with ``chemical_system`` conditioning, some samples still contain other
elements (mattergen issue #117, about 10 %); they are dropped and counted.

What MatterGen writes into its results folder (``save_structures``): ``generated_crystals.extxyz``
(``ase.io.write`` of ``AseAtomsAdaptor.get_atoms`` of each structure) and
``generated_crystals_cif.zip`` (``gen_<i>.cif``); cscli reads the extxyz and falls back to the zip.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shlex
import shutil
import subprocess
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cscli.core.errors import DataError, ModelError, UsageError
from cscli.core.frames import info_number
from cscli.core.log import get_logger

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms

_log = get_logger(__name__)

ENV_COMMAND = "CSCLI_MATTERGEN_CMD"
ENV_PREFIX = "CSCLI_MATTERGEN"
ENV_CSV_COMMAND = "CSCLI_MATTERGEN_CSV_CMD"
DEFAULT_COMMAND = "mattergen-generate"
DEFAULT_PRETRAINED = "chemical_system_energy_above_hull"
EXTXYZ_NAME = "generated_crystals.extxyz"
CIF_ZIP_NAME = "generated_crystals_cif.zip"
DONE_MARKER = "cscli_batch_done.json"


# ----------------------------------------------------------------------------- the command


def resolve_command(value: str | None = None, env: str = ENV_COMMAND, default: str = DEFAULT_COMMAND) -> list[str]:
    """The command as an argv prefix: the option's value, else ``$CSCLI_MATTERGEN_CMD``, else default."""
    text = value or os.environ.get(env) or default
    try:
        argv = shlex.split(text)
    except ValueError as exc:
        raise UsageError(f"MatterGen command {text!r} cannot be parsed: {exc}") from None
    if not argv:
        raise UsageError("MatterGen command is empty")
    return argv


def csv_to_dataset_command(generate_cmd: list[str], value: str | None = None) -> list[str]:
    """``csv-to-dataset`` run the same way as ``mattergen-generate`` (same environment wrapper or folder):
    the last word of the generate command, when it is ``mattergen-generate``, is swapped for
    ``csv-to-dataset``. An explicit value or ``$CSCLI_MATTERGEN_CSV_CMD`` wins."""
    if value or os.environ.get(ENV_CSV_COMMAND):
        return resolve_command(value, ENV_CSV_COMMAND, "csv-to-dataset")
    return sibling_command(generate_cmd, "csv-to-dataset")


def sibling_command(generate_cmd: list[str], name: str) -> list[str]:
    """Another MatterGen entry point (``csv-to-dataset``, ``mattergen-finetune``) run the way
    ``mattergen-generate`` is: same wrapper words, same folder."""
    last = generate_cmd[-1]
    if Path(last).name == "mattergen-generate":
        return generate_cmd[:-1] + [str(Path(last).with_name(name)) if "/" in last else name]
    return [name]


def mattergen_command(name: str) -> list[str] | None:
    """Command line for a MatterGen entry point (``mattergen-finetune``, ``csv-to-dataset``…), or
    None when MatterGen is not configured.

    ``$CSCLI_MATTERGEN`` (a bin folder or a wrapper prefix) wins; else the entry point is run the
    way `cscli generate` runs ``mattergen-generate`` (``$CSCLI_MATTERGEN_CMD``); else PATH.
    """
    prefix = os.environ.get(ENV_PREFIX, "").strip()
    if not prefix and os.environ.get(ENV_COMMAND):
        argv = sibling_command(resolve_command(), name)
        return argv if shutil.which(argv[0]) else None
    if prefix:
        if os.path.isdir(prefix):
            exe = Path(prefix) / name
            return [str(exe)] if exe.exists() else None
        words = shlex.split(prefix)
        if shutil.which(words[0]) is None:  # e.g. a folder that does not exist, or no conda
            return None
        return [*words, name]
    found = shutil.which(name)
    return [found] if found else None


def check_program(argv: list[str], what: str = "MatterGen") -> str:
    """The program's path, or ModelError saying how to point cscli at it."""
    prog = argv[0]
    found = shutil.which(prog)
    if found is None:
        raise ModelError(
            f"{what} program {prog!r} not found (command: {shlex.join(argv)}). MatterGen lives in its own "
            f"environment (install it from its repository); point cscli at it with --mattergen-command or "
            f'${ENV_COMMAND}, e.g. "conda run -n mattergen mattergen-generate", or use --backend random'
        )
    return found


def check_checkpoint(model_path: str | None, pretrained_name: str | None) -> None:
    """A --model-path must be a MatterGen model folder (config.yaml + checkpoints/*.ckpt)."""
    if model_path and pretrained_name:
        raise UsageError("give either --model-path or --pretrained-name, not both")
    if model_path:
        p = Path(model_path)
        if not p.is_dir():
            raise ModelError(f"MatterGen checkpoint folder {model_path} does not exist")
        ckpts = list(p.glob("checkpoints/*.ckpt")) + list(p.glob("*.ckpt"))
        if not (p / "config.yaml").exists() or not ckpts:
            raise ModelError(
                f"{model_path} is not a MatterGen model folder (needs config.yaml and "
                f"checkpoints/*.ckpt, as mattergen-finetune writes them)"
            )


# ----------------------------------------------------------------------------- batches


def target_tag(e_hull: float) -> str:
    """0.03 → ``0.03`` (for ids; no exponent notation)."""
    return f"{e_hull:.4f}".rstrip("0").rstrip(".") if e_hull else "0"


@dataclass(frozen=True)
class Batch:
    iteration: int
    e_hull: float
    index: int  # within its target
    size: int
    seed: int | None

    @property
    def prefix(self) -> str:
        return f"mg-it{self.iteration}-eh{target_tag(self.e_hull)}-b{self.index}-"

    @property
    def name(self) -> str:
        return f"it{self.iteration}-eh{target_tag(self.e_hull)}-b{self.index}"

    def frame_id(self, k: int) -> str:
        return f"{self.prefix}{k}"


def plan_batches(
    targets: Sequence[float], num: int, batch_size: int, iteration: int = 0, seed: int | None = None
) -> list[Batch]:
    """``num`` structures per E_hull target, in batches of at most ``batch_size``; batch seeds are
    distinct (seed + running batch number)."""
    if num < 1 or batch_size < 1:
        raise UsageError("--num and --batch-size must be at least 1")
    batches = []
    running = 0
    for t in targets:
        for b in range(math.ceil(num / batch_size)):
            size = min(batch_size, num - b * batch_size)
            batches.append(Batch(iteration, float(t), b, size, None if seed is None else seed + running))
            running += 1
    return batches


def condition_text(chemical_system: str | None, e_hull: float | None) -> str:
    """``properties_to_condition_on`` as MatterGen's CLI (python-fire) reads it: a dict literal
    without spaces after the colons."""
    parts = []
    if e_hull is not None:
        parts.append(f"'energy_above_hull':{e_hull!r}")
    if chemical_system:
        parts.append(f"'chemical_system':'{chemical_system}'")
    return "{" + ",".join(parts) + "}"


def build_generate_argv(
    command: list[str],
    results_dir: str,
    batch: Batch,
    chemical_system: str | None,
    guidance: float = 2.0,
    model_path: str | None = None,
    pretrained_name: str | None = None,
    condition_on_e_hull: bool = True,
) -> list[str]:
    """The ``mattergen-generate`` command line of one batch (no shell: each word is an argv item)."""
    argv = list(command) + [str(results_dir)]
    if model_path:
        argv.append(f"--model_path={model_path}")
    else:
        argv.append(f"--pretrained-name={pretrained_name or DEFAULT_PRETRAINED}")
    argv += [f"--batch_size={batch.size}", "--num_batches=1"]
    cond = condition_text(chemical_system, batch.e_hull if condition_on_e_hull else None)
    if cond != "{}":
        argv.append(f"--properties_to_condition_on={cond}")
        argv.append(f"--diffusion_guidance_factor={guidance}")
    argv.append("--record_trajectories=False")
    if batch.seed is not None:
        argv.append(f"--seed={batch.seed}")
    return argv


# ----------------------------------------------------------------------------- reading results


def read_results(results_dir: str | Path) -> list[Atoms]:
    """Structures MatterGen wrote into a results folder, in its order (extxyz, else the CIF zip)."""
    from ase.io import read

    d = Path(results_dir)
    xyz = d / EXTXYZ_NAME
    if xyz.exists() and xyz.stat().st_size > 0:
        try:
            frames = read(str(xyz), index=":", format="extxyz")
        except Exception as exc:
            raise DataError(f"{xyz}: cannot read MatterGen output: {exc}") from None
        return frames if isinstance(frames, list) else [frames]
    zpath = d / CIF_ZIP_NAME
    if zpath.exists():
        import io

        out = []
        with zipfile.ZipFile(zpath) as zf:
            names = sorted(zf.namelist(), key=lambda n: int("".join(c for c in n if c.isdigit()) or 0))
            for name in names:
                if name.endswith(".cif"):
                    out.append(read(io.StringIO(zf.read(name).decode()), format="cif"))
        return out
    raise DataError(f"MatterGen wrote no {EXTXYZ_NAME} or {CIF_ZIP_NAME} into {d}")


def tag_frames(
    frames: list[Atoms], batch: Batch, chemical_system: str | None, guidance: float, model: str, results_dir: str
) -> list[Atoms]:
    """cscli identity for each MatterGen sample: id, iteration, condition, batch, provenance."""
    from cscli.core.frames import absorb_calculator_results

    out = []
    for k, atoms in enumerate(frames):
        absorb_calculator_results(atoms)
        atoms.info = {key: v for key, v in atoms.info.items() if key not in ("energy", "free_energy", "stress")}
        atoms.info["id"] = batch.frame_id(k)
        atoms.info["generator"] = "mattergen"
        atoms.info["iteration"] = batch.iteration
        atoms.info["e_hull_target"] = batch.e_hull
        if chemical_system:
            atoms.info["chemical_system"] = chemical_system
        atoms.info["batch"] = batch.index
        atoms.info["guidance"] = float(guidance)
        atoms.info["mattergen_model"] = model
        if batch.seed is not None:
            atoms.info["generate_seed"] = batch.seed
        atoms.info["source"] = str(Path(results_dir) / EXTXYZ_NAME)
        atoms.pbc = True
        out.append(atoms)
    return out


def split_by_system(frames: list[Atoms], elements: Sequence[str] | None) -> tuple[list[Atoms], list[Atoms]]:
    """(inside, outside) the chemical system; all inside when no system is given."""
    if not elements:
        return list(frames), []
    from cscli.explore.generate import in_chemical_system

    inside, outside = [], []
    for atoms in frames:
        (inside if in_chemical_system(atoms, elements) else outside).append(atoms)
    return inside, outside


# ----------------------------------------------------------------------------- the driver


@dataclass
class MatterGenRun:
    command: list[str]
    work_dir: str
    chemical_system: str | None
    targets: list[float]
    num: int
    batch_size: int = 16
    guidance: float = 2.0
    model_path: str | None = None
    pretrained_name: str | None = None
    seed: int | None = None
    iteration: int = 0
    keep_outside: bool = False
    stats: dict = field(
        default_factory=lambda: {
            "batches_run": 0,
            "batches_skipped": 0,
            "generated": 0,
            "outside_system": 0,
            "written": 0,
        }
    )

    @property
    def model(self) -> str:
        return str(self.model_path) if self.model_path else (self.pretrained_name or DEFAULT_PRETRAINED)

    def elements(self) -> list[str] | None:
        if not self.chemical_system:
            return None
        from cscli.explore.generate import parse_chemical_system

        return parse_chemical_system(self.chemical_system)

    def batches(self) -> list[Batch]:
        return plan_batches(self.targets, self.num, self.batch_size, self.iteration, self.seed)

    def run(self, done_ids: set[str] = frozenset(), resume: bool = True) -> Iterator[Atoms]:
        """Yield each batch's frames (inside the chemical system) as soon as that batch finishes.

        With ``resume``, a batch is skipped when its done-marker is in the work folder or its ids are
        in ``done_ids``; a batch MatterGen finished whose frames were not all written is re-read.
        Without it, every batch runs afresh."""
        check_program(self.command)
        check_checkpoint(self.model_path, self.pretrained_name)
        elements = self.elements()
        system = None
        if elements:
            from cscli.explore.generate import chemical_system_key

            system = chemical_system_key(elements)
        for batch in self.batches():
            bdir = Path(self.work_dir) / batch.name
            marker = bdir / DONE_MARKER
            if not resume and bdir.exists():
                shutil.rmtree(bdir)
            finished = (bdir / EXTXYZ_NAME).exists() or (bdir / CIF_ZIP_NAME).exists()
            if marker.exists() or (not finished and any(i.startswith(batch.prefix) for i in done_ids)):
                self.stats["batches_skipped"] += 1
                continue
            if not finished:  # a batch MatterGen finished but cscli did not fully write is re-read, not re-run
                self._run_batch(batch, bdir, system)
            frames = tag_frames(read_results(bdir), batch, system, self.guidance, self.model, str(bdir))
            inside, outside = split_by_system(frames, elements)
            self.stats["batches_run"] += 1
            self.stats["generated"] += len(frames)
            self.stats["outside_system"] += len(outside)
            if outside:
                _log.info(
                    f"batch {batch.name}: {'kept' if self.keep_outside else 'dropped'} {len(outside)} of "
                    f"{len(frames)} structures outside {system} "
                    f"({', '.join(sorted({a.get_chemical_formula() for a in outside}))})"
                )
            yield from inside
            if self.keep_outside:
                for a in outside:
                    a.info["outside_system"] = True
                yield from outside
            marker.write_text(json.dumps({"generated": len(frames), "outside_system": len(outside)}) + "\n")

    def _run_batch(self, batch: Batch, bdir: Path, system: str | None) -> None:
        bdir.mkdir(parents=True, exist_ok=True)
        argv = build_generate_argv(
            self.command, str(bdir), batch, system, self.guidance, self.model_path, self.pretrained_name
        )
        _log.info(f"batch {batch.name} ({batch.size} structures): {shlex.join(argv)}")
        log = bdir / "mattergen.log"
        with open(log, "w") as fh:
            try:
                proc = subprocess.run(argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            except OSError as exc:
                raise ModelError(f"cannot run {argv[0]}: {exc.strerror}") from None
        if proc.returncode != 0:
            tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
            hint = ""
            if "hf" in tail.lower() or "huggingface" in tail.lower() or "connection" in tail.lower():
                hint = " (the pretrained checkpoint must be in the Hugging Face cache, or pass --model-path)"
            raise ModelError(
                f"MatterGen failed on batch {batch.name} (exit {proc.returncode}){hint}: {tail[-400:]} "
                f"(full log: {log})"
            )
        if not (bdir / EXTXYZ_NAME).exists() and not (bdir / CIF_ZIP_NAME).exists():
            raise ModelError(f"MatterGen exited 0 but wrote no {EXTXYZ_NAME} in {bdir} (log: {log})")


# ----------------------------------------------------------------------------- fine-tuning data


# info keys a MatterGen property is read from, first present wins (cscli hull writes e_hull)
PROPERTY_KEYS = {
    "energy_above_hull": ("e_hull", "energy_above_hull"),
    "formation_energy_per_atom": ("e_form_per_atom", "formation_energy_per_atom"),
}


def property_value(atoms, prop: str) -> float:
    """A MatterGen property of a frame from its info (``energy_above_hull`` from ``e_hull``)."""
    keys = PROPERTY_KEYS.get(prop, (prop,))
    key = next((k for k in keys if atoms.info.get(k) is not None), keys[0])
    return info_number(atoms, key, "run `cscli hull` on DFT-labelled frames first")


def frames_to_csv_rows(frames, properties=("energy_above_hull",)) -> list[dict]:
    """Rows of MatterGen's dataset CSV: material_id, cif, one column per property, chemical_system.

    Property values must be DFT values on the frames (``hull`` writes ``e_hull``); frames without
    them, and non-periodic frames, are refused.
    """
    from pymatgen.io.ase import AseAtomsAdaptor
    from pymatgen.io.cif import CifWriter

    from cscli.explore.generate import chemical_system_key

    rows = []
    for atoms in frames:
        fid = atoms.info.get("id", f"frame-{len(rows)}")
        if not atoms.pbc.all():
            raise DataError(f"frame {fid}: MatterGen needs periodic crystals")
        values = {p: property_value(atoms, p) for p in properties}
        structure = AseAtomsAdaptor.get_structure(atoms)
        rows.append(
            {
                "material_id": str(fid),
                "cif": str(CifWriter(structure)),
                **values,
                "chemical_system": chemical_system_key(atoms.get_chemical_symbols()),
            }
        )
    if not rows:
        raise DataError("no frames to write as a MatterGen dataset")
    ids = [r["material_id"] for r in rows]
    if len(set(ids)) != len(ids):
        raise DataError("duplicate frame ids; MatterGen's material_id must be unique")
    return rows


def write_csv_rows(rows: list[dict], path: str | Path) -> int:
    """One MatterGen CSV file (the columns of ``rows``); returns the row count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        fields = list(rows[0]) if rows else ["material_id", "cif", "energy_above_hull", "chemical_system"]
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def write_dataset_csv(
    frames, folder: str | Path, val_fraction: float = 0.1, seed: int = 0, properties=("energy_above_hull",)
) -> dict[str, int]:
    """``train.csv`` and ``val.csv`` in ``folder`` (the layout ``csv-to-dataset --csv-folder`` reads).

    The validation split is a seeded random ``val_fraction`` (at least one frame when there are two
    or more); returns the row count of each file.
    """
    import numpy as np

    if not 0 <= val_fraction < 1:
        raise UsageError("--val-fraction must lie in [0, 1)")
    rows = frames_to_csv_rows(frames, properties)
    order = np.random.default_rng(seed).permutation(len(rows))
    nval = int(round(val_fraction * len(rows)))
    if val_fraction > 0 and len(rows) >= 2:
        nval = max(1, nval)
    val_idx = set(order[:nval].tolist())
    folder = Path(folder)
    return {
        "train": write_csv_rows([r for i, r in enumerate(rows) if i not in val_idx], folder / "train.csv"),
        "val": write_csv_rows([r for i, r in enumerate(rows) if i in val_idx], folder / "val.csv"),
    }


def build_csv_to_dataset_argv(command: list[str], csv_folder: str, dataset_name: str, cache_folder: str) -> list[str]:
    return list(command) + [
        "--csv-folder",
        str(csv_folder),
        "--dataset-name",
        dataset_name,
        "--cache-folder",
        str(cache_folder),
    ]


def run_csv_to_dataset(command: list[str], csv_folder: str, dataset_name: str, cache_folder: str) -> Path:
    """Run MatterGen's ``csv-to-dataset``; returns the cache folder of the dataset."""
    check_program(command, "MatterGen csv-to-dataset")
    argv = build_csv_to_dataset_argv(command, csv_folder, dataset_name, cache_folder)
    _log.info(shlex.join(argv))
    proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise ModelError(f"csv-to-dataset failed (exit {proc.returncode}): {tail[-400:]}")
    return Path(cache_folder) / dataset_name
