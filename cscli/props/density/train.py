"""Training a density model on CHGCAR / h5 densities (``cscli density train``).

Each step draws ``structures_per_step`` training structures and ``probes`` probe points in each:
a fraction ``near_atom_fraction`` near atoms (a random atom plus a random offset of length
≤ ``near_atom_radius`` Å, snapped to the nearest grid point so the DFT value is exact), the rest
uniformly over the grid (or over the stored probe points of an h5 frame). The loss is
mean((Δρ/s)²) + mean(|Δρ|/s) with s the model's ``output_scale``. Every ``eval_every`` steps
the validation NMAE = Σ|Δρ| / Σ|ρ| (over every grid point of every validation structure, up to
``eval_points`` points each) is computed; the best model is kept as ``DIR/model.pt``.

A run writes under ``DIR``: ``checkpoint.pt`` (model, optimiser, step, random state, history —
a re-run with the same DIR resumes from it), ``model.pt``, ``history.json``, ``learning_curve.png``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cscli.core.errors import DataError, UsageError
from cscli.core.log import get_logger, is_quiet

log = get_logger(__name__)


@dataclass
class TrainSettings:
    steps: int = 2000
    lr: float = 3e-3
    final_lr: float = 1e-4
    probes: int = 1000
    structures_per_step: int = 2
    near_atom_fraction: float = 0.5
    near_atom_radius: float = 1.5
    valid_fraction: float = 0.2
    eval_every: int = 100
    eval_points: int = 20000
    seed: int = 0
    device: str = "cpu"
    resume: bool = True


def split(densities, valid_fraction: float, seed: int, valid=None):
    """(train, valid) lists: explicit ``valid`` densities, or a seeded fraction of the structures
    (at least one each when there are two or more)."""
    if valid:
        return list(densities), list(valid)
    n = len(densities)
    if n < 2 or valid_fraction <= 0:
        return list(densities), []
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    n_val = min(n - 1, max(1, int(round(valid_fraction * n))))
    val_idx = set(order[:n_val].tolist())
    return [d for i, d in enumerate(densities) if i not in val_idx], [
        d for i, d in enumerate(densities) if i in val_idx
    ]


def sample_points(density, n: int, near_fraction: float, radius: float, rng):
    """``n`` (points, values) of one density: near-atom and uniform parts (see module doc)."""
    if not density.is_grid:
        idx = rng.integers(0, len(density.values), n)
        return density.points[idx], density.values[idx]
    shape = np.asarray(density.values.shape)
    total = int(np.prod(shape))
    n_near = int(round(n * near_fraction)) if len(density.atoms) else 0
    flat = [rng.integers(0, total, n - n_near)]
    if n_near:
        atoms = density.atoms
        centre = atoms.positions[rng.integers(0, len(atoms), n_near)]
        direction = rng.normal(size=(n_near, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        r = radius * rng.random(n_near) ** (1.0 / 3.0) * rng.random(n_near) ** 0.5  # denser near the atom
        frac = (centre + direction * r[:, None]) @ np.linalg.inv(atoms.cell.array)
        ijk = np.mod(np.rint(frac * shape).astype(int), shape)
        flat.append(np.ravel_multi_index(ijk.T, tuple(shape)))
    idx = np.concatenate(flat)
    return density.grid_points(idx), density.values.reshape(-1)[idx]


def eval_set(density, max_points: int, seed: int = 0):
    """Fixed evaluation points of one density: all, or a seeded subset of ``max_points``."""
    pts, vals = density.all_points()
    if len(vals) > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(len(vals), max_points, replace=False))
        pts, vals = pts[idx], vals[idx]
    return pts, vals


def nmae(pred, ref) -> float:
    ref = np.asarray(ref)
    return float(np.abs(np.asarray(pred) - ref).sum() / max(np.abs(ref).sum(), 1e-300))


def _species(densities):
    return sorted({int(z) for d in densities for z in d.atoms.numbers})


def _stats(densities, cutoff: float, probe_cutoff: float):
    from cscli.props.density.model import periodic_pairs

    nb, pb, scale = [], [], []
    rng = np.random.default_rng(0)
    for d in densities[:20]:
        a = d.atoms
        c, _, _ = periodic_pairs(a.cell.array, a.pbc, a.positions, a.positions, cutoff, exclude_self=True)
        nb.append(len(c) / max(len(a), 1))
        pts, _ = sample_points(d, 200, 0.0, 1.0, rng)
        p, _, _ = periodic_pairs(a.cell.array, a.pbc, pts, a.positions, probe_cutoff)
        pb.append(len(p) / 200)
        scale.append(float(np.abs(d.values).mean()))
    return max(float(np.mean(nb)), 1.0), max(float(np.mean(pb)), 1.0), float(np.mean(scale))


def train(
    densities,
    out_dir,
    settings: TrainSettings,
    config: dict | None = None,
    init: str | None = None,
    valid=None,
    plot: bool = True,
) -> dict:
    """Train (or fine-tune from ``init``) a density model; returns the run summary."""
    import torch

    from cscli.props.density import model as M

    if not densities:
        raise DataError("no training densities")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(settings.seed)
    train_set, valid_set = split(densities, settings.valid_fraction, settings.seed, valid)
    if not train_set:
        raise DataError("no training structure left after the validation split")
    species = _species(train_set + valid_set)
    ckpt_path = out / "checkpoint.pt"
    meta_init = None
    if init:
        net, meta_init = M.load_model(init)
        missing = sorted(set(species) - set(net.species))
        if missing:
            from ase.data import chemical_symbols

            raise DataError(f"--init {init}: the model never saw {', '.join(chemical_symbols[z] for z in missing)}")
    else:
        cfg = dict(config or {})
        merged = {**M.DEFAULT_CONFIG, **cfg}
        nb, pb, scale = _stats(train_set, merged["cutoff"], merged["probe_cutoff"])
        cfg.setdefault("avg_neighbors", nb)
        cfg.setdefault("avg_probe_neighbors", pb)
        cfg.setdefault("output_scale", scale)
        net = M.build_model(species, cfg)
    pred = M.Predictor(net, settings.device)
    if not init and not (settings.resume and ckpt_path.is_file()):
        fit_prior(pred, train_set, rng_seed=settings.seed)
        if valid_set:
            log.info(
                "radial prior fitted: validation NMAE %.4f before training",
                _evaluate(pred, valid_set, [eval_set(d, settings.eval_points) for d in valid_set]),
            )
    opt = torch.optim.Adam(net.parameters(), lr=settings.lr)
    gamma = (settings.final_lr / settings.lr) ** (1.0 / max(settings.steps, 1))
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma)
    rng = np.random.default_rng(settings.seed)
    history = {"step": [], "train_loss": [], "valid_step": [], "valid_nmae": [], "train_nmae": []}
    step0, best = 0, math.inf
    if settings.resume and ckpt_path.is_file():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        history, step0, best = state["history"], int(state["step"]), float(state["best"])
        log.info("resuming from %s at step %d", ckpt_path, step0)
    valid_pts = [eval_set(d, settings.eval_points) for d in valid_set]
    monitor = valid_set or train_set[:3]
    monitor_pts = valid_pts if valid_set else [eval_set(d, settings.eval_points) for d in monitor]
    meta = {
        "trained_on": [d.name for d in train_set],
        "validated_on": [d.name for d in valid_set],
        "settings": asdict(settings),
        "init": str(init) if init else None,
        "init_meta": meta_init,
        "n_parameters": M.count_parameters(net),
    }
    bar = None
    if not is_quiet():
        from tqdm import tqdm

        bar = tqdm(total=settings.steps, initial=step0, unit="step", desc="cscli density train", leave=False)
    t0 = time.time()
    scale = float(net.config["output_scale"])
    order = []
    for step in range(step0 + 1, settings.steps + 1):
        net.train()
        opt.zero_grad()
        loss_total = 0.0
        for _ in range(settings.structures_per_step):
            if not order:
                order = list(rng.permutation(len(train_set)))
            d = train_set[order.pop()]
            pts, vals = sample_points(d, settings.probes, settings.near_atom_fraction, settings.near_atom_radius, rng)
            rho = pred.density(d.atoms, pts)
            target = torch.as_tensor(vals, dtype=rho.dtype, device=rho.device)
            diff = (rho - target) / scale
            loss = (diff.pow(2).mean() + diff.abs().mean()) / settings.structures_per_step
            loss.backward()
            loss_total += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
        opt.step()
        sched.step()
        history["step"].append(step)
        history["train_loss"].append(loss_total)
        if bar is not None:
            bar.update(1)
        if step % settings.eval_every == 0 or step == settings.steps:
            val = _evaluate(pred, monitor, monitor_pts)
            history["valid_step"].append(step)
            history["valid_nmae"].append(val)
            if val < best:
                best = val
                M.save_model(out / "model.pt", net, {**meta, "step": step, "valid_nmae": val})
            if bar is not None:
                bar.set_postfix(nmae=f"{val:.4f}")
            log.info("step %d: loss %.4g, %s NMAE %.4f", step, loss_total, "validation" if valid_set else "train", val)
            torch.save(
                {
                    "model": net.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "rng": rng.bit_generator.state,
                    "torch_rng": torch.get_rng_state(),
                    "history": history,
                    "step": step,
                    "best": best,
                },
                str(ckpt_path) + ".part",
            )
            Path(str(ckpt_path) + ".part").replace(ckpt_path)
    if bar is not None:
        bar.close()
    if not (out / "model.pt").exists():
        M.save_model(out / "model.pt", net, {**meta, "step": settings.steps})
    summary = {
        "model": str(out / "model.pt"),
        "best_valid_nmae": best if math.isfinite(best) else None,
        "monitored_on": "validation" if valid_set else "train",
        "steps": settings.steps,
        "seconds": time.time() - t0,
        **meta,
    }
    (out / "history.json").write_text(json.dumps(history))
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    if plot:
        plot_learning_curve(history, out / "learning_curve.png")
    return summary


def fit_prior(pred, densities, points: int = 4000, ridge: float = 1e-6, rng_seed: int = 0) -> None:
    """Least-squares fit of the model's per-element radial term (the network correction off)."""
    import torch

    net = pred.model
    rng = np.random.default_rng(rng_seed)
    nz, nb = net.prior_coef.shape
    ata = np.zeros((nz * nb, nz * nb))
    atb = np.zeros(nz * nb)
    with torch.no_grad():
        for d in densities:
            pts, vals = sample_points(d, points, 0.3, 2.0, rng)
            p, a, vec = pred.probe_edges(d.atoms, pts)
            phi = net.prior_basis(vec.norm(dim=1)).cpu().double().numpy()
            col = pred.model.z_to_index[torch.as_tensor(d.atoms.numbers)].cpu().numpy()[a.cpu().numpy()]
            design = np.zeros((len(pts), nz * nb))
            for k in range(nb):
                np.add.at(design, (p.cpu().numpy(), col * nb + k), phi[:, k])
            ata += design.T @ design
            atb += design.T @ vals
        scale = np.mean(np.diag(ata)) or 1.0
        coef = np.linalg.solve(ata + ridge * scale * np.eye(len(atb)), atb)
        net.prior_coef.copy_(torch.as_tensor(coef.reshape(nz, nb), dtype=net.prior_coef.dtype))


def _evaluate(pred, densities, pts_vals) -> float:
    num = den = 0.0
    for d, (pts, vals) in zip(densities, pts_vals):
        p = pred.predict(d.atoms, pts)
        num += float(np.abs(p - vals).sum())
        den += float(np.abs(vals).sum())
    return num / max(den, 1e-300)


def plot_learning_curve(history: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
    ax[0].semilogy(history["step"], history["train_loss"], lw=0.6)
    ax[0].set_xlabel("step")
    ax[0].set_ylabel("training loss")
    if history["valid_step"]:
        ax[1].semilogy(history["valid_step"], np.asarray(history["valid_nmae"]) * 100, "o-")
    ax[1].set_xlabel("step")
    ax[1].set_ylabel("NMAE (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def check_settings(settings: TrainSettings) -> None:
    if settings.steps < 1 or settings.probes < 1 or settings.structures_per_step < 1:
        raise UsageError("--steps, --probes and --structures-per-step must be ≥ 1")
    if not 0 <= settings.near_atom_fraction <= 1:
        raise UsageError("--near-atom-fraction must be within [0, 1]")
    if not 0 <= settings.valid_fraction < 1:
        raise UsageError("--valid-fraction must be within [0, 1)")
