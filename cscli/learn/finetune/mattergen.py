"""MatterGen fine-tuning on the explored chemical system, conditioned on energy above hull.

cscli writes a MatterGen dataset (``train.csv``/``val.csv`` with ``material_id``, ``cif`` and one
column per property, the layout of MatterGen's ``mp_20``), converts it with MatterGen's
``csv-to-dataset`` and runs ``mattergen-finetune`` with an adapter for each property. MatterGen
runs in its own environment: its commands are found on ``PATH`` or behind the prefix in
``$CSCLI_MATTERGEN`` (e.g. ``"conda run -n mattergen"``, or a folder holding the executables).
The property ``energy_above_hull`` is read from ``info['e_hull']`` (eV/atom, written by
``cscli hull``/``sun-filter``) or ``info['energy_above_hull']``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cscli.core.errors import ModelError
from cscli.explore.mattergen import mattergen_command  # the one MatterGen configuration

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms


def write_dataset_csv(frames: Sequence[Atoms], path: str | Path, properties: Sequence[str]) -> Path:
    """One MatterGen CSV (``material_id``, ``cif``, one column per property, ``chemical_system``),
    written by the same code as ``cscli generate --write-dataset``."""
    from cscli.explore.mattergen import frames_to_csv_rows, write_csv_rows

    write_csv_rows(frames_to_csv_rows(frames, tuple(properties)), path)
    return Path(path)


def finetune_command(
    dataset_dir: Path, properties: Sequence[str], init: str | None = None, epochs: float | None = None
) -> list[str]:
    """``mattergen-finetune`` Hydra overrides for property adapters on a prepared dataset."""
    cmd = [
        f"adapter.model_path={init}" if init else "adapter.pretrained_name=mattergen_base",
        "data_module=mp_20",
        f"data_module.root_dir={dataset_dir}",
    ]
    for p in properties:
        cmd.append(
            f"+lightning_module/diffusion_module/model/property_embeddings@adapter.adapter.property_embeddings_adapt.{p}={p}"
        )
    cmd += ["~trainer.logger", "data_module.properties=[" + ",".join(f'"{p}"' for p in properties) + "]"]
    if epochs:
        cmd.append(f"trainer.max_epochs={int(epochs)}")
    return cmd


def finetune_mattergen(
    train_frames: Sequence[Atoms],
    valid_frames: Sequence[Atoms],
    output: str | Path,
    *,
    properties: Sequence[str] = ("energy_above_hull",),
    init: str | None = None,
    epochs: float | None = None,
    seed: int = 0,
    device: str = "auto",
) -> dict:
    """Write the dataset, convert it and fine-tune MatterGen; ModelError when MatterGen is absent."""
    from cscli.core.log import get_logger
    from cscli.learn.finetune._proc import device_env, run_logged

    out = Path(output).resolve()
    csv_dir = out / "dataset_csv"
    write_dataset_csv(train_frames, csv_dir / "train.csv", properties)
    write_dataset_csv(valid_frames if valid_frames else train_frames, csv_dir / "val.csv", properties)
    csv_to_dataset = mattergen_command("csv-to-dataset")
    mg_finetune = mattergen_command("mattergen-finetune")
    if csv_to_dataset is None or mg_finetune is None:
        raise ModelError(
            f"MatterGen is not configured (no csv-to-dataset/mattergen-finetune on PATH; set "
            f"CSCLI_MATTERGEN to its environment's command prefix or bin folder); the dataset is "
            f"written to {csv_dir}"
        )
    env = device_env(device)
    cache = out / "dataset_cache"
    run_logged(
        [*csv_to_dataset, "--csv-folder", str(csv_dir), "--dataset-name", "cscli", "--cache-folder", str(cache)],
        out,
        out / "csv_to_dataset.log",
        env,
        what="mattergen csv-to-dataset",
    )
    args = finetune_command(cache / "cscli", properties, init, epochs)
    get_logger(__name__).info(
        f"mattergen-finetune on {len(train_frames)} structures, properties "
        f"{', '.join(properties)}, log {out / 'train.log'}"
    )
    run_logged(
        [*mg_finetune, *args],
        out,
        out / "train.log",
        env,
        echo=lambda line: "Epoch" in line or "Error" in line,
        what="mattergen-finetune",
    )
    ckpts = sorted(out.rglob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    if not ckpts:
        raise ModelError(f"mattergen-finetune wrote no checkpoint under {out} (see {out / 'train.log'})")
    model_dir = ckpts[-1].parent.parent if ckpts[-1].parent.name == "checkpoints" else ckpts[-1].parent
    return {
        "backend": "mattergen",
        "model": str(model_dir),
        "checkpoint": str(ckpts[-1]),
        "dataset": str(csv_dir),
        "properties": list(properties),
        "n_train": len(train_frames),
        "n_valid": len(valid_frames),
        "init": init,
    }
