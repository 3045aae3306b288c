"""Fine-tune a force field (DPA-3 via deepmd-kit, MatterSim) or MatterGen on labelled frames.

``finetune(train, valid, output, backend=...)`` trains and writes, under ``output``:

* the model: ``model.pth`` (deepmd: a frozen TorchScript model from ``dp --pt freeze``; mattersim:
  a MatterSim checkpoint, a ``torch.save`` dict with ``model_name == "m3gnet"``), loadable by
  ``cscli relax --model`` (``cscli.core.models.detect_backend`` tells the two apart by content);
* ``lcurve.out`` (whitespace table, ``#`` header) and ``learning_curve.png``;
* ``summary.json`` (backend, paths, frame counts, steps or epochs, final errors);
* the backend's own inputs and logs (``input.json``/``train.log`` for deepmd, ...).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cscli.core.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms

BACKENDS = ("deepmd", "mattersim", "mattergen")


def finetune(train_frames: Sequence[Atoms], valid_frames: Sequence[Atoms], output: str | Path,
             backend: str = "deepmd", quiet: bool = False, plot: bool = True, **options) -> dict:
    """Train/fine-tune with ``backend`` and write the model, learning curve, PNG and summary."""
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    out = Path(output)
    if backend == "deepmd":
        from cscli.learn.finetune.deepmd import train_deepmd

        summary = train_deepmd(train_frames, valid_frames, out, quiet=quiet, **options)
    elif backend == "mattersim":
        from cscli.learn.finetune.mattersim import train_mattersim

        summary = train_mattersim(train_frames, valid_frames, out, quiet=quiet, **options)
    else:
        from cscli.learn.finetune.mattergen import finetune_mattergen

        summary = finetune_mattergen(train_frames, valid_frames, out, quiet=quiet, **options)
    lcurve = summary.get("lcurve")
    if lcurve and Path(lcurve).is_file():
        from cscli.learn.finetune.data import plot_learning_curve, read_lcurve

        curve = read_lcurve(lcurve)
        summary["final"] = {k: (v[-1] if math.isfinite(v[-1]) else None)  # strict JSON: no NaN
                            for k, v in curve.items() if v and k not in ("step", "epoch")}
        if plot and curve:
            x = "step" if "step" in curve else "epoch"
            png = plot_learning_curve(curve, out / "learning_curve.png",
                                      title=f"cscli finetune --backend {backend}: {summary.get('n_train')} train / "
                                            f"{summary.get('n_valid')} valid frames", x=x)
            summary["png"] = str(png)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


__all__ = ["BACKENDS", "finetune"]
