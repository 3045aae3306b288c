"""DPA-3 training and fine-tuning with deepmd-kit's PyTorch backend (``dp --pt train`` / ``freeze``).

The input follows deepmd-kit's DPA-3 example and hyper-parameter study: exponential learning-rate
decay 1e-3 → 3e-5 and energy:force:virial loss prefactors moving from 0.2:100:0.02 to 20:60:1
over the run. The run length is given in epochs (passes over the training frames) or steps.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cscli.core.errors import DataError, UsageError
from cscli.core.log import get_logger

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms

log = get_logger(__name__)

# Descriptor sizes. dpa3-l6/l3 are the "small dimension" DPA-3 rows of deepmd-kit's hyper-parameter
# table (n_dim 128, e_dim 64, a_dim 32, e_sel 120, a_sel 30, rc 6/4 Å); tiny is for tests on a laptop.
_DPA3_SMALL_DIMENSION = {  # shared by the dpa3-l6/l3 and small presets; each overrides what differs
    "nlayers": 6,
    "n_dim": 128,
    "e_dim": 64,
    "a_dim": 32,
    "e_rcut": 6.0,
    "e_rcut_smth": 5.3,
    "e_sel": 120,
    "a_rcut": 4.0,
    "a_rcut_smth": 3.5,
    "a_sel": 30,
    "fitting": [240, 240, 240],
}
PRESETS: dict[str, dict] = {
    "dpa3-l6": dict(_DPA3_SMALL_DIMENSION),
    "dpa3-l3": {**_DPA3_SMALL_DIMENSION, "nlayers": 3},
    "small": {**_DPA3_SMALL_DIMENSION, "nlayers": 3, "n_dim": 64, "e_dim": 32, "a_dim": 16, "fitting": [120, 120]},
    "tiny": {
        "nlayers": 2,
        "n_dim": 16,
        "e_dim": 8,
        "a_dim": 8,
        "e_rcut": 5.0,
        "e_rcut_smth": 4.5,
        "e_sel": 60,
        "a_rcut": 3.5,
        "a_rcut_smth": 3.0,
        "a_sel": 20,
        "fitting": [32, 32],
    },
}
DEFAULT_PRESET = "dpa3-l6"
DEFAULT_EPOCHS = 50.0
# Weight-initialisation seed, as in deepmd-kit's DPA-3 example; --seed drives data order and split.
# (Some initialisations of the tiny preset start with a ~1 eV/atom energy offset that a short run
# cannot remove; this one starts at the linear-regression energy baseline.)
MODEL_SEED = 1
LR_SCHEDULES = ("exp", "wsd")
# wsd: deepmd's warmup-stable-decay schedule, here without warmup; the last WSD_DECAY_FRACTION of
# the run decays start_lr -> stop_lr (inverse-linear), the rest stays at start_lr.
WSD_DECAY_FRACTION = 0.3
# A DPA-3 built from scratch starts with near-zero forces (≤ 0.02 eV/Å on LiPS frames) and its
# force error sits at the DFT force spread until the summed learning rate reaches about 1.3-1.5
# (measured on NequIP LiPS frames, tiny preset: constant lr 1e-2 leaves the plateau after 125-150
# steps, lr 1e-2 -> 1e-3 exponential over 400 steps (sum 1.6) does not). Below this sum, warn.
FROM_SCRATCH_MIN_LR_SUM = 2.0


@dataclass
class Schedule:
    """Training schedule; ``steps`` wins over ``epochs`` when both are given."""

    epochs: float | None = None  # None: DEFAULT_EPOCHS (or the run length of a --backend-config input)
    steps: int | None = None
    batch_size: int | str = "auto"
    start_lr: float = 1e-3
    stop_lr: float = 3e-5
    start_pref: tuple[float, float, float] = (0.2, 100.0, 0.02)  # energy, force, virial
    limit_pref: tuple[float, float, float] = (20.0, 60.0, 1.0)
    lr_schedule: str = "exp"  # exp: the paper's decay; wsd: constant start_lr, then decay over the last part
    disp_points: int = 50  # lines in lcurve.out
    extra: dict = field(default_factory=dict)


def parse_prefactors(text: str) -> tuple[float, float, float]:
    """``"0.2:100:0.02"`` → (0.2, 100.0, 0.02) (energy:force:virial)."""
    try:
        parts = tuple(float(x) for x in str(text).split(":"))
    except ValueError:
        raise UsageError(f"prefactors {text!r}: expected three numbers energy:force:virial") from None
    if len(parts) != 3 or any(p < 0 for p in parts):
        raise UsageError(f"prefactors {text!r}: expected three non-negative numbers energy:force:virial")
    return parts  # type: ignore[return-value]


def system_batch_size(batch_size: int | str, natoms: int) -> int:
    """deepmd's batch size of one system: an int, ``auto`` (= auto:32) or ``auto:N`` (natoms·bs ≥ N)."""
    if isinstance(batch_size, int) or str(batch_size).isdigit():
        bs = int(batch_size)
        if bs < 1:
            raise UsageError(f"batch size must be >= 1, got {bs}")
        return bs
    text = str(batch_size)
    if text == "auto":
        rule = 32
    elif text.startswith("auto:") and text[5:].isdigit():
        rule = int(text[5:])
    else:
        raise UsageError(f"batch size {batch_size!r}: expected an integer, 'auto' or 'auto:N'")
    return max(1, math.ceil(rule / natoms))


def batches_per_epoch(system_sizes: Sequence[tuple[int, int]], batch_size: int | str) -> int:
    """Batches in one pass over the training data; ``system_sizes`` = [(nframes, natoms), ...]."""
    return sum(max(1, math.ceil(nf / system_batch_size(batch_size, na))) for nf, na in system_sizes)


def steps_for(schedule: Schedule, system_sizes: Sequence[tuple[int, int]]) -> int:
    if schedule.steps is not None:
        if schedule.steps < 1:
            raise UsageError(f"--steps must be >= 1, got {schedule.steps}")
        return int(schedule.steps)
    epochs = DEFAULT_EPOCHS if schedule.epochs is None else schedule.epochs
    if epochs <= 0:
        raise UsageError(f"--epochs must be > 0, got {epochs}")
    return max(1, math.ceil(epochs * batches_per_epoch(system_sizes, schedule.batch_size)))


def dpa3_model(type_map: Sequence[str], preset: str = DEFAULT_PRESET, seed: int = 1) -> dict:
    """The ``model`` section of a DPA-3 input."""
    if preset not in PRESETS:
        raise UsageError(f"unknown DPA-3 preset {preset!r}; choose from {', '.join(PRESETS)}")
    p = dict(PRESETS[preset])
    fitting = p.pop("fitting")
    repflow = {
        **p,
        "axis_neuron": 4,
        "fix_stat_std": 0.3,
        "a_compress_rate": 1,
        "a_compress_e_rate": 2,
        "a_compress_use_split": True,
        "update_angle": True,
        "smooth_edge_update": True,
        "edge_init_use_dist": True,
        "use_exp_switch": True,
        "update_style": "res_residual",
        "update_residual": 0.1,
        "update_residual_init": "const",
    }
    return {
        "type_map": list(type_map),
        "descriptor": {
            "type": "dpa3",
            "repflow": repflow,
            "activation_function": "silut:10.0",
            "use_tebd_bias": False,
            "precision": "float32",
            "concat_output_tebd": False,
            "seed": seed,
        },
        "fitting_net": {
            "neuron": fitting,
            "resnet_dt": True,
            "precision": "float32",
            "activation_function": "silut:10.0",
            "seed": seed,
        },
    }


def build_input(
    type_map: Sequence[str],
    train_systems: Sequence[str],
    valid_systems: Sequence[str],
    numb_steps: int,
    schedule: Schedule | None = None,
    preset: str = DEFAULT_PRESET,
    seed: int = 0,
    config: dict | None = None,
) -> dict:
    """A complete ``dp --pt train`` input.

    With ``config`` (a user's whole input), only the data systems, ``type_map`` (when absent),
    ``numb_steps`` and the seed are filled in; everything else is theirs.
    """
    schedule = schedule or Schedule()
    disp = max(1, numb_steps // max(1, schedule.disp_points))
    training_data = {"systems": [str(s) for s in train_systems], "batch_size": _bs_value(schedule.batch_size)}
    if config is not None:
        inp = copy.deepcopy(config)
        inp.setdefault("model", {}).setdefault("type_map", list(type_map))
        missing = sorted(set(type_map) - set(inp["model"]["type_map"]))
        if missing:
            raise DataError(
                f"--backend-config type_map {inp['model']['type_map']} lacks elements of the data: {missing}"
            )
        tr = inp.setdefault("training", {})
        tr["training_data"] = {**tr.get("training_data", {}), "systems": training_data["systems"]}
        tr["training_data"].setdefault("batch_size", training_data["batch_size"])
        if valid_systems:
            tr["validation_data"] = {**tr.get("validation_data", {}), "systems": [str(s) for s in valid_systems]}
            tr["validation_data"].setdefault("batch_size", 1)
        else:
            tr.pop("validation_data", None)
        tr["numb_steps"] = int(numb_steps)
        tr.setdefault("seed", seed)
        tr.setdefault("disp_file", "lcurve.out")
        tr.setdefault("disp_freq", disp)
        tr["save_freq"] = min(int(tr.get("save_freq", numb_steps)), numb_steps)
        return inp

    e0, f0, v0 = schedule.start_pref
    e1, f1, v1 = schedule.limit_pref
    inp = {
        "model": dpa3_model(type_map, preset, seed=MODEL_SEED),
        "learning_rate": learning_rate_section(schedule, numb_steps),
        "loss": {
            "type": "ener",
            "start_pref_e": e0,
            "limit_pref_e": e1,
            "start_pref_f": f0,
            "limit_pref_f": f1,
            "start_pref_v": v0,
            "limit_pref_v": v1,
        },
        "training": {
            "training_data": training_data,
            "numb_steps": int(numb_steps),
            "gradient_max_norm": 5.0,
            "seed": seed,
            "disp_file": "lcurve.out",
            "disp_freq": disp,
            "save_freq": numb_steps,
            "max_ckpt_keep": 1,
        },
    }
    if valid_systems:
        inp["training"]["validation_data"] = {
            "systems": [str(s) for s in valid_systems],
            "batch_size": 1,
            "numb_btch": 4,
        }
    _deep_update(inp, schedule.extra)
    return inp


def learning_rate_section(schedule: Schedule, numb_steps: int) -> dict:
    """deepmd's ``learning_rate`` block. The loss prefactors follow lr/start_lr in both schedules."""
    if schedule.stop_lr > schedule.start_lr:
        raise UsageError(f"stop lr {schedule.stop_lr} is above start lr {schedule.start_lr}")
    if schedule.lr_schedule == "exp":
        return {
            "type": "exp",
            "decay_steps": max(1, min(5000, numb_steps // 50)),
            "start_lr": schedule.start_lr,
            "stop_lr": schedule.stop_lr,
        }
    if schedule.lr_schedule == "wsd":
        return {
            "type": "wsd",
            "start_lr": schedule.start_lr,
            "stop_lr": schedule.stop_lr,
            "decay_phase_ratio": WSD_DECAY_FRACTION,
            "decay_type": "inverse_linear",
        }
    raise UsageError(f"unknown learning-rate schedule {schedule.lr_schedule!r}; choose from {', '.join(LR_SCHEDULES)}")


def learning_rate_sum(section: dict, numb_steps: int) -> float:
    """Sum of the learning rate over the run, by deepmd-kit's own schedule (nan if it cannot build it)."""
    import numpy as np
    from deepmd.dpmodel.utils.learning_rate import BaseLR

    try:
        schedule = BaseLR(**{**section, "num_steps": int(numb_steps)})
        return float(np.sum(schedule.value(np.arange(int(numb_steps)))))
    except Exception:  # a --config schedule this version cannot rebuild: no warning rather than a crash
        return float("nan")


def _bs_value(batch_size):
    return int(batch_size) if isinstance(batch_size, int) or str(batch_size).isdigit() else str(batch_size)


def _deep_update(base: dict, extra: dict) -> None:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _deep_update(base[k], v)
        else:
            base[k] = v


def load_config(path: str | Path) -> dict:
    """A deepmd input file (JSON or YAML)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"--config {path}: no such file")
    text = path.read_text()
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:
        raise DataError(f"--config {path}: cannot parse: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise DataError(f"--config {path}: expected a mapping with model/learning_rate/loss/training")
    return data


def dp_command() -> list[str]:
    """The ``dp`` entry point of the running interpreter's environment (else ``python -m deepmd``)."""
    exe = Path(sys.executable).with_name("dp")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("dp")
    return [found] if found else [sys.executable, "-m", "deepmd"]


def _dp_echo(line: str) -> bool:
    return ("Batch" in line and "trn:" in line) or "ERROR" in line or "Error" in line


def train_deepmd(
    train_frames: Sequence[Atoms],
    valid_frames: Sequence[Atoms],
    output: str | Path,
    *,
    schedule: Schedule | None = None,
    preset: str = DEFAULT_PRESET,
    init: str | None = None,
    model_branch: str | None = None,
    config: dict | None = None,
    seed: int = 0,
    device: str = "auto",
    model_name: str = "model.pth",
) -> dict:
    """Train (or fine-tune from ``init``) a DPA-3 model and freeze it; returns a summary dict.

    ``output`` gets ``data/{train,valid}/sysNNN`` (deepmd npy), ``input.json``, ``train.log``,
    ``lcurve.out``, ``model.ckpt.pt`` (checkpoint, usable as a later ``init``) and the frozen
    ``model_name`` (TorchScript, loadable by ``deepmd.calculator.DP`` and ``cscli relax --model``).
    """
    from cscli.learn.finetune._proc import device_env, run_logged
    from cscli.learn.finetune.data import type_map_of, write_deepmd_systems

    schedule = schedule or Schedule()
    out = Path(output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for stale in ["lcurve.out", "checkpoint", model_name, *(p.name for p in out.glob("model.ckpt*.pt"))]:
        (out / stale).unlink(missing_ok=True)
    init_path = None
    if init is not None:
        init_path = Path(init).resolve()
        if not init_path.is_file():
            raise DataError(f"--init {init}: no such file")

    extra_types: list[str] = []
    if config is not None and config.get("model", {}).get("type_map"):
        extra_types = list(config["model"]["type_map"])
    type_map = type_map_of(train_frames, valid_frames, extra=extra_types if config is not None else ())
    if config is not None and extra_types:
        type_map = extra_types + [t for t in type_map if t not in extra_types]
    data_dir = out / "data"
    shutil.rmtree(data_dir, ignore_errors=True)
    train_systems = write_deepmd_systems(train_frames, data_dir / "train", type_map)
    valid_systems = write_deepmd_systems(valid_frames, data_dir / "valid", type_map) if valid_frames else []
    sizes = _system_sizes(train_systems)
    numb_steps = steps_for(schedule, sizes)
    if (
        config is not None
        and schedule.steps is None
        and schedule.epochs is None
        and "numb_steps" in config.get("training", {})
    ):
        numb_steps = int(config["training"]["numb_steps"])  # the user's own run length
    inp = build_input(
        type_map,
        [os.path.relpath(s, out) for s in train_systems],
        [os.path.relpath(s, out) for s in valid_systems],
        numb_steps,
        schedule,
        preset,
        seed,
        config,
    )
    (out / "input.json").write_text(json.dumps(inp, indent=2) + "\n")
    lr_sum = learning_rate_sum(inp.get("learning_rate", {}), numb_steps)
    is_dpa3 = inp.get("model", {}).get("descriptor", {}).get("type") == "dpa3"
    if init_path is None and is_dpa3 and lr_sum < FROM_SCRATCH_MIN_LR_SUM:
        log.warning(
            f"DPA-3 from scratch with a summed learning rate of {lr_sum:.2g} over "
            f"{numb_steps} steps; its forces usually stay near zero until about {FROM_SCRATCH_MIN_LR_SUM:g}. "
            "For a short run from scratch use --lr-schedule wsd --start-lr 1e-2, or more steps."
        )

    env = device_env(device)
    dp = dp_command()
    cmd = [*dp, "--pt", "train", "input.json", "--skip-neighbor-stat"]
    if init_path is not None:
        if init_path.suffix == ".pth":
            cmd += ["--init-frz-model", str(init_path)]
        else:
            cmd += ["--finetune", str(init_path)]
            if model_branch:
                cmd += ["--model-branch", model_branch]
        if config is None:
            cmd.append("--use-pretrain-script")
    log.info(
        f"dp train, {numb_steps} steps on {sum(n for n, _ in sizes)} frames "
        f"({len(train_systems)} system(s)), log {out / 'train.log'}"
    )
    run_logged(cmd, out, out / "train.log", env, echo=_dp_echo, what="dp train")
    run_logged([*dp, "--pt", "freeze", "-o", model_name], out, out / "freeze.log", env, what="dp freeze")
    model_path = out / model_name
    if not model_path.is_file():
        raise DataError(f"dp freeze wrote no {model_path}")
    link = out / "model.ckpt.pt"
    if link.is_symlink():  # deepmd links model.ckpt.pt to the step-numbered file: keep one plain file
        target = link.resolve()
        link.unlink()
        shutil.move(str(target), str(link))
        (out / "checkpoint").write_text("model.ckpt.pt")
    summary = {
        "backend": "deepmd",
        "model": str(model_path),
        "checkpoint": str(out / "model.ckpt.pt"),
        "input": str(out / "input.json"),
        "lcurve": str(out / "lcurve.out"),
        "type_map": type_map,
        "n_train": len(train_frames),
        "n_valid": len(valid_frames),
        "steps": numb_steps,
        "lr_sum": lr_sum,
        "preset": None if config is not None else (None if init_path is not None else preset),
        "init": str(init_path) if init_path else None,
        "command": " ".join(["dp", *cmd[len(dp) :]]),
    }
    return summary


def _system_sizes(systems: Sequence[Path]) -> list[tuple[int, int]]:
    import numpy as np

    sizes = []
    for s in systems:
        natoms = len((Path(s) / "type.raw").read_text().split())
        nframes = len(np.load(Path(s) / "set.000" / "energy.npy"))
        sizes.append((nframes, natoms))
    return sizes
