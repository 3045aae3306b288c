"""Fine-tune a pretrained SevenNet (sevenn) in process: 7net-0, 7net-l3i5, 7net-mf-0[:HEAD] or a checkpoint.

The recipe is sevenn's own ``fine_tune`` preset (``sevenn/presets/fine_tune.yaml``) but for the
learning rate: Adam at lr 1e-3 (the preset's 4e-3 moves every weight by ≈ lr in Adam's first steps,
which on 7net-0 shifts held-out energies by ~60 meV/atom per step; docs/finetune.md, "learning
rate"), an exponential decay of 0.99 per epoch, a Huber loss (δ = 0.01) on energy per atom, forces and
stress (weights 1 : 1 : 0.01, stress in kbar as sevenn computes it), batches of 4 frames, the
pretrained model's cutoff, shift and scale kept fixed. The training loop is sevenn's
``Trainer.run_one_epoch`` (the one its notebooks use); cscli builds the graphs from the frames in
memory, sets the learning rate each epoch, records its own errors and writes the checkpoint.

Data conversion (``frame_graph``): ``info['energy']`` (eV), ``arrays['forces']`` (eV/Å) and
``info['stress']`` (ASE Voigt ``xx yy zz yz xz xy``, eV/Å³, tensile positive) go through an ASE
``SinglePointCalculator`` into sevenn's own ``atoms_to_graph(..., y_from_calc=True)``, which stores
``-stress`` in the order ``xx yy zz xy yz zx`` (sevenn's convention: compression positive);
``info['virial_eV']`` (deepmd's virial) is turned into a stress first. A frame without a stress has
NaN there, which sevenn's losses skip; with no stress in any training frame, stress is not trained.

Energy reference (``energy_shift="fit"``, the default): labels from another DFT code or other
settings than the foundation model's training data (GPAW PBE in the loop, VASP/MP in production)
differ from its energies by a per-element constant, which a fine-tune would otherwise spend its
first epochs (and the energy head's capacity) learning. Before training, the zero-shot model is
evaluated on the training frames and the per-element shift ``δ`` is the least-squares solution of
``E_label − E_model ≈ Σ_Z n_Z δ_Z`` (:func:`fit_element_shift`). It is added to the model's own
per-element atomic reference energies (the ``shift`` of sevenn's ``rescale_atomic_energy`` block),
so the fine-tuned checkpoint predicts energies on the labels' scale and the labels themselves stay
as they are. ``summary.json`` reports ``δ`` (eV/atom per element) and the training energy RMSE
before and after the shift. ``energy_shift="none"`` leaves the model's reference energies alone.

Multi-fidelity models (7net-mf-0): the frames are trained as the fidelity given with ``:HEAD``
(``PBE`` by default, as ``cscli.core.models`` does; sevenn's ``data_modality``), and the energy
shift goes into that fidelity's reference energies. The checkpoint keeps every fidelity and
records the trained one under ``cscli.head``, which ``cscli.core.models`` uses when
``--model DIR/model.pth`` names none. (sevenn's ``get_single_modal_model_dct``, which would cut one
fidelity out, did not reproduce the PBE head's energies of 7net-mf-0 here: −363.22 eV against
−362.96 eV through sevenn's calculator on a LiPS frame, so it is not used.)
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cscli.core.errors import DataError, ModelError, UsageError
from cscli.core.log import get_logger

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms

log = get_logger(__name__)

PRETRAINED = ("7net-0", "7net-l3i5", "7net-mf-0")
DEFAULT_HEAD = {"7net-mf-0": "PBE"}  # as cscli.core.models resolves 7net-mf-0

# sevenn's fine_tune preset (presets/fine_tune.yaml) with lr 1e-3, the defaults of `cscli finetune --backend sevennet`
DEFAULTS = {
    "init": "7net-0",
    "epochs": 20.0,  # the preset says 100 (GPU); 20 is a CPU-sized default, see docs/finetune.md
    "batch_size": 4,
    "start_lr": 1e-3,  # the preset's 4e-3 is unstable on 7net-0 (docs/finetune.md, "learning rate")
    "stop_lr": None,  # None: the preset's exponential decay, gamma 0.99 per epoch
    "lr_schedule": "exp",
    "loss": "huber:0.01",
    "loss_weights": (1.0, 1.0, 0.01),  # energy per atom : forces : stress (kbar)
    "energy_shift": "fit",
}
PRESET_GAMMA = 0.99
LR_SCHEDULES = ("exp", "wsd", "constant")
WSD_DECAY_FRACTION = 0.3  # as the deepmd backend's wsd: the last 30 % of the epochs decay
ENERGY_SHIFTS = ("fit", "none")
EV_A3_TO_GPA = 160.21766208


# ----------------------------------------------------------------------------- options


def parse_loss(text: str) -> tuple[str, dict]:
    """``huber`` / ``huber:DELTA`` / ``mse`` → sevenn's ``loss`` and ``loss_param``."""
    name, _, arg = str(text).lower().partition(":")
    if name == "mse" and not arg:
        return "mse", {}
    if name == "huber":
        try:
            delta = float(arg) if arg else 0.01
        except ValueError:
            delta = -1.0
        if delta > 0:
            return "huber", {"delta": delta}
    raise UsageError(f"--loss {text!r}: expected mse, huber or huber:DELTA (DELTA > 0)")


def parse_weights(text) -> tuple[float, float, float]:
    """``"1:1:0.01"`` → (1.0, 1.0, 0.01): energy-per-atom : force : stress loss weights."""
    if isinstance(text, (tuple, list)):
        parts = tuple(float(x) for x in text)
    else:
        try:
            parts = tuple(float(x) for x in str(text).split(":"))
        except ValueError:
            parts = ()
    if len(parts) != 3 or any(p < 0 or not math.isfinite(p) for p in parts) or parts[1] == parts[0] == 0:
        raise UsageError(f"loss weights {text!r}: expected three non-negative numbers energy:force:stress")
    return parts  # type: ignore[return-value]


def lr_at(epoch: int, n_epochs: int, start_lr: float, stop_lr: float | None, schedule: str) -> float:
    """Learning rate of (0-based) ``epoch`` of ``n_epochs``.

    exp: ``start_lr · γ^epoch`` with γ = 0.99 (sevenn's preset) when ``stop_lr`` is None, else the
    γ that reaches ``stop_lr`` in the last epoch; wsd: ``start_lr`` for the first 70 % of the
    epochs, then an exponential decay to ``stop_lr`` (default start_lr/100); constant: ``start_lr``.
    """
    if start_lr <= 0 or (stop_lr is not None and stop_lr <= 0):
        raise UsageError("learning rates must be > 0")
    if stop_lr is not None and stop_lr > start_lr:
        raise UsageError(f"stop lr {stop_lr} is above start lr {start_lr}")
    if schedule == "constant":
        return start_lr
    if schedule == "exp":
        if stop_lr is None:
            return start_lr * PRESET_GAMMA**epoch
        return start_lr * (stop_lr / start_lr) ** (epoch / max(1, n_epochs - 1))
    if schedule == "wsd":
        stop = start_lr / 100 if stop_lr is None else stop_lr
        n_decay = max(1, round(WSD_DECAY_FRACTION * n_epochs))
        first = n_epochs - n_decay
        if epoch < first:
            return start_lr
        return start_lr * (stop / start_lr) ** ((epoch - first + 1) / n_decay)
    raise UsageError(f"unknown learning-rate schedule {schedule!r}; choose from {', '.join(LR_SCHEDULES)}")


def parse_init(init: str | None) -> tuple[str, str, str | None]:
    """``--init`` → (label, checkpoint path, head). Names are sevenn's pretrained models (their
    weights ship in the sevenn wheel); ``NAME:HEAD`` or ``CHECKPOINT::HEAD`` picks a fidelity."""
    text = (init or DEFAULTS["init"]).strip()
    base, _, head = text.partition(":")
    if base.lower() in PRETRAINED and not head.startswith(":"):
        base = base.lower()
        head = head.upper() if head else DEFAULT_HEAD.get(base)
        try:
            from sevenn.util import pretrained_name_to_path
        except ImportError as exc:
            raise ModelError(
                f"--backend sevennet: sevenn is not installed ({exc}); install the cscli[sevennet] extra"
            ) from None
        try:
            path = pretrained_name_to_path(base)
        except Exception as exc:  # the wheel lacks the file and the download failed (offline)
            raise ModelError(
                f"--init {base}: sevenn has no local weights for it ({type(exc).__name__}: {exc})"
            ) from None
        return base + (f":{head}" if head else ""), str(path), head
    path_text, _, head = text.partition("::")
    path = Path(path_text)
    if not path.is_file():
        raise UsageError(
            f"unknown --init {text!r}: give {', '.join(PRETRAINED[:2])}, 7net-mf-0[:HEAD] or a SevenNet checkpoint file"
        )
    from cscli.core.models import detect_backend

    backend = detect_backend(path)
    if backend != "sevennet":
        raise UsageError(f"--init {path_text}: a {backend} model, not a SevenNet checkpoint")
    return str(path), str(path.resolve()), head or None


# ----------------------------------------------------------------------------- model and data


def load_pretrained(path: str, head: str | None = None):
    """(model, config, head) of a SevenNet checkpoint; a multi-fidelity one needs ``head`` (its modal)."""
    import warnings

    from sevenn.util import load_checkpoint

    warnings.filterwarnings("ignore", message="No tensor product accelerator")
    cp = load_checkpoint(path)
    config = cp.config
    if not config.get("use_modality", False):
        if head:
            log.warning("head %s ignored: %s is a single-fidelity model", head, path)
        return cp.build_model(), config, None
    modals = list(config.get("_modal_map", {}))
    if not head:
        raise UsageError(f"{path} is a multi-fidelity model: pick a head with ::HEAD, one of {', '.join(modals)}")
    if head not in modals:
        raise UsageError(f"unknown head {head!r}; this model has {', '.join(modals)}")
    return cp.build_model(), config, head


def model_elements(config) -> set[str]:
    from ase.data import chemical_symbols

    return {chemical_symbols[z] for z in config["_type_map"]}


def frame_graph(atoms: Atoms, cutoff: float, head: str | None = None):
    """sevenn's graph of a labelled frame (energy, forces, stress when present), built by sevenn;
    ``head``: the fidelity (sevenn's ``data_modality``) of a multi-fidelity model."""
    import numpy as np
    from ase.calculators.singlepoint import SinglePointCalculator
    from sevenn.atom_graph_data import AtomGraphData
    from sevenn.train.dataload import atoms_to_graph

    from cscli.learn.finetune.data import frame_labels, virial_to_stress

    lab = frame_labels(atoms)
    a = atoms.copy()
    a.info = {}
    stress = None
    if lab["virial"] is not None and atoms.pbc.all():
        stress = virial_to_stress(lab["virial"], atoms.get_volume())
    a.calc = SinglePointCalculator(
        a,
        energy=float(lab["energy"]),
        forces=np.asarray(lab["forces"]),
        **({"stress": np.asarray(stress)} if stress is not None else {}),
    )
    graph = AtomGraphData.from_numpy_dict(atoms_to_graph(a, cutoff, transfer_info=False, y_from_calc=True))
    if head:
        graph["data_modality"] = head
    return graph


def composition_matrix(frames: Sequence[Atoms], elements: Sequence[str]):
    import numpy as np

    index = {el: i for i, el in enumerate(elements)}
    counts = np.zeros((len(frames), len(elements)))
    for k, atoms in enumerate(frames):
        for s in atoms.get_chemical_symbols():
            counts[k, index[s]] += 1
    return counts


def fit_element_shift(counts, residual) -> tuple:
    """Per-element energy shift δ (eV) minimising ``|counts · δ − residual|²``.

    When the compositions do not determine every element's shift (one composition, as in an MD
    trajectory: only ``Σ n_Z δ_Z`` is known), the undetermined part is fixed by taking the same
    shift per atom for every element plus the smallest per-element correction: first the best
    single per-atom constant ``s``, then the minimum-norm ``d`` for what is left, ``δ = s + d``.
    With full-rank compositions this is the ordinary least-squares solution.
    Returns ``(δ, rank)``.
    """
    import numpy as np

    A = np.asarray(counts, dtype=float)
    r = np.asarray(residual, dtype=float)
    natoms = A.sum(axis=1)
    s = float(natoms @ r / (natoms @ natoms))
    d, _, rank, _ = np.linalg.lstsq(A, r - s * natoms, rcond=None)
    return s + d, int(rank)


class _Errors:
    """Running RMSEs of one pass (energy per atom eV, forces eV/Å, stress GPa); sevenn's
    ``run_one_epoch`` calls ``update(output)`` on every batch."""

    def __init__(self):
        self.sq = {"e": 0.0, "f": 0.0, "s": 0.0}
        self.n = {"e": 0, "f": 0, "s": 0}
        self.energies: list[float] = []

    def update(self, output) -> None:
        import sevenn._keys as KEY
        import torch

        with torch.no_grad():
            natoms = output[KEY.NUM_ATOMS].reshape(-1).double()
            pred_e = output[KEY.PRED_TOTAL_ENERGY].detach().reshape(-1).double()
            ref_e = output[KEY.ENERGY].detach().reshape(-1).double()
            self.energies += pred_e.cpu().tolist()
            self._add("e", (pred_e - ref_e) / natoms)
            self._add("f", output[KEY.PRED_FORCE].detach().double() - output[KEY.FORCE].double())
            if KEY.PRED_STRESS in output and KEY.STRESS in output:
                diff = (output[KEY.PRED_STRESS].detach().double() - output[KEY.STRESS].double()) * EV_A3_TO_GPA
                self._add("s", diff)

    def _add(self, key, diff) -> None:
        import torch

        diff = diff.reshape(-1)
        diff = diff[~torch.isnan(diff)]
        self.sq[key] += float((diff**2).sum())
        self.n[key] += int(diff.numel())

    def rmse(self) -> dict[str, float]:
        return {k: math.sqrt(self.sq[k] / self.n[k]) if self.n[k] else float("nan") for k in self.sq}


def _predict(model, graphs, device: str, batch_size: int = 4) -> _Errors:
    from torch_geometric.loader import DataLoader

    errors = _Errors()
    model.eval()
    for batch in DataLoader(graphs, batch_size=batch_size, shuffle=False):
        errors.update(model(batch.to(device)))
    return errors


def add_element_shift(model, config, shift_by_element: dict[str, float], head: str | None = None) -> None:
    """Add ``shift_by_element`` (eV) to the model's per-element atomic reference energies (of the
    fidelity ``head`` when the model has one shift per fidelity)."""
    import torch
    from ase.data import atomic_numbers
    from sevenn.nn.scale import ModalWiseRescale, SpeciesWiseRescale, get_resolved_shift_scale

    rescale = model._modules.get("rescale_atomic_energy")
    if not isinstance(rescale, (SpeciesWiseRescale, ModalWiseRescale)):
        raise ModelError(
            f"this checkpoint's energy scaling ({type(rescale).__name__}) has no per-element "
            f"reference energies; use --energy-shift none"
        )
    type_map = config["_type_map"]
    modal_map = config.get("_modal_map") if isinstance(rescale, ModalWiseRescale) else None
    per_modal = bool(modal_map) and rescale.use_modal_wise_shift
    with torch.no_grad():
        for el, delta in shift_by_element.items():
            t = type_map[atomic_numbers[el]]
            if per_modal:
                rescale.shift[modal_map[head], t] += float(delta)
            else:
                rescale.shift[t] += float(delta)
    config["shift"], config["scale"] = get_resolved_shift_scale(rescale, type_map, modal_map)


# ----------------------------------------------------------------------------- training


def train_sevennet(
    train_frames: Sequence[Atoms],
    valid_frames: Sequence[Atoms],
    output: str | Path,
    *,
    init: str | None = None,
    epochs: float | None = None,
    steps: int | None = None,
    batch_size: int | None = None,
    start_lr: float | None = None,
    stop_lr: float | None = None,
    lr_schedule: str | None = None,
    loss: str | None = None,
    loss_weights=None,
    energy_shift: str | None = None,
    sevenn_config: dict | None = None,
    seed: int = 0,
    device: str = "auto",
    model_name: str = "model.pth",
) -> dict:
    """Fine-tune a pretrained SevenNet on labelled frames; write ``model_name`` (a SevenNet
    checkpoint) and ``lcurve.out`` under ``output`` and return the summary.

    ``sevenn_config``: sevenn ``train`` keys (``optimizer``, ``optim_param``, ``scheduler``,
    ``scheduler_param``, ``loss``, ``loss_param``, ``force_loss_weight``, ``stress_loss_weight``,
    ``is_train_stress``…) that override cscli's; with a ``scheduler`` of its own, sevenn steps it
    once per epoch instead of cscli's schedule.
    """
    import random

    import numpy as np

    try:
        import torch
        from torch_geometric.loader import DataLoader
    except ImportError as exc:
        raise ModelError(
            f"--backend sevennet: sevenn is not installed ({exc}); install the cscli[sevennet] extra"
        ) from None
    from cscli.core.models import resolve_device

    o = dict(DEFAULTS)
    o.update(
        {
            k: v
            for k, v in dict(
                init=init,
                epochs=epochs,
                batch_size=batch_size,
                start_lr=start_lr,
                stop_lr=stop_lr,
                lr_schedule=lr_schedule,
                loss=loss,
                loss_weights=loss_weights,
                energy_shift=energy_shift,
            ).items()
            if v is not None
        }
    )
    loss_name, loss_param = parse_loss(o["loss"])
    w_e, w_f, w_s = parse_weights(o["loss_weights"])
    if o["energy_shift"] not in ENERGY_SHIFTS:
        raise UsageError(f"--energy-shift {o['energy_shift']!r}: choose from {', '.join(ENERGY_SHIFTS)}")
    bs = int(o["batch_size"])
    if bs < 1:
        raise UsageError(f"--batch-size must be >= 1, got {bs}")
    if steps is not None and steps < 1:
        raise UsageError(f"--steps must be >= 1, got {steps}")
    if steps is None and float(o["epochs"]) <= 0:
        raise UsageError(f"--epochs must be > 0, got {o['epochs']}")
    lr_at(0, 1, float(o["start_lr"]), o["stop_lr"], o["lr_schedule"])  # check before the slow part
    from cscli.learn.finetune.data import frame_labels

    if not train_frames:
        raise DataError("no training frames")
    for atoms in [*train_frames, *valid_frames]:
        frame_labels(atoms)  # energy and forces, one line naming the frame otherwise
    label, ckpt_path, head = parse_init(o["init"])
    dev = resolve_device(device)

    out = Path(output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("lcurve.out", model_name):
        (out / stale).unlink(missing_ok=True)

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    model, config, head = load_pretrained(ckpt_path, head)
    missing = sorted(
        set().union(*(a.get_chemical_symbols() for a in [*train_frames, *valid_frames])) - model_elements(config)
    )
    if missing:
        raise DataError(f"--init {label}: the model does not know element(s) {', '.join(missing)}")
    cutoff = float(config["cutoff"])
    t0 = time.time()
    train_graphs = [frame_graph(a, cutoff, head) for a in train_frames]
    valid_graphs = [frame_graph(a, cutoff, head) for a in valid_frames]
    with_stress = any(not bool(torch.isnan(g["stress"]).all()) for g in train_graphs)
    log.info(
        "sevennet: %s, %d train / %d valid frames (stress %s), cutoff %.1f Å, device %s; graphs in %.1f s",
        label,
        len(train_frames),
        len(valid_frames),
        "on" if with_stress else "off",
        cutoff,
        dev,
        time.time() - t0,
    )

    model.to(dev)
    model.set_is_batch_data(True)
    shift_report: dict = {"method": o["energy_shift"]}
    if o["energy_shift"] == "fit":
        elements = sorted({s for a in train_frames for s in a.get_chemical_symbols()})
        zero = _predict(model, train_graphs, dev, bs)
        residual = np.array([a.info["energy"] for a in train_frames], dtype=float) - np.array(zero.energies)
        counts = composition_matrix(train_frames, elements)
        delta, rank = fit_element_shift(counts, residual)
        add_element_shift(model, config, dict(zip(elements, delta.tolist())), head)
        natoms = counts.sum(axis=1)
        after = residual - counts @ delta
        shift_report.update(
            {
                "per_element_eV": {el: float(d) for el, d in zip(elements, delta)},
                "rank": rank,
                "n_elements": len(elements),
                "train_rmse_e_before_eV_atom": float(np.sqrt(np.mean((residual / natoms) ** 2))),
                "train_rmse_e_after_eV_atom": float(np.sqrt(np.mean((after / natoms) ** 2))),
            }
        )
        log.info(
            "energy shift (eV/atom): %s; train energy RMSE %.1f -> %.1f meV/atom%s",
            ", ".join(f"{el} {d:+.4f}" for el, d in zip(elements, delta)),
            1e3 * shift_report["train_rmse_e_before_eV_atom"],
            1e3 * shift_report["train_rmse_e_after_eV_atom"],
            "" if rank == len(elements) else f" (compositions determine {rank} of {len(elements)} shifts)",
        )

    config.update(
        {
            "optimizer": "adam",
            "optim_param": {"lr": float(o["start_lr"])},
            "scheduler": "exponentiallr",
            "scheduler_param": {"gamma": 1.0},
            "loss": loss_name,
            "loss_param": loss_param,
            "force_loss_weight": w_f,
            "stress_loss_weight": w_s,
            "is_train_stress": with_stress and w_s > 0,
            "is_ddp": False,
            "device": dev,
            "random_seed": seed,
            "use_weight": False,
        }
    )
    own_scheduler = bool(sevenn_config and "scheduler" in sevenn_config)
    if sevenn_config:
        config.update(sevenn_config)
    from sevenn.train.loss import PerAtomEnergyLoss
    from sevenn.train.trainer import Trainer

    try:
        trainer = Trainer.from_config(model, config)
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"sevenn rejected the training settings: {type(exc).__name__}: {exc}") from None
    trainer.loss_functions = [(fn, w_e if isinstance(fn, PerAtomEnergyLoss) else w) for fn, w in trainer.loss_functions]

    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(train_graphs, batch_size=bs, shuffle=True, generator=generator)
    per_epoch = len(loader)
    n_epochs = math.ceil(steps / per_epoch) if steps is not None else max(1, math.ceil(float(o["epochs"])))
    total_steps = (
        steps
        if steps is not None
        else (n_epochs * per_epoch if float(o["epochs"]).is_integer() else math.ceil(float(o["epochs"]) * per_epoch))
    )

    rows = []
    nan = float("nan")
    if valid_graphs:
        v = _predict(trainer.model, valid_graphs, dev, bs).rmse()
        rows.append([0, 0, nan, nan, v["e"], nan, v["f"], nan, v["s"], 0.0])
        log.info("epoch 0 (start): valid E %.2f meV/atom, F %.1f meV/Å", 1e3 * v["e"], 1e3 * v["f"])
    import itertools

    done = 0
    epoch_seconds, epoch_cpu = [], []
    for epoch in range(n_epochs):
        if not own_scheduler:
            lr = lr_at(epoch, n_epochs, float(o["start_lr"]), o["stop_lr"], o["lr_schedule"])
            for group in trainer.optimizer.param_groups:
                group["lr"] = lr
        lr = trainer.get_lr()
        n_batches = min(per_epoch, total_steps - done)
        t_epoch, cpu_epoch = time.time(), time.process_time()
        trn = _Errors()
        trainer.run_one_epoch(itertools.islice(loader, n_batches), is_train=True, error_recorder=trn)
        done += n_batches
        if own_scheduler:
            trainer.scheduler_step()
        seconds = time.time() - t_epoch
        epoch_seconds.append(seconds)
        epoch_cpu.append(time.process_time() - cpu_epoch)
        t = trn.rmse()
        v = _predict(trainer.model, valid_graphs, dev, bs).rmse() if valid_graphs else {"e": nan, "f": nan, "s": nan}
        rows.append([epoch + 1, done, lr, t["e"], v["e"], t["f"], v["f"], t["s"], v["s"], seconds])
        log.info(
            "epoch %d/%d lr %.2e: train E %.2f meV/atom F %.1f meV/Å | valid E %.2f F %.1f (%.0f s)",
            epoch + 1,
            n_epochs,
            lr,
            1e3 * t["e"],
            1e3 * t["f"],
            1e3 * v["e"],
            1e3 * v["f"],
            seconds,
        )
        if done >= total_steps:
            break
    write_lcurve(rows, out / "lcurve.out")

    model_path = out / model_name
    trainer.model.set_is_batch_data(False)
    trainer.model.to("cpu")
    import sevenn

    config["version"] = sevenn.__version__
    config["device"] = "cpu"
    # a SevenNet checkpoint as sevenn's Trainer.write_checkpoint writes it, plus cscli's record of the
    # fine-tuned fidelity, which cscli.core.models uses when --model names no head
    torch.save(
        {
            "config": config,
            "model_state_dict": trainer.model.state_dict(),
            "epoch": len(epoch_seconds),
            "time": time.strftime("%Y-%m-%d %H:%M"),
            "hash": f"cscli-finetune-{seed}",
            "optimizer_state_dict": trainer.optimizer.state_dict(),
            "scheduler_state_dict": None,
            "cscli": {"head": head, "init": label, "seed": seed},
        },
        model_path,
    )
    return {
        "backend": "sevennet",
        "model": str(model_path),
        "checkpoint": str(model_path),
        "lcurve": str(out / "lcurve.out"),
        "init": label,
        "init_path": ckpt_path,
        "head": head,
        "sevenn_version": sevenn.__version__,
        "n_train": len(train_frames),
        "n_valid": len(valid_frames),
        "epochs": len(epoch_seconds),
        "steps": done,
        "batch_size": bs,
        "lr_schedule": "sevenn: " + str(config.get("scheduler")) if own_scheduler else o["lr_schedule"],
        "start_lr": float(o["start_lr"]),
        "stop_lr": o["stop_lr"],
        "loss": {"name": loss_name, **loss_param, "weights": {"energy": w_e, "force": w_f, "stress": w_s}},
        "stress": bool(config.get("is_train_stress")),
        "energy_shift": shift_report,
        "seed": seed,
        "device": dev,
        "seconds_per_epoch": float(np.mean(epoch_seconds)) if epoch_seconds else None,
        # CPU time of this process per epoch (all its threads): on a shared machine the wall time
        # above grows with the load, this does not
        "cpu_seconds_per_epoch": float(np.mean(epoch_cpu)) if epoch_cpu else None,
        "steps_per_epoch": per_epoch,
        "cutoff": cutoff,
        "sevenn_config": sevenn_config or None,
    }


LCURVE_COLUMNS = (
    "epoch",
    "step",
    "lr",
    "rmse_e_trn",
    "rmse_e_val",
    "rmse_f_trn",
    "rmse_f_val",
    "rmse_s_trn",
    "rmse_s_val",
    "seconds",
)


def write_lcurve(rows, path: str | Path) -> None:
    """``lcurve.out``: one row per epoch (epoch 0: the start, after the energy shift, validation
    only); energy eV/atom, forces eV/Å, stress GPa; train errors are running averages over the epoch."""
    with open(path, "w") as fh:
        fh.write("# " + " ".join(f"{c:>12s}" for c in LCURVE_COLUMNS) + "\n")
        for row in rows:
            fh.write("  " + " ".join(f"{x:12.6g}" if isinstance(x, float) else f"{x:12d}" for x in row) + "\n")
