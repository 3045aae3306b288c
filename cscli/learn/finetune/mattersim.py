"""MatterSim fine-tuning through mattersim's own script, ``mattersim.training.finetune_mattersim``.

The script is a torch.distributed program; cscli runs it as a single-process job (``LOCAL_RANK=0``,
``WORLD_SIZE=1``, gloo on CPU, nccl on CUDA) with the training/validation frames written as extxyz
files. MatterSim's loss is a Huber loss on energy per atom, forces (× ``force_loss_ratio``) and
stress in GPa (× ``stress_loss_ratio``, only when every frame has a stress); its optimiser is Adam
with a StepLR schedule. The best checkpoint (lowest validation loss) becomes ``model.pth``.
"""

from __future__ import annotations

import math
import re
import shutil
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cscli.core.errors import DataError, ModelError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms

UNTRAINED_TAG = "cscli: untrained M3GNet"
_LINE = re.compile(
    r"\b(train|val): Loss: ([-\d.eE+naif]+), MAE\(e\): ([-\d.eE+naif]+), MAE\(f\): ([-\d.eE+naif]+), "
    r"MAE\(s\): ([-\d.eE+naif]+), Time: [-\d.eE+]+s, lr: ([-\d.eE+]+)"
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_EPOCH = re.compile(r"Epoch: (\d+) / (\d+)")


def new_checkpoint(
    path: str | Path,
    *,
    num_blocks: int = 1,
    units: int = 16,
    max_l: int = 2,
    max_n: int = 2,
    cutoff: float = 5.0,
    threebody_cutoff: float = 4.0,
    seed: int = 0,
) -> Path:
    """Write a randomly initialised (untrained) MatterSim M3GNet checkpoint.

    MatterSim's pretrained weights are downloaded by mattersim at run time, which cscli never does;
    this builds a small model from scratch (for tests, or to train a system-specific MatterSim).
    Fine-tuning it re-normalises energies to the training data (``--re_normalize``).
    """
    import torch
    from mattersim.forcefield.m3gnet.m3gnet import M3Gnet
    from mattersim.forcefield.potential import Potential

    torch.manual_seed(seed)
    model = M3Gnet(
        num_blocks=num_blocks,
        units=units,
        max_l=max_l,
        max_n=max_n,
        cutoff=cutoff,
        threebody_cutoff=threebody_cutoff,
        device="cpu",
    )
    potential = Potential(model, device="cpu", description=UNTRAINED_TAG)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    potential.save(str(path))
    return path


def checkpoint_info(path: str | Path) -> dict:
    """``model_args`` and ``description`` of a MatterSim checkpoint (DataError if it is not one)."""
    import torch

    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as exc:
        raise DataError(f"{path}: not a readable torch checkpoint: {str(exc).splitlines()[0]}") from None
    if not isinstance(ckpt, dict) or ckpt.get("model_name") != "m3gnet" or "model_args" not in ckpt:
        raise DataError(f"{path}: not a MatterSim (M3GNet) checkpoint")
    return {"model_args": dict(ckpt["model_args"]), "description": ckpt.get("description", "")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_labelled(frames: Sequence[Atoms], path: Path, with_stress: bool) -> None:
    import numpy as np
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    from cscli.learn.finetune.data import frame_labels, virial_to_stress

    out = []
    for atoms in frames:
        lab = frame_labels(atoms)
        a = atoms.copy()
        a.info = {"id": str(atoms.info.get("id", ""))}
        for key in list(a.arrays):
            if key not in ("numbers", "positions"):
                del a.arrays[key]
        results = {"energy": lab["energy"], "forces": lab["forces"]}
        if with_stress:
            results["stress"] = np.asarray(virial_to_stress(lab["virial"], atoms.get_volume()))
        a.calc = SinglePointCalculator(a, **results)
        out.append(a)
    write(str(path), out, format="extxyz")


def parse_log(text: str) -> dict[str, list[float]]:
    """Per-epoch losses and MAEs from mattersim's training log."""
    rows: dict[int, dict[str, float]] = {}
    epoch = None
    text = _ANSI.sub("", text)
    for line in text.splitlines():
        m = _EPOCH.search(line)
        if m:
            epoch = int(m.group(1))
            continue
        m = _LINE.search(line)
        if m and epoch is not None:
            mode = "trn" if m.group(1) == "train" else "val"
            row = rows.setdefault(epoch, {"epoch": float(epoch)})
            for name, value in zip(("loss", "mae_e", "mae_f", "mae_s"), m.groups()[1:5]):
                row[f"{name}_{mode}"] = float(value)
            row["lr"] = float(m.group(6))
    columns = ["epoch"] + [f"{q}_{m}" for q in ("loss", "mae_e", "mae_f", "mae_s") for m in ("trn", "val")] + ["lr"]
    return {c: [rows[e].get(c, float("nan")) for e in sorted(rows)] for c in columns}


def write_lcurve(curve: dict[str, list[float]], path: Path) -> None:
    names = list(curve)
    lines = ["# " + " ".join(f"{n:>12s}" for n in names)]
    for i in range(len(curve[names[0]]) if names else 0):
        lines.append("  " + " ".join(f"{curve[n][i]:12.6g}" for n in names))
    path.write_text("\n".join(lines) + "\n")


def train_mattersim(
    train_frames: Sequence[Atoms],
    valid_frames: Sequence[Atoms],
    output: str | Path,
    *,
    init: str,
    epochs: float = 50,
    steps: int | None = None,
    batch_size: int = 16,
    lr: float = 2e-4,
    seed: int = 0,
    device: str = "auto",
    force_loss_ratio: float = 1.0,
    stress_loss_ratio: float = 0.1,
    re_normalize: bool | None = None,
    model_name: str = "model.pth",
) -> dict:
    """Fine-tune the MatterSim checkpoint ``init``; ``output/model.pth`` is the best checkpoint."""
    from cscli.core.log import get_logger
    from cscli.core.models import resolve_device
    from cscli.learn.finetune._proc import device_env, run_logged
    from cscli.learn.finetune.data import frame_labels

    init_path = Path(init)
    if not init_path.is_file():
        raise DataError(f"--init {init}: no such file (MatterSim weights are never downloaded by cscli)")
    info = checkpoint_info(init_path)
    args = info["model_args"]
    if re_normalize is None:
        re_normalize = info["description"] == UNTRAINED_TAG
    if batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {batch_size}")
    if steps is not None:
        n_epochs = max(1, math.ceil(steps / max(1, math.ceil(len(train_frames) / batch_size))))
    else:
        if epochs is None or epochs <= 0:
            raise UsageError(f"--epochs must be > 0, got {epochs}")
        n_epochs = max(1, int(math.ceil(epochs)))
    dev = resolve_device(device)

    out = Path(output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    results = out / "mattersim_results"
    shutil.rmtree(results, ignore_errors=True)
    all_frames = list(train_frames) + list(valid_frames)
    with_stress = all(frame_labels(a)["virial"] is not None for a in all_frames)
    _write_labelled(train_frames, out / "train.extxyz", with_stress)
    if valid_frames:
        _write_labelled(valid_frames, out / "valid.extxyz", with_stress)

    cmd = [
        sys.executable,
        "-m",
        "mattersim.training.finetune_mattersim",
        "--run_name",
        "cscli",
        "--train_data_path",
        str(out / "train.extxyz"),
        "--load_model_path",
        str(init_path.resolve()),
        "--save_path",
        str(results),
        "--save_checkpoint",
        "--ckpt_interval",
        str(n_epochs + 1),
        "--device",
        dev,
        "--cutoff",
        str(args.get("cutoff", 5.0)),
        "--threebody_cutoff",
        str(args.get("threebody_cutoff", 4.0)),
        "--epochs",
        str(n_epochs),
        "--batch_size",
        str(batch_size),
        "--lr",
        str(lr),
        "--force_loss_ratio",
        str(force_loss_ratio),
        "--stress_loss_ratio",
        str(stress_loss_ratio),
        "--early_stop_patience",
        str(n_epochs + 1),
        "--seed",
        str(seed),
        "--include_stresses" if with_stress else "--no-include_stresses",
        "--re_normalize" if re_normalize else "--no-re_normalize",
    ]
    if valid_frames:
        cmd += ["--valid_data_path", str(out / "valid.extxyz")]
    env = device_env(device)
    env.update(
        {
            "LOCAL_RANK": "0",
            "RANK": "0",
            "WORLD_SIZE": "1",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(_free_port()),
            "WANDB_MODE": "disabled",
            "WANDB_SILENT": "true",
        }
    )
    get_logger(__name__).info(
        f"mattersim, {n_epochs} epochs on {len(train_frames)} frames "
        f"(stress {'on' if with_stress else 'off'}), log {out / 'train.log'}"
    )
    run_logged(
        cmd,
        out,
        out / "train.log",
        env,
        echo=lambda line: "Loss:" in line or "Error" in line,
        what="mattersim finetune",
    )
    best = results / "best_model.pth"
    if not best.is_file():
        raise ModelError(f"mattersim finetune wrote no {best} (see {out / 'train.log'})")
    model_path = out / model_name
    shutil.copy2(best, model_path)
    for ckpt in results.glob("ckpt_*.pth"):
        ckpt.unlink()
    curve = parse_log((out / "train.log").read_text(errors="replace"))
    write_lcurve(curve, out / "lcurve.out")
    return {
        "backend": "mattersim",
        "model": str(model_path),
        "checkpoint": str(results / "last_model.pth"),
        "lcurve": str(out / "lcurve.out"),
        "init": str(init_path.resolve()),
        "n_train": len(train_frames),
        "n_valid": len(valid_frames),
        "epochs": n_epochs,
        "batch_size": batch_size,
        "lr": lr,
        "stress": with_stress,
        "re_normalize": bool(re_normalize),
        "model_args": {k: v for k, v in args.items() if isinstance(v, (int, float, str, bool))},
    }
