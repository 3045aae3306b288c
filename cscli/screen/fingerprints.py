"""Structure fingerprints and 2-D maps of a set of structures.

A structure's fingerprint is the mean over its sites of matminer's ``CrystalNNFingerprint``
("ops" preset: CrystalNN coordination weights times local structure order parameters, 61 numbers),
computed by matminer's ``SiteStatsFingerprint(..., stats=("mean",))``. With the cations removed
first (``remove=("Li",)``) the fingerprint describes the anion framework alone, as in the seed
paper's Fig. 4a / Supp. Fig. 2. A t-SNE embedding (scikit-learn) of the standardised fingerprints
gives the map, coloured by dominant motif or by exploration iteration.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

from cscli.core.errors import DataError, FrameError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    from ase import Atoms

PRESET = "ops"


def fingerprint_kind(remove: Sequence[str] = ("Li",)) -> str:
    """Name stored in ``info['fingerprint_kind']``: tells which fingerprint ``info['fingerprint']`` holds."""
    removed = "".join(f"-no{s}" for s in sorted(set(remove)))
    return f"crystalnn-{PRESET}-mean{removed}"


@functools.lru_cache(maxsize=1)
def _featurizer():
    import warnings

    from matminer.featurizers.site import CrystalNNFingerprint
    from matminer.featurizers.structure import SiteStatsFingerprint

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SiteStatsFingerprint(CrystalNNFingerprint.from_preset(PRESET), stats=("mean",))


def fingerprint_labels() -> list[str]:
    return list(_featurizer().feature_labels())


def structure_fingerprint(atoms: Atoms, remove: Sequence[str] = ("Li",)) -> np.ndarray:
    """Mean CrystalNN "ops" site fingerprint of ``atoms`` with the species in ``remove`` taken out."""
    import warnings

    import numpy as np
    from pymatgen.io.ase import AseAtomsAdaptor

    keep = [s not in set(remove) for s in atoms.get_chemical_symbols()]
    sub = atoms[keep]
    n_features = len(fingerprint_labels())
    if len(sub) == 0:
        return np.zeros(n_features)  # nothing left (Li metal without Li): the empty framework
    if not sub.pbc.all():
        raise FrameError(f"frame {atoms.info.get('id', '?')}: fingerprints need a periodic cell")
    structure = AseAtomsAdaptor.get_structure(sub)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            values = _featurizer().featurize(structure)
        except Exception as exc:
            raise FrameError(f"frame {atoms.info.get('id', '?')}: CrystalNN fingerprint failed: {exc}") from None
    return np.nan_to_num(np.asarray(values, dtype=float))


def frame_fingerprint(atoms: Atoms, remove: Sequence[str] = ("Li",), store: bool = True) -> np.ndarray:
    """The frame's fingerprint, reused from ``info['fingerprint']`` when its kind matches."""
    import numpy as np

    kind = fingerprint_kind(remove)
    if atoms.info.get("fingerprint_kind") == kind and "fingerprint" in atoms.info:
        return np.asarray(atoms.info["fingerprint"], dtype=float)
    fp = structure_fingerprint(atoms, remove)
    if store:
        atoms.info["fingerprint"] = fp
        atoms.info["fingerprint_kind"] = kind
    return fp


def tsne_embedding(fingerprints, seed: int = 0, perplexity: float | None = None):
    """2-D t-SNE of standardised fingerprints (perplexity min(30, (n - 1) / 3) unless given)."""
    import numpy as np
    from sklearn.manifold import TSNE
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(fingerprints, dtype=float)
    n = len(x)
    if n < 3:
        raise DataError(f"a t-SNE map needs at least 3 frames, got {n}")
    x = StandardScaler().fit_transform(x)
    perp = perplexity if perplexity is not None else max(1.0, min(30.0, (n - 1) / 3.0))
    return TSNE(n_components=2, perplexity=perp, init="pca", random_state=seed).fit_transform(x)


def plot_map(xy, labels: Sequence, path: str, color_by: str = "motif", title: str | None = None) -> None:
    """Scatter plot of an embedding, categorical colours (motif names) or a colour bar (iterations)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    xy = np.asarray(xy)
    fig, ax = plt.subplots(figsize=(7.5, 6), dpi=120)
    numeric = color_by == "iteration" and all(_is_number(v) for v in labels)
    if numeric and len(set(labels)) > 12:
        vals = np.array([float(v) for v in labels])
        sc = ax.scatter(xy[:, 0], xy[:, 1], c=vals, cmap="viridis", s=28, edgecolors="k", linewidths=0.3)
        fig.colorbar(sc, ax=ax, label="iteration")
    elif numeric:  # a few iterations: one colour each, in order
        values = sorted(set(float(v) for v in labels))
        cmap = plt.get_cmap("viridis")
        for k, value in enumerate(values):
            mask = np.array([float(v) == value for v in labels])
            text = f"{value:g}"
            ax.scatter(
                xy[mask, 0],
                xy[mask, 1],
                s=28,
                color=cmap(k / max(1, len(values) - 1)),
                edgecolors="k",
                linewidths=0.3,
                label=f"{text} ({int(mask.sum())})",
            )
        ax.legend(
            title="iteration",
            fontsize=7,
            title_fontsize=8,
            loc="center left",
            bbox_to_anchor=(1.01, 0.5),
            frameon=False,
        )
    else:
        names = [str(v) for v in labels]
        order = sorted(set(names), key=lambda s: (-names.count(s), s))
        cmap = plt.get_cmap("tab20" if len(order) > 10 else "tab10")
        for k, name in enumerate(order):
            mask = np.array([n == name for n in names])
            ax.scatter(
                xy[mask, 0],
                xy[mask, 1],
                s=28,
                color=cmap(k % cmap.N),
                edgecolors="k",
                linewidths=0.3,
                label=f"{mathtext(name)} ({int(mask.sum())})",
            )
        ax.legend(
            title="dominant motif" if color_by == "motif" else color_by,
            fontsize=7,
            title_fontsize=8,
            loc="center left",
            bbox_to_anchor=(1.01, 0.5),
            frameon=False,
        )
    ax.set_xlabel("t-SNE 1")
    ax.set_ylabel("t-SNE 2")
    ax.set_title(title or f"CrystalNN fingerprints, t-SNE ({len(xy)} structures)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def mathtext(name: str) -> str:
    """``P2S7^4-`` → ``P$_{2}$S$_{7}$$^{4-}$`` and ``(PS3)n^n-`` → ``(PS$_{3}$)$_{n}$$^{n-}$`` for plot labels."""
    import re

    head, sep, charge = name.partition("^")
    suffix = ""
    if " " in charge:
        charge, suffix = charge.split(" ", 1)
        suffix = " " + suffix
    elif " " in head and not sep:
        head, suffix = head.split(" ", 1)
        suffix = " " + suffix
    head = re.sub(r"(?<=[A-Za-z)])(\d+)", r"$_{\1}$", head)
    head = re.sub(r"(?<=\))n", r"$_{n}$", head)
    return head + (f"$^{{{charge}}}$" if sep else "") + suffix


def _is_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def fingerprint_map(
    fingerprints, labels: Sequence, path: str, color_by: str = "motif", seed: int = 0, ids: Sequence[str] | None = None
):
    """t-SNE map saved as PNG at ``path`` (plus ``<path stem>.csv``: id, x, y, label); returns the embedding."""
    from pathlib import Path

    xy = tsne_embedding(fingerprints, seed=seed)
    plot_map(xy, labels, path, color_by=color_by)
    csv = Path(path).with_suffix(".csv")
    with open(csv, "w", encoding="utf-8") as fh:
        fh.write(f"id,x,y,{color_by}\n")
        for k, (x, y) in enumerate(xy):
            fid = ids[k] if ids is not None else str(k)
            fh.write(f'{fid},{x:.4f},{y:.4f},"{labels[k]}"\n')
    return xy


__all__ = [
    "fingerprint_kind",
    "fingerprint_labels",
    "fingerprint_map",
    "frame_fingerprint",
    "plot_map",
    "structure_fingerprint",
    "tsne_embedding",
]
