"""Plots of ``cscli report``: the figures of the seed paper's Fig. 2 and SI Figs. 2–3, per iteration.

* ``ehull_density.png`` — density of E_hull of the relaxed candidates per iteration (Fig. 2a;
  Gaussian kernel density, scipy's ``gaussian_kde`` with Scott's bandwidth);
* ``sun_ratios.png``    — S, U, N and S.U.N. ratios per iteration (Fig. 2d);
* ``entropy.png``       — H of the candidates' and of the labelled frames' environments, and the
  labelled-frame count, per iteration (Fig. 2e);
* ``errors.png``        — force and energy RMSE on each iteration's new labels before/after its fine-tune;
* ``ehull_parity.png``  — E_hull from the force field against DFT (SI Fig. 3);
* ``tsne.png``          — t-SNE of CrystalNN fingerprints (Li removed) coloured by iteration (SI Fig. 2).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cscli.core.log import get_logger

log = get_logger(__name__)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def ehull_density(data, path: str) -> None:
    from scipy.stats import gaussian_kde

    from cscli.report.completeness import e_hull_values

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=120)
    cmap = plt.get_cmap("viridis")
    values = [e_hull_values(d.hull if d.hull is not None else d.sun) for d in data]
    allv = [v for vs in values for v in vs]
    if allv:
        lo, hi = min(allv), max(allv)
        pad = 0.1 * (hi - lo or 1.0)
        grid = np.linspace(lo - pad, hi + pad, 400)
        for k, (d, v) in enumerate(zip(data, values)):
            color = cmap(k / max(1, len(data) - 1))
            if len(v) >= 2 and np.ptp(v) > 0:
                ax.plot(grid, gaussian_kde(v)(grid), color=color, label=f"iteration {d.iteration} ({len(v)})")
            elif v:
                ax.axvline(v[0], color=color, label=f"iteration {d.iteration} ({len(v)})")
        ax.axvline(0.1, color="gray", ls=":", lw=1)
        ax.legend(fontsize=7)
    ax.set_xlabel(r"$E_\mathrm{hull}$ (eV/atom)")
    ax.set_ylabel("density")
    ax.set_title("E_hull of relaxed candidates", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _save(fig, path: str) -> None:
    fig.tight_layout()
    fig.savefig(path)
    _plt().close(fig)


def _per_iteration(report: dict, ylabel: str):
    """(rows, iteration numbers, figure, axes) of a plot against the iteration."""
    rows = report["iterations"]
    it = [r["iteration"] for r in rows]
    fig, ax = _plt().subplots(figsize=(5, 3.6), dpi=120)
    ax.set_xlabel("iteration")
    ax.set_ylabel(ylabel)
    ax.set_xticks(it)
    return rows, it, fig, ax


def sun_ratios(report: dict, path: str) -> None:
    rows, it, fig, ax = _per_iteration(report, "ratio")
    for key, color, label in (
        ("stable", "green", "stable"),
        ("unique", "blue", "unique"),
        ("novel", "c", "novel"),
        ("sun", "red", "S.U.N."),
    ):
        y = [np.nan if r["ratios"][key] is None else r["ratios"][key] for r in rows]
        ax.plot(it, y, "o-", color=color, label=label)
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7)
    _save(fig, path)


def entropy_plot(report: dict, path: str) -> None:
    rows, it, fig, ax = _per_iteration(report, "H (nats)")

    def get(r, key):
        v = (r.get("entropy") or {}).get(key)
        return np.nan if v is None else v

    ax.plot(it, [get(r, "H_generated") for r in rows], "o-", color="red", label="H, candidates of the iteration")
    ax.plot(it, [get(r, "H_dft_cumulative") for r in rows], "s--", color="darkred", label="H, all labelled frames")
    ax2 = ax.twinx()
    ax2.plot(it, [get(r, "labelled_cumulative") for r in rows], "^-", color="c", label="labelled frames (cumulative)")
    ax2.set_ylabel("labelled frames", color="c")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=7, loc="lower right")
    _save(fig, path)


def errors_plot(report: dict, path: str) -> None:
    plt = _plt()
    rows = report["iterations"]
    it = np.array([r["iteration"] for r in rows], dtype=float)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 3.4), dpi=120)
    for ax, key, unit in ((a1, "forces_rmse", "eV/Å"), (a2, "energy_per_atom_rmse", "eV/atom")):
        for when, dx, color in (("before", -0.15, "gray"), ("after", 0.15, "C0")):
            y = [np.nan if r["errors"][when][key] is None else r["errors"][when][key] for r in rows]
            ax.bar(it + dx, y, width=0.3, color=color, label=f"{when} fine-tune")
        ax.set_xticks(it)
        ax.set_xlabel("iteration")
        ax.set_ylabel(f"{key.replace('_rmse', '').replace('_', ' ')} RMSE ({unit})")
        ax.legend(fontsize=7)
    fig.suptitle("force field on each iteration's new labels", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def ehull_parity(data, report: dict, path: str) -> bool:
    from cscli.report.completeness import e_hull_pairs

    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.4, 4.2), dpi=120)
    drawn = False
    cmap = plt.get_cmap("viridis")
    for k, d in enumerate(data):
        _, pf, pd = e_hull_pairs(d.hull_dft, d.hull_ff)
        if pf:
            ax.scatter(
                pd,
                pf,
                s=18,
                color=cmap(k / max(1, len(data) - 1)),
                edgecolors="k",
                linewidths=0.3,
                label=f"iteration {d.iteration}",
            )
            drawn = True
    if not drawn:
        plt.close(fig)
        return False
    lo, hi = ax.get_xlim()
    lo2, hi2 = ax.get_ylim()
    lo, hi = min(lo, lo2), max(hi, hi2)
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    thr = report["settings"]["stable_threshold"]
    ax.axvline(thr, color="gray", ls=":", lw=0.8)
    ax.axhline(thr, color="gray", ls=":", lw=0.8)
    hv = report["cumulative"].get("e_hull_dft_vs_ff") or {}
    ax.set_title(f"E_hull RMSE {hv.get('rmse', float('nan')) * 1000:.1f} meV/atom", fontsize=10)
    ax.set_xlabel(r"$E_\mathrm{hull}$ DFT (eV/atom)")
    ax.set_ylabel(r"$E_\mathrm{hull}$ force field (eV/atom)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def tsne_map(data, path: str, seed: int = 0) -> int:
    """t-SNE of the relaxed candidates of every iteration, coloured by iteration; frames mapped."""
    from cscli.core.errors import CscliError
    from cscli.screen.fingerprints import fingerprint_map, frame_fingerprint

    fps, labels, ids = [], [], []
    for d in data:
        for a in d.relaxed or []:
            try:
                fps.append(frame_fingerprint(a, ("Li",), store=False))
            except CscliError as exc:
                log.warning("t-SNE: %s", exc)
                continue
            labels.append(d.iteration)
            ids.append(str(a.info.get("id")))
    if len(fps) < 3:
        log.warning("t-SNE map skipped: %d structures (needs 3)", len(fps))
        return 0
    fingerprint_map(fps, labels, path, color_by="iteration", seed=seed, ids=ids)
    return len(fps)


def write_plots(report: dict, data: Sequence, outdir: str | Path, tsne: bool = True, seed: int = 0) -> list[str]:
    """All plots into ``outdir``; returns the files written."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    ehull_density(data, str(outdir / "ehull_density.png"))
    written.append("ehull_density.png")
    sun_ratios(report, str(outdir / "sun_ratios.png"))
    written.append("sun_ratios.png")
    if any(r.get("entropy") for r in report["iterations"]):
        entropy_plot(report, str(outdir / "entropy.png"))
        written.append("entropy.png")
    errors_plot(report, str(outdir / "errors.png"))
    written.append("errors.png")
    if ehull_parity(data, report, str(outdir / "ehull_parity.png")):
        written.append("ehull_parity.png")
    if tsne and tsne_map(data, str(outdir / "tsne.png"), seed=seed):
        written.append("tsne.png")
    return written
