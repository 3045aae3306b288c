"""Information entropy of atomic environments (QUESTS) and entropy-driven frame selection.

Definitions (Schwalbe-Koda, Hamel, Sadigh, Zhou, Lordi, *Nat. Commun.* 2025, "Model-free estimation
of completeness, uncertainties, and outliers in atomistic machine learning using information
theory"; implemented by the ``quests`` package, whose descriptors and defaults are used here):

* Each atom's environment is described by the QUESTS descriptor x (``quests.descriptor.
  get_descriptors``: k = 32 nearest neighbours, cutoff 5 Å, 63 numbers).
* Gaussian kernel K(x, y) = exp(-|x - y|² / 2h²), bandwidth h (QUESTS default 0.015).
* Entropy of a set X of N environments (nats):
  ``H(X) = -(1/N) Σ_i log[(1/N) Σ_j K(x_i, x_j)]``  (``quests.entropy.entropy``).
* Differential entropy of one environment y against a reference set X (nats):
  ``δH(y|X) = -log Σ_j K(y, x_j)``  (``quests.entropy.delta_entropy``; not normalised by N, so
  an environment with an exact twin in X has δH <= 0 and a novel one has δH >> 0).
* δH of a *frame* against X (what cscli writes as ``delta_entropy``) = the mean of δH(y|X) over
  the frame's environments y.

Numerics: sums are done in log space (log-sum-exp), so δH stays finite where QUESTS's direct
``-log(sum(exp))`` underflows to ``inf`` (environments more than ~0.57 descriptor units, i.e.
~38 h, from every reference environment); where QUESTS's value is finite the two agree. Distances
use batched float32 matrix products (the descriptors are float32); log sums are float64.

Large sets: the δH of millions of candidate environments against a large training set uses
approximate nearest neighbours (PyNNDescent, as ``quests.entropy.approx_delta_entropy`` does):
only the ``n`` nearest reference environments enter the kernel sum, which is where all of it is
whenever the others are many h further away. QUESTS uses n = 3; cscli defaults to 32, measured to
agree far better with the exact sum in dense regions (benchmarks/entropy.py).

Greedy selection keeps, for every candidate environment c, ``L_c = log Σ_{x in ref} K(c, x)`` and
updates it exactly (``logaddexp`` with the new frame's kernel sums) each time a frame joins the
reference, so one step costs (candidate environments) × (atoms of the chosen frame).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms

DEFAULT_BANDWIDTH = 0.015  # quests.entropy.DEFAULT_BANDWIDTH
DEFAULT_K = 32  # quests.descriptor.DEFAULT_K
DEFAULT_CUTOFF = 5.0  # quests.descriptor.DEFAULT_CUTOFF
DEFAULT_ANN_NEIGHBORS = 32  # QUESTS uses 3 (DEFAULT_UQ_NBRS); 32 is far closer to exact (benchmarks/entropy.py)
DEFAULT_GRAPH_NEIGHBORS = 10  # quests.entropy.DEFAULT_GRAPH_NBRS
EXACT_PAIR_LIMIT = 1_000_000_000  # method="auto": exact up to this many pairs (measured crossover ~1e9)
DUPLICATE_DISTANCE = 1e-3  # descriptor distance (float32 round-off ~3e-4) below which two environments are the same
_BLOCK_PAIRS = 2_000_000  # pairs per distance block (8 MB of float32)


# ----------------------------------------------------------------------------- descriptors


def descriptors(
    frames: Sequence[Atoms], k: int = DEFAULT_K, cutoff: float = DEFAULT_CUTOFF, dtype: str = "float32"
) -> tuple[np.ndarray, np.ndarray]:
    """QUESTS descriptors of all environments of ``frames`` and the frame index of each row.

    Returns ``(X, frame_of_row)``: X is (total atoms, 2k-1).
    """
    from quests.descriptor import get_descriptors

    blocks, owner = [], []
    for i, atoms in enumerate(frames):
        x = get_descriptors([atoms], k=k, cutoff=cutoff, dtype=dtype)
        blocks.append(x)
        owner.append(np.full(len(x), i, dtype=np.int64))
    width = 2 * k - 1
    if not blocks:
        return np.zeros((0, width), dtype=dtype), np.zeros(0, dtype=np.int64)
    return np.concatenate(blocks), np.concatenate(owner)


# ----------------------------------------------------------------------------- kernel sums


def _sq_norms(x: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, x)


def log_kernel_sum(y: np.ndarray, x: np.ndarray, h: float = DEFAULT_BANDWIDTH, return_min_dist: bool = False):
    """``log Σ_j exp(-|y_i - x_j|² / 2h²)`` for every row of y (float64), exact, batched.

    With ``return_min_dist`` also the distance from each y_i to its nearest x_j.
    Empty x gives -inf (and +inf distances).
    """
    y = np.ascontiguousarray(y)
    x = np.ascontiguousarray(x, dtype=y.dtype)
    m, n = len(y), len(x)
    out = np.full(m, -np.inf)
    dmin2 = np.full(m, np.inf)
    if m == 0 or n == 0:
        return (out, np.sqrt(dmin2)) if return_min_dist else out
    inv = 1.0 / (2.0 * h * h)
    ny, nx = _sq_norms(y), _sq_norms(x)
    col = max(1, min(n, 4096))
    row = max(1, min(m, _BLOCK_PAIRS // col))
    for j0 in range(0, n, col):
        xb, nxb = x[j0 : j0 + col], nx[j0 : j0 + col]
        for i0 in range(0, m, row):
            g = y[i0 : i0 + row] @ xb.T  # becomes d², then the kernel exponent, in place
            g *= -2.0
            g += ny[i0 : i0 + row, None]
            g += nxb[None, :]
            np.maximum(g, 0.0, out=g)
            bmin = g.min(axis=1)
            dmin2[i0 : i0 + row] = np.minimum(dmin2[i0 : i0 + row], bmin)
            g -= bmin[:, None]  # log-sum-exp: the largest term is exp(-bmin/2h²)
            g *= -inv
            np.exp(g, out=g)
            s = np.log(g.sum(axis=1, dtype=np.float64)) - bmin.astype(np.float64) * inv
            out[i0 : i0 + row] = np.logaddexp(out[i0 : i0 + row], s)
    return (out, np.sqrt(dmin2)) if return_min_dist else out


def approx_log_kernel_sum(
    y: np.ndarray,
    x: np.ndarray,
    h: float = DEFAULT_BANDWIDTH,
    n_neighbors: int = DEFAULT_ANN_NEIGHBORS,
    graph_neighbors: int = DEFAULT_GRAPH_NEIGHBORS,
    seed: int | None = 0,
    self_query: bool = False,
    return_min_dist: bool = False,
):
    """Like :func:`log_kernel_sum` but over the ``n_neighbors`` nearest x of each y (PyNNDescent).

    This is QUESTS's approximate δH (``approx_delta_entropy``) in log space. ``self_query``: y is
    x itself (for the entropy of a set), answered from the index's own neighbour graph.
    """
    import pynndescent

    y = np.ascontiguousarray(y, dtype=np.float32)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if len(x) == 0 or len(y) == 0:
        out = np.full(len(y), -np.inf)
        return (out, np.full(len(y), np.inf)) if return_min_dist else out
    k = min(n_neighbors, len(x))
    index = pynndescent.NNDescent(
        x,
        n_neighbors=max(graph_neighbors, k + 1) if self_query else graph_neighbors,
        random_state=seed,
        low_memory=True,
        verbose=False,
    )
    if self_query:
        _, d = index.neighbor_graph
        d = d[:, :k]
    else:
        index.prepare()
        _, d = index.query(y, k=k)
    e = -(d.astype(np.float64) ** 2) / (2.0 * h * h)
    mx = e.max(axis=1)
    out = np.log(np.exp(e - mx[:, None]).sum(axis=1)) + mx
    return (out, d.min(axis=1).astype(np.float64)) if return_min_dist else out


def _choose_method(method: str, m: int, n: int) -> str:
    if method not in ("auto", "exact", "approx"):
        from cscli.core.errors import UsageError

        raise UsageError(f"unknown method {method!r}; choose auto, exact or approx")
    if method == "auto":
        return "exact" if m * n <= EXACT_PAIR_LIMIT or n <= 4 * DEFAULT_GRAPH_NEIGHBORS else "approx"
    return method


def entropy(x: np.ndarray, h: float = DEFAULT_BANDWIDTH, method: str = "exact", **ann) -> float:
    """Information entropy H(X) in nats (QUESTS ``entropy``); nan for an empty set."""
    n = len(x)
    if n == 0:
        return float("nan")
    method = _choose_method(method, n, n)
    if method == "exact":
        logp = log_kernel_sum(x, x, h)
    else:
        logp = approx_log_kernel_sum(x, x, h, self_query=True, **ann)
    return float(math.log(n) - logp.mean())


def delta_entropy(
    y: np.ndarray, x: np.ndarray, h: float = DEFAULT_BANDWIDTH, method: str = "exact", **ann
) -> np.ndarray:
    """δH(y_i|X) = -log Σ_j K(y_i, x_j) for every row of y (QUESTS ``delta_entropy``), nats.

    +inf for every y when X is empty.
    """
    method = _choose_method(method, len(y), len(x))
    if method == "exact":
        return -log_kernel_sum(y, x, h)
    return -approx_log_kernel_sum(y, x, h, **ann)


def frame_means(values: np.ndarray, frame_of_row: np.ndarray, n_frames: int) -> np.ndarray:
    """Mean of per-environment values over each frame's environments."""
    counts = np.bincount(frame_of_row, minlength=n_frames)
    sums = np.bincount(frame_of_row, weights=values, minlength=n_frames)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts


# ----------------------------------------------------------------------------- selection


@dataclass
class SelectionStep:
    index: int  # candidate frame index
    delta_entropy: float  # frame δH (nats) against the reference at the time it was chosen
    n_envs: int
    entropy_after: float  # H(train ∪ selected so far), nats


@dataclass
class SelectionResult:
    steps: list[SelectionStep]
    entropy_before: float  # H(train), nan when train is empty
    entropy_after: float
    n_train_envs: int
    n_candidate_envs: int
    initial_delta_entropy: np.ndarray  # per candidate frame, against train only
    stop_reason: str
    method: str
    duplicates_skipped: int = 0

    @property
    def indices(self) -> list[int]:
        return [s.index for s in self.steps]


def select(
    candidates_x: np.ndarray,
    candidates_frame: np.ndarray,
    n_frames: int,
    train_x: np.ndarray | None = None,
    n: int | None = None,
    strategy: str = "greedy",
    min_dh: float | None = None,
    h: float = DEFAULT_BANDWIDTH,
    method: str = "auto",
    progress=None,
    **ann,
) -> SelectionResult:
    """Choose candidate frames that add the most information entropy to a training set.

    ``candidates_x``/``candidates_frame``: descriptors of the candidate environments and the frame
    (0..n_frames-1) of each; ``train_x``: descriptors of the existing training set (may be empty).

    * ``strategy="rank"``: δH of every frame against the training set once; the top ``n``.
    * ``strategy="greedy"``: take the frame with the largest δH, add its environments to the
      reference, update every remaining frame's δH, repeat. A frame whose every environment is
      already in the reference (an exact duplicate) is never taken. With an empty training set
      the first frame is the one with the largest entropy of its own environments.

    Selection stops after ``n`` frames, when no candidate is left, or when the best δH falls below
    ``min_dh``. The entropy of the training set plus the selection is tracked exactly along the
    way (incremental kernel sums), which gives dH/dN.
    """
    from cscli.core.errors import UsageError

    if strategy not in ("greedy", "rank"):
        raise UsageError(f"unknown strategy {strategy!r}; choose greedy or rank")
    cx = np.ascontiguousarray(candidates_x, dtype=np.float32)
    cf = np.asarray(candidates_frame, dtype=np.int64)
    tx = np.zeros((0, cx.shape[1]), np.float32) if train_x is None else np.ascontiguousarray(train_x, dtype=np.float32)
    n = n_frames if n is None else min(n, n_frames)
    min_dh = -np.inf if min_dh is None else float(min_dh)
    counts = np.bincount(cf, minlength=n_frames)
    starts = np.concatenate([[0], np.cumsum(counts)])
    if not np.all(np.diff(cf) >= 0):
        raise ValueError("candidate environments must be grouped by frame, in frame order")

    # log kernel sums of candidates against the training set, and of the training set itself
    used = _choose_method(method, len(cx), len(tx))
    if used == "exact":
        cand_L, cand_dmin = log_kernel_sum(cx, tx, h, return_min_dist=True)
    else:
        cand_L, cand_dmin = approx_log_kernel_sum(cx, tx, h, return_min_dist=True, **ann)
    initial = frame_means(-cand_L, cf, n_frames)

    ref_blocks = [tx]
    if len(tx):
        train_method = _choose_method(method, len(tx), len(tx))
        ref_logp = (
            log_kernel_sum(tx, tx, h)
            if train_method == "exact"
            else approx_log_kernel_sum(tx, tx, h, self_query=True, **ann)
        )
        h_before = float(math.log(len(tx)) - ref_logp.mean())
    else:
        ref_logp = np.zeros(0)
        h_before = float("nan")

    available = counts > 0
    steps: list[SelectionStep] = []
    duplicates = 0
    stop = "n reached"

    if strategy == "rank":
        order = np.argsort(-initial, kind="stable")
        chosen = [int(i) for i in order if available[i] and initial[i] >= min_dh][:n]
        if len(chosen) < n:
            stop = "min_dh" if any(available[i] and initial[i] < min_dh for i in order) else "candidates exhausted"
        for i in chosen:
            y = cx[starts[i] : starts[i + 1]]
            ref_logp = _add_to_reference(ref_blocks, ref_logp, y, h)
            steps.append(SelectionStep(i, float(initial[i]), len(y), _entropy_from_logp(ref_logp)))
            if progress:
                progress(1)
    else:
        own_h = None
        while len(steps) < n:
            dh = frame_means(-cand_L, cf, n_frames)
            frame_dmax = np.full(n_frames, np.inf)
            nz = counts > 0
            frame_dmax[nz] = np.maximum.reduceat(cand_dmin, starts[:-1][nz])
            is_dup = frame_dmax <= DUPLICATE_DISTANCE
            duplicates = int(np.sum(available & is_dup))
            ok = available & ~is_dup
            if not ok.any():
                stop = "candidates exhausted"
                break
            if not np.all(np.isfinite(dh[ok])):  # empty reference: nothing to compare against
                if own_h is None:
                    own_h = np.array(
                        [entropy(cx[starts[i] : starts[i + 1]], h) if counts[i] else -np.inf for i in range(n_frames)]
                    )
                best = int(np.argmax(np.where(ok, own_h, -np.inf)))
                best_dh = float("inf")
            else:
                score = np.where(ok, dh, -np.inf)
                best = int(np.argmax(score))
                best_dh = float(score[best])
                if best_dh < min_dh:
                    stop = "min_dh"
                    break
            y = cx[starts[best] : starts[best + 1]]
            # update candidates (all rows; chosen/unavailable ones are masked out above)
            add_L, add_d = log_kernel_sum(cx, y, h, return_min_dist=True)
            cand_L = np.logaddexp(cand_L, add_L)
            cand_dmin = np.minimum(cand_dmin, add_d)
            ref_logp = _add_to_reference(ref_blocks, ref_logp, y, h)
            available[best] = False
            steps.append(SelectionStep(best, best_dh, len(y), _entropy_from_logp(ref_logp)))
            if progress:
                progress(1)
        if len(steps) == n:
            stop = "n reached"

    h_after = _entropy_from_logp(ref_logp) if len(ref_logp) else float("nan")
    return SelectionResult(
        steps=steps,
        entropy_before=h_before,
        entropy_after=h_after,
        n_train_envs=len(tx),
        n_candidate_envs=len(cx),
        initial_delta_entropy=initial,
        stop_reason=stop,
        method=used,
        duplicates_skipped=duplicates,
    )


def _entropy_from_logp(logp: np.ndarray) -> float:
    return float(math.log(len(logp)) - logp.mean()) if len(logp) else float("nan")


def _add_to_reference(ref_blocks: list[np.ndarray], ref_logp: np.ndarray, y: np.ndarray, h: float) -> np.ndarray:
    """Add environments y to the reference; return the updated log kernel sums of all reference rows."""
    old = np.concatenate(ref_blocks) if len(ref_blocks) > 1 else ref_blocks[0]
    if len(ref_blocks) > 1:
        ref_blocks[:] = [old]
    old_logp = np.logaddexp(ref_logp, log_kernel_sum(old, y, h)) if len(old) else ref_logp
    new_logp = np.logaddexp(log_kernel_sum(y, old, h), log_kernel_sum(y, y, h))
    ref_blocks.append(y)
    return np.concatenate([old_logp, new_logp])


def selection_report(result: SelectionResult, ids: Sequence[str], settings: dict) -> dict:
    """JSON-ready report: H before/after and dH/dN along the selection."""
    rows = []
    prev = result.entropy_before
    for k, s in enumerate(result.steps, 1):
        dhdn = s.entropy_after - prev if math.isfinite(prev) else None
        rows.append(
            {
                "step": k,
                "id": ids[s.index],
                "delta_entropy": _num(s.delta_entropy),
                "n_atoms": s.n_envs,
                "entropy": _num(s.entropy_after),
                "dH_dN": _num(dhdn),
                "log10_dH_dN": _num(math.log10(dhdn)) if dhdn is not None and dhdn > 0 else None,
            }
        )
        prev = s.entropy_after
    return {
        "definition": {
            "H": "-(1/N) sum_i log[(1/N) sum_j exp(-|x_i-x_j|^2/2h^2)] over environments (nats)",
            "delta_entropy": "mean over the frame's environments y of -log sum_j exp(-|y-x_j|^2/2h^2), "
            "x_j = training set + frames selected before it (nats)",
            "dH_dN": "H after this frame minus H before it (nats per frame)",
        },
        **settings,
        "method": result.method,
        "n_candidates": int(len(result.initial_delta_entropy)),
        "n_candidate_envs": int(result.n_candidate_envs),
        "n_train_envs": int(result.n_train_envs),
        "n_selected": len(result.steps),
        "stop_reason": result.stop_reason,
        "duplicates_left": int(result.duplicates_skipped),
        "entropy_before": _num(result.entropy_before),
        "entropy_after": _num(result.entropy_after),
        "steps": rows,
    }


def _num(v):
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def plot_report(report: dict, path: str) -> None:
    """log10(dH/dN) and H along the selection (cf. the upper panel of the seed paper's Fig. 3a)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = report["steps"]
    k = [r["step"] for r in steps]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(5, 5.5), sharex=True)
    pts = [(r["step"], r["log10_dH_dN"]) for r in steps if r["log10_dH_dN"] is not None]
    if pts:
        ax1.plot(*zip(*pts), "o-", ms=3)
    ax1.set_ylabel(r"$\log_{10}(\mathrm{d}H/\mathrm{d}N)$ (nats/frame)")
    ax1.set_title(f"entropy-select ({report.get('strategy', '')}, h={report.get('bandwidth')})")
    ent = [(r["step"], r["entropy"]) for r in steps if r["entropy"] is not None]
    if ent:
        ax2.plot(*zip(*ent), "s-", ms=3, color="C1")
    if report.get("entropy_before") is not None:
        ax2.axhline(report["entropy_before"], ls="--", color="gray", lw=1, label="training set")
        ax2.legend()
    ax2.set_xlabel("frames selected N")
    ax2.set_ylabel("H (nats)")
    if k:
        ax2.set_xlim(0.5, max(k) + 0.5)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def entropy_select(
    frames: Sequence[Atoms],
    train: Sequence[Atoms] = (),
    n: int | None = None,
    strategy: str = "greedy",
    min_dh: float | None = None,
    h: float = DEFAULT_BANDWIDTH,
    k: int = DEFAULT_K,
    cutoff: float = DEFAULT_CUTOFF,
    method: str = "auto",
    ann_neighbors: int = DEFAULT_ANN_NEIGHBORS,
    seed: int | None = 0,
) -> tuple[list[Atoms], dict]:
    """Descriptors + :func:`select` on frames: the selected frames (copies, in selection order, with
    ``info['delta_entropy']`` and ``info['entropy_select_step']``) and the JSON report. Progress
    bars on stderr unless the command runs with ``-q``."""
    from cscli.core.errors import DataError
    from cscli.core.stream import progress

    if not frames:
        raise DataError("no candidate frames")
    cx, cf = descriptors(list(progress(frames, "descriptors")), k=k, cutoff=cutoff)
    tx, _ = descriptors(list(train), k=k, cutoff=cutoff)
    bar = progress(desc="selecting", total=n or len(frames))
    ann = {"seed": seed, "n_neighbors": ann_neighbors}
    try:
        result = select(
            cx,
            cf,
            len(frames),
            tx,
            n=n,
            strategy=strategy,
            min_dh=min_dh,
            h=h,
            method=method,
            progress=bar.update,
            **ann,
        )
    finally:
        bar.close()
    ids = [str(a.info.get("id", i)) for i, a in enumerate(frames)]
    settings = {
        "strategy": strategy,
        "bandwidth": h,
        "k": k,
        "cutoff": cutoff,
        "n_requested": n,
        "ann_neighbors": ann_neighbors,
        "seed": seed,
        "min_dh": min_dh,
        "n_train_frames": len(train),
    }
    report = selection_report(result, ids, settings)
    selected = []
    for step, s in enumerate(result.steps, 1):
        atoms = frames[s.index].copy()
        atoms.info["delta_entropy"] = float(s.delta_entropy)
        atoms.info["entropy_select_step"] = step
        selected.append(atoms)
    return selected, report
