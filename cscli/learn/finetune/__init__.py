"""Fine-tune a force field (DPA-3 via deepmd-kit, MatterSim, SevenNet) or MatterGen on labelled frames.

``finetune(train, valid, output, backend=...)`` trains and writes, under ``output``:

* the model: ``model.pth`` (deepmd: a frozen TorchScript model from ``dp --pt freeze``; mattersim:
  a MatterSim checkpoint, a ``torch.save`` dict with ``model_name == "m3gnet"``; sevennet: a
  SevenNet checkpoint, a dict with ``config`` and ``model_state_dict``), loadable by
  ``cscli relax --model`` (``cscli.core.models.detect_backend`` tells them apart by content);
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

BACKENDS = ("deepmd", "mattersim", "mattergen", "sevennet")
# the run-length default when neither --epochs nor --steps is given (sevennet: its own, in sevennet.DEFAULTS)
DEFAULT_EPOCHS = 50.0
# which options apply to which backend (the rest is rejected with one line naming the backends)
APPLIES = {
    "preset": ("deepmd",),
    "model_branch": ("deepmd",),
    "backend_config": ("deepmd", "sevennet"),
    "start_pref": ("deepmd",),
    "limit_pref": ("deepmd",),
    "stop_lr": ("deepmd", "sevennet"),
    "lr_schedule": ("deepmd", "sevennet"),
    "steps": ("deepmd", "mattersim", "sevennet"),
    "batch_size": ("deepmd", "mattersim", "sevennet"),
    "start_lr": ("deepmd", "mattersim", "sevennet"),
    "loss": ("sevennet",),
    "loss_weights": ("sevennet",),
    "energy_shift": ("sevennet",),
    "properties": ("mattergen",),
}
OPTION_FLAGS = {"backend_config": "--backend-config", "model_branch": "--model-branch"}


def backend_options(backend: str, **given) -> dict:
    """Keyword arguments of ``backend``'s trainer from the options a user gave (None = not given).

    The backend defaults live here and in the backend modules, not in the command line:
    deepmd ``deepmd.Schedule`` (exp 1e-3 → 3e-5, prefactors 0.2:100:0.02 → 20:60:1, batch ``auto``,
    50 epochs), mattersim (Adam 2e-4, batch 16, 50 epochs, ``--init`` required), sevennet
    ``sevennet.DEFAULTS`` (sevenn's ``fine_tune`` preset, 7net-0, 20 epochs), mattergen (MatterGen's own).
    Options that do not apply to ``backend`` raise UsageError. Keys: ``epochs steps batch_size
    start_lr stop_lr lr_schedule start_pref limit_pref preset init model_branch backend_config loss
    loss_weights energy_shift properties``; ``seed`` and ``device`` pass through.
    """
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    for key, backends in APPLIES.items():
        if given.get(key) not in (None, (), []) and backend not in backends:
            flag = OPTION_FLAGS.get(key, "--" + key.replace("_", "-"))
            raise UsageError(f"{flag} applies to --backend {' and '.join(backends)} only")
    g = {k: v for k, v in given.items() if v is not None}
    options = {k: g[k] for k in ("seed", "device") if k in g}
    if backend == "deepmd":
        from cscli.learn.finetune.deepmd import Schedule, load_config, parse_prefactors

        base = Schedule()
        schedule = Schedule(
            epochs=g.get("epochs"),
            steps=g.get("steps"),
            batch_size=g.get("batch_size", base.batch_size),
            start_lr=g.get("start_lr", base.start_lr),
            stop_lr=g.get("stop_lr", base.stop_lr),
            lr_schedule=g.get("lr_schedule", base.lr_schedule),
            start_pref=parse_prefactors(g["start_pref"]) if "start_pref" in g else base.start_pref,
            limit_pref=parse_prefactors(g["limit_pref"]) if "limit_pref" in g else base.limit_pref,
        )
        from cscli.learn.finetune.deepmd import DEFAULT_PRESET

        options.update(
            schedule=schedule,
            preset=g.get("preset", DEFAULT_PRESET),
            init=g.get("init"),
            model_branch=g.get("model_branch"),
            config=load_config(g["backend_config"]) if "backend_config" in g else None,
        )
    elif backend == "mattersim":
        if "init" not in g:
            raise UsageError("--backend mattersim needs --init CHECKPOINT (a MatterSim .pth)")
        try:
            bs = int(g.get("batch_size", 16))
        except ValueError:
            raise UsageError(f"--batch-size {g['batch_size']!r}: mattersim needs an integer") from None
        options.update(
            init=g["init"],
            epochs=g.get("epochs", DEFAULT_EPOCHS),
            steps=g.get("steps"),
            batch_size=bs,
            lr=g.get("start_lr", 2e-4),
        )
    elif backend == "sevennet":
        from cscli.learn.finetune.sevennet import DEFAULTS as SEVENNET_DEFAULTS

        try:
            bs = int(g.get("batch_size", SEVENNET_DEFAULTS["batch_size"]))
        except ValueError:
            raise UsageError(f"--batch-size {g['batch_size']!r}: sevennet needs an integer") from None
        sevenn_config = None
        if "backend_config" in g:
            from cscli.learn.finetune.deepmd import load_config

            sevenn_config = load_config(g["backend_config"])
            sevenn_config = sevenn_config.get("train", sevenn_config)  # a whole sevenn input.yaml, or its train block
        options.update(
            {
                k: g.get(k)
                for k in (
                    "init",
                    "epochs",
                    "steps",
                    "start_lr",
                    "stop_lr",
                    "lr_schedule",
                    "loss",
                    "loss_weights",
                    "energy_shift",
                )
            }
        )
        options.update(batch_size=bs, sevenn_config=sevenn_config)
    else:
        options.update(
            init=g.get("init"), properties=list(g.get("properties") or ("energy_above_hull",)), epochs=g.get("epochs")
        )
    return options


def finetune(
    train_frames: Sequence[Atoms],
    valid_frames: Sequence[Atoms],
    output: str | Path,
    backend: str = "deepmd",
    plot: bool = True,
    **options,
) -> dict:
    """Train/fine-tune with ``backend`` and write the model, learning curve, PNG and summary.

    ``options`` are the backend trainer's keyword arguments (:func:`backend_options` builds them
    from user options).
    """
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    out = Path(output)
    if backend == "deepmd":
        from cscli.learn.finetune.deepmd import train_deepmd

        summary = train_deepmd(train_frames, valid_frames, out, **options)
    elif backend == "mattersim":
        from cscli.learn.finetune.mattersim import train_mattersim

        summary = train_mattersim(train_frames, valid_frames, out, **options)
    elif backend == "sevennet":
        from cscli.learn.finetune.sevennet import train_sevennet

        summary = train_sevennet(train_frames, valid_frames, out, **options)
    else:
        from cscli.learn.finetune.mattergen import finetune_mattergen

        summary = finetune_mattergen(train_frames, valid_frames, out, **options)
    lcurve = summary.get("lcurve")
    if lcurve and Path(lcurve).is_file():
        from cscli.learn.finetune.data import plot_learning_curve, read_lcurve

        curve = read_lcurve(lcurve)
        summary["final"] = {
            k: (v[-1] if math.isfinite(v[-1]) else None)  # strict JSON: no NaN
            for k, v in curve.items()
            if v and k not in ("step", "epoch")
        }
        if plot and curve:
            x = "epoch" if "epoch" in curve else "step"
            png = plot_learning_curve(
                curve,
                out / "learning_curve.png",
                title=f"cscli finetune --backend {backend}: {summary.get('n_train')} train / "
                f"{summary.get('n_valid')} valid frames",
                x=x,
            )
            summary["png"] = str(png)
    summary.setdefault("seed", options.get("seed"))
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


__all__ = ["BACKENDS", "backend_options", "finetune"]
