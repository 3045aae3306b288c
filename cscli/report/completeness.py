"""Completeness of the exploration loop, iteration by iteration (``cscli report``).

Layout read: one folder per iteration (``iter_000/``, ``iter_001/``, … as ``scripts/loop.sh`` writes
them), in the order given. Every file is optional; a missing one leaves its figures ``null``.

==================  ===========================================================================
file                what it holds (the loop step that writes it)
==================  ===========================================================================
generated.extxyz    candidates of this iteration (``generate --iteration k``: info['iteration'])
relaxed.extxyz      candidates relaxed with this iteration's force field (``relax``)
relax_failed.extxyz candidates whose relaxation failed (``relax --failed``)
refs.extxyz         hull/novelty references: reference phases + all earlier iterations' relaxed
                    candidates, re-evaluated with this iteration's force field (one energy scale)
hull.extxyz         relaxed candidates with info['e_hull'] against refs.extxyz (``hull``)
sun.extxyz          the same, flagged is_stable/is_unique/is_novel/is_sun (``sun-filter``)
selected.extxyz     frames picked for DFT by E_hull bins (``dft-select``)
perturbed.extxyz    their perturbed copies (``perturb``)
labelled.extxyz     selected + perturbed frames with DFT (or stand-in) labels (``label``)
train.extxyz        labelled frames chosen for fine-tuning (``entropy-select``)
motifs.jsonl        the motif catalogue after this iteration (cumulative; ``motifs --catalogue``)
finetune/           this iteration's fine-tune (model.pth, summary.json)
eval_before.json    this iteration's force field on labelled.extxyz (``evaluate``)
eval_after.json     the fine-tuned model on labelled.extxyz (``evaluate``)
hull_dft.extxyz     labelled frames, e_hull against DFT-labelled references (reference phases
                    labelled with the same settings + earlier iterations' labelled frames)
hull_ff.extxyz      the force field's e_hull of the same frames (by id); default: selected.extxyz,
                    i.e. the pre-screen's own E_hull of the frames it sent to DFT
==================  ===========================================================================

Figures per iteration (and cumulative over the iterations given):

* ``generated``, ``relaxed``, ``failed``: frame counts of the files above.
* ``stable``, ``unique``, ``novel``, ``sun`` (counts of the flags in sun.extxyz) and ``ratios``:
  each count over the frames in sun.extxyz (the candidates assessed).
* ``e_hull``: quantiles of e_hull in hull.extxyz (eV/atom), fractions below 0 and below 0.1.
* ``dft_frames``: labelled frames whose label_method starts with ``dft-``; ``labelled_frames`` all.
* ``entropy``: QUESTS information entropy H (nats) of the local environments
  (:mod:`cscli.learn.entropy`, the functions ``entropy-select`` uses: descriptor k = 32, cutoff
  5 Å, bandwidth h = 0.015) of the relaxed candidates (``H_generated``), of this iteration's
  labelled frames (``H_dft``) and of all labelled frames up to it (``H_dft_cumulative``);
  ``dH_dN`` = (H_dft_cumulative − previous) / (DFT frames added), nats per frame.
* ``delta_entropy``: δH(y | X) = −log Σ_j K(y, x_j) of every environment y of this iteration's
  relaxed candidates against the environments X of all earlier iterations' relaxed candidates
  (``generated``) and the same for labelled frames (``dft``): mean, median, and ``overlap`` = the
  fraction of environments with δH below the threshold (default 0 nats: the earlier data hold at
  least one kernel's worth of weight at y).
* ``motifs``: ``new`` = catalogue records whose first_iteration is this iteration, ``total`` =
  records in this iteration's catalogue (references' motifs included), ``found`` = records first
  seen in any iteration so far.
* ``errors``: energy-per-atom (eV/atom) and force (eV/Å) RMSE of the force field on this
  iteration's new labels, ``before`` (eval_before.json) and ``after`` (eval_after.json) the fine-tune.
* ``e_hull_dft_vs_ff``: for frames in both hull_dft and hull_ff (by id): RMSE and MAE of
  E_hull(FF) − E_hull(DFT), and the pre-screen's classification of "stable" (E_hull < threshold,
  default 0.1 eV/atom, the loop's pre-screen bound) with Matbench Discovery's definitions:
  precision = TP/(TP+FP) (GNoME's hit rate), recall = TP/(TP+FN), F1 = 2PR/(P+R), prevalence =
  (TP+FN)/n, discovery acceleration factor DAF = precision / prevalence.
* ``converged`` (last iteration): dH/dN below ``max_dh_dn`` (default 1e-3 nats/frame, the paper's
  "sufficient for pre-screening"), no new motif, and the force RMSE before fine-tuning on the new
  labels below ``force_rmse_target`` (0.1 eV/Å) and the energy RMSE below ``energy_rmse_target``
  (0.02 eV/atom). Each criterion is reported; a missing figure counts as not met.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cscli.core.errors import DataError
from cscli.core.log import get_logger

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms

log = get_logger(__name__)

FILES = {
    "generated": "generated.extxyz",
    "relaxed": "relaxed.extxyz",
    "relax_failed": "relax_failed.extxyz",
    "refs": "refs.extxyz",
    "hull": "hull.extxyz",
    "sun": "sun.extxyz",
    "selected": "selected.extxyz",
    "perturbed": "perturbed.extxyz",
    "labelled": "labelled.extxyz",
    "train": "train.extxyz",
    "catalogue": "motifs.jsonl",
    "finetune": "finetune",
    "eval_before": "eval_before.json",
    "eval_after": "eval_after.json",
    "hull_dft": "hull_dft.extxyz",
    "hull_ff": "hull_ff.extxyz",
}


@dataclass
class Settings:
    stable_threshold: float = 0.1  # eV/atom: "stable" for the pre-screen's precision/recall
    dh_threshold: float = 0.0  # nats: δH below this = environment already covered
    max_dh_dn: float = 1e-3  # nats per DFT frame
    force_rmse_target: float = 0.1  # eV/Å
    energy_rmse_target: float = 0.02  # eV/atom
    bandwidth: float = 0.015
    entropy: bool = True
    tsne: bool = True
    seed: int = 0


# ----------------------------------------------------------------------------- reading


def _frames(path: Path) -> list[Atoms] | None:
    from cscli.core.frames import read_frames

    if not path.is_file():
        return None
    if path.stat().st_size == 0:
        return []
    return read_frames(str(path))


def _json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise DataError(f"{path}: not JSON") from None


def _catalogue(path: Path) -> list[dict] | None:
    from cscli.screen.motifs import Catalogue

    if not path.is_file():
        return None
    return list(Catalogue.load(path).records.values())


def iteration_number(folder: Path, frames: Sequence[Atoms] | None, index: int) -> int:
    """info['iteration'] of the candidates (most common), else the digits of the folder name, else
    the position in the list."""
    if frames:
        from collections import Counter

        values = [a.info.get("iteration") for a in frames if a.info.get("iteration") is not None]
        if values:
            return int(Counter(int(v) for v in values).most_common(1)[0][0])
    m = re.search(r"(\d+)$", folder.name)
    return int(m.group(1)) if m else index


@dataclass
class IterationData:
    folder: Path
    iteration: int
    generated: list | None
    relaxed: list | None
    relax_failed: list | None
    hull: list | None
    sun: list | None
    selected: list | None
    labelled: list | None
    catalogue: list[dict] | None
    eval_before: dict | None
    eval_after: dict | None
    hull_dft: list | None
    hull_ff: list | None


def load_iteration(folder: str | Path, index: int = 0) -> IterationData:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder (cscli report reads iteration folders, e.g. iter_000/)")
    f = {k: folder / v for k, v in FILES.items()}
    generated = _frames(f["generated"])
    relaxed = _frames(f["relaxed"])
    data = IterationData(
        folder=folder,
        iteration=iteration_number(folder, generated or relaxed, index),
        generated=generated,
        relaxed=relaxed,
        relax_failed=_frames(f["relax_failed"]),
        hull=_frames(f["hull"]),
        sun=_frames(f["sun"]),
        selected=_frames(f["selected"]),
        labelled=_frames(f["labelled"]),
        catalogue=_catalogue(f["catalogue"]),
        eval_before=_json(f["eval_before"]),
        eval_after=_json(f["eval_after"]),
        hull_dft=_frames(f["hull_dft"]),
        hull_ff=_frames(f["hull_ff"]) if f["hull_ff"].is_file() else _frames(f["selected"]),
    )
    if all(getattr(data, k) is None for k in ("generated", "relaxed", "hull", "sun", "labelled", "catalogue")):
        raise DataError(
            f"{folder}: none of {', '.join(FILES[k] for k in ('generated', 'relaxed', 'sun', 'labelled'))}"
            " is there; is this an iteration folder of scripts/loop.sh?"
        )
    return data


# ----------------------------------------------------------------------------- figures


def _count(frames) -> int | None:
    return None if frames is None else len(frames)


def sun_counts(frames: Sequence[Atoms] | None) -> dict:
    """Counts of the S, U, N and S.U.N. flags and each over the frames assessed."""
    if frames is None:
        return {
            "assessed": None,
            "stable": None,
            "unique": None,
            "novel": None,
            "sun": None,
            "ratios": {k: None for k in ("stable", "unique", "novel", "sun")},
        }
    n = len(frames)
    out = {"assessed": n}
    for key in ("stable", "unique", "novel", "sun"):
        out[key] = sum(bool(a.info.get(f"is_{key}", False)) for a in frames)
    out["ratios"] = {k: (out[k] / n if n else None) for k in ("stable", "unique", "novel", "sun")}
    return out


def e_hull_values(frames: Sequence[Atoms] | None) -> list[float]:
    if not frames:
        return []
    vals = []
    for a in frames:
        v = a.info.get("e_hull")
        if v is not None and math.isfinite(float(v)):
            vals.append(float(v))
    return vals


def e_hull_stats(values: Sequence[float]) -> dict:
    if not values:
        return {"n": 0}
    v = np.asarray(values, dtype=float)
    q = np.quantile(v, [0.0, 0.25, 0.5, 0.75, 1.0])
    return {
        "n": int(len(v)),
        "min": float(q[0]),
        "q25": float(q[1]),
        "median": float(q[2]),
        "q75": float(q[3]),
        "max": float(q[4]),
        "mean": float(v.mean()),
        "below_0": float(np.mean(v < 0)),
        "below_0.1": float(np.mean(v < 0.1)),
    }


def is_dft(atoms: Atoms) -> bool:
    return str(atoms.info.get("label_method", "")).startswith("dft-")


def classification(pred: Sequence[float], true: Sequence[float], threshold: float) -> dict:
    """Matbench Discovery's metrics of the pre-screen calling a frame stable (E_hull < threshold)
    against the reference (DFT) call, plus the E_hull RMSE/MAE (eV/atom)."""
    p = np.asarray(pred, dtype=float)
    t = np.asarray(true, dtype=float)
    n = len(p)
    if n == 0:
        return {"n": 0}
    ps, ts = p < threshold, t < threshold
    tp, fp = int(np.sum(ps & ts)), int(np.sum(ps & ~ts))
    fn, tn = int(np.sum(~ps & ts)), int(np.sum(~ps & ~ts))
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    if precision is None or recall is None:
        f1 = None
    else:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    prevalence = (tp + fn) / n
    daf = precision / prevalence if precision is not None and prevalence > 0 else None
    err = p - t
    return {
        "n": n,
        "threshold": threshold,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "prevalence": prevalence,
        "daf": daf,
        "accuracy": (tp + tn) / n,
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
    }


def e_hull_pairs(dft: Sequence[Atoms] | None, ff: Sequence[Atoms] | None) -> tuple[list[str], list[float], list[float]]:
    """(ids, E_hull FF, E_hull DFT) of the frames present in both files."""
    if not dft or not ff:
        return [], [], []
    by_id = {str(a.info.get("id")): a for a in ff}
    ids, pf, pd = [], [], []
    for a in dft:
        fid = str(a.info.get("id"))
        b = by_id.get(fid)
        if b is None or a.info.get("e_hull") is None or b.info.get("e_hull") is None:
            continue
        ids.append(fid)
        pf.append(float(b.info["e_hull"]))
        pd.append(float(a.info["e_hull"]))
    return ids, pf, pd


def _rmse(report: dict | None, quantity: str) -> float | None:
    if not report:
        return None
    try:
        return float(report["overall"][quantity]["rmse"])
    except (KeyError, TypeError, ValueError):
        return None


def errors(before: dict | None, after: dict | None) -> dict:
    return {
        "before": {
            "model": (before or {}).get("model"),
            "energy_per_atom_rmse": _rmse(before, "energy_per_atom"),
            "forces_rmse": _rmse(before, "forces"),
            "frames": (before or {}).get("frames_evaluated"),
        },
        "after": {
            "model": (after or {}).get("model"),
            "energy_per_atom_rmse": _rmse(after, "energy_per_atom"),
            "forces_rmse": _rmse(after, "forces"),
            "frames": (after or {}).get("frames_evaluated"),
        },
    }


def motif_figures(catalogue: list[dict] | None, iteration: int) -> dict:
    if catalogue is None:
        return {"new": None, "new_names": None, "total": None, "found": None}
    new = [r for r in catalogue if r.get("first_iteration") is not None and int(r["first_iteration"]) == iteration]
    found = [r for r in catalogue if r.get("first_iteration") is not None and int(r["first_iteration"]) <= iteration]
    return {"new": len(new), "new_names": sorted(r["name"] for r in new), "total": len(catalogue), "found": len(found)}


# ----------------------------------------------------------------------------- entropy


class _Envs:
    """QUESTS descriptors, computed once per frame list."""

    def __init__(self):
        self.cache: dict[int, np.ndarray] = {}

    def of(self, frames: Sequence[Atoms] | None) -> np.ndarray:
        from cscli.learn.entropy import descriptors

        if not frames:
            return np.zeros((0, 63), dtype=np.float32)
        key = id(frames)
        if key not in self.cache:
            self.cache[key] = descriptors(list(frames))[0]
        return self.cache[key]


def _entropy(x: np.ndarray, h: float) -> float | None:
    from cscli.learn.entropy import entropy

    if len(x) == 0:
        return None
    return float(entropy(x, h, method="auto"))


def _delta(y: np.ndarray, x: np.ndarray, h: float, threshold: float) -> dict:
    from cscli.learn.entropy import delta_entropy

    if len(y) == 0 or len(x) == 0:
        return {"n": int(len(y)), "mean": None, "median": None, "overlap": None}
    dh = delta_entropy(y, x, h, method="auto")
    finite = dh[np.isfinite(dh)]
    return {
        "n": int(len(y)),
        "mean": float(finite.mean()) if len(finite) else None,
        "median": float(np.median(dh)),
        "overlap": float(np.mean(dh < threshold)),
    }


# ----------------------------------------------------------------------------- the report


def build_report(folders: Sequence[str | Path], settings: Settings | None = None) -> tuple[dict, list[IterationData]]:
    """The report (JSON-ready dict) of the iteration folders, in the order given."""
    settings = settings or Settings()
    if not folders:
        raise DataError("no iteration folders given")
    data = [load_iteration(f, i) for i, f in enumerate(folders)]
    envs = _Envs()
    h = settings.bandwidth
    rows = []
    earlier_gen: list[np.ndarray] = []
    earlier_dft: list[np.ndarray] = []
    prev_h_dft = None
    prev_n_dft = 0
    all_e_hull: list[float] = []
    cum = {
        "generated": 0,
        "relaxed": 0,
        "failed": 0,
        "assessed": 0,
        "stable": 0,
        "unique": 0,
        "novel": 0,
        "sun": 0,
        "labelled_frames": 0,
        "dft_frames": 0,
    }
    pairs_all: tuple[list, list, list] = ([], [], [])
    for d in data:
        log.info("iteration %d (%s)", d.iteration, d.folder)
        sun = sun_counts(d.sun)
        labelled = d.labelled or []
        n_dft = sum(is_dft(a) for a in labelled)
        row = {
            "iteration": d.iteration,
            "folder": str(d.folder),
            "generated": _count(d.generated),
            "relaxed": _count(d.relaxed),
            "failed": _count(d.relax_failed) if d.relax_failed is not None else (0 if d.relaxed is not None else None),
            **{k: sun[k] for k in ("assessed", "stable", "unique", "novel", "sun")},
            "ratios": sun["ratios"],
            "e_hull": e_hull_stats(e_hull_values(d.hull if d.hull is not None else d.sun)),
            "selected": _count(d.selected),
            "labelled_frames": _count(d.labelled),
            "dft_frames": n_dft if d.labelled is not None else None,
            "label_methods": sorted({str(a.info.get("label_method", "none")) for a in labelled}),
            "motifs": motif_figures(d.catalogue, d.iteration),
            "errors": errors(d.eval_before, d.eval_after),
        }
        all_e_hull.extend(e_hull_values(d.hull if d.hull is not None else d.sun))
        for k in cum:
            if row.get(k) is not None:
                cum[k] += row[k]
        # hull DFT vs FF on the frames that have both
        ids, pf, pd = e_hull_pairs(d.hull_dft, d.hull_ff)
        row["e_hull_dft_vs_ff"] = classification(pf, pd, settings.stable_threshold) if ids else None
        for lst, vals in zip(pairs_all, (ids, pf, pd)):
            lst.extend(vals)
        if settings.entropy:
            xg = envs.of(d.relaxed)
            xd = envs.of(labelled)
            prev_g = np.concatenate(earlier_gen) if earlier_gen else np.zeros((0, xg.shape[1]), np.float32)
            prev_d = np.concatenate(earlier_dft) if earlier_dft else np.zeros((0, xd.shape[1]), np.float32)
            all_d = np.concatenate([prev_d, xd])
            h_dft_cum = _entropy(all_d, h)
            n_dft_cum = prev_n_dft + len(labelled)
            dh_dn = None
            if prev_h_dft is not None and h_dft_cum is not None and n_dft_cum > prev_n_dft:
                dh_dn = (h_dft_cum - prev_h_dft) / (n_dft_cum - prev_n_dft)
            row["entropy"] = {
                "H_generated": _entropy(xg, h),
                "H_dft": _entropy(xd, h),
                "H_dft_cumulative": h_dft_cum,
                "labelled_cumulative": n_dft_cum,
                "dH_dN": dh_dn,
                "environments_generated": int(len(xg)),
                "environments_dft": int(len(xd)),
            }
            row["delta_entropy"] = {
                "generated": _delta(xg, prev_g, h, settings.dh_threshold),
                "dft": _delta(xd, prev_d, h, settings.dh_threshold),
            }
            earlier_gen.append(xg)
            earlier_dft.append(xd)
            prev_h_dft, prev_n_dft = h_dft_cum, n_dft_cum
        rows.append(row)

    a = cum["assessed"]
    cumulative = {
        **cum,
        "iterations": len(rows),
        "ratios": {k: (cum[k] / a if a else None) for k in ("stable", "unique", "novel", "sun")},
        "e_hull": e_hull_stats(all_e_hull),
        "motifs": dict(rows[-1]["motifs"]) if rows else None,
        "e_hull_dft_vs_ff": classification(pairs_all[1], pairs_all[2], settings.stable_threshold)
        if pairs_all[0]
        else None,
    }
    if settings.entropy:
        xg_all = np.concatenate(earlier_gen) if earlier_gen else np.zeros((0, 63), np.float32)
        cumulative["entropy"] = {"H_generated": _entropy(xg_all, h), "H_dft": prev_h_dft}
    report = {
        "definitions": _definitions(),
        "settings": asdict(settings),
        "iterations": rows,
        "cumulative": cumulative,
        "converged": convergence(rows, settings),
    }
    return report, data


def convergence(rows: list[dict], settings: Settings) -> dict:
    """The ``converged`` flag of the last iteration and each criterion behind it."""
    if not rows:
        return {"converged": False}
    last = rows[-1]
    dh_dn = (last.get("entropy") or {}).get("dH_dN")
    new = (last.get("motifs") or {}).get("new")
    before = (last.get("errors") or {}).get("before") or {}
    f_rmse, e_rmse = before.get("forces_rmse"), before.get("energy_per_atom_rmse")
    criteria = {
        "dH_dN": {
            "value": dh_dn,
            "threshold": settings.max_dh_dn,
            "met": dh_dn is not None and dh_dn < settings.max_dh_dn,
        },
        "no_new_motifs": {"value": new, "met": new == 0},
        "force_rmse": {
            "value": f_rmse,
            "threshold": settings.force_rmse_target,
            "met": f_rmse is not None and f_rmse < settings.force_rmse_target,
        },
        "energy_rmse": {
            "value": e_rmse,
            "threshold": settings.energy_rmse_target,
            "met": e_rmse is not None and e_rmse < settings.energy_rmse_target,
        },
    }
    return {"converged": all(c["met"] for c in criteria.values()), "iteration": last["iteration"], "criteria": criteria}


def _definitions() -> dict:
    return {
        "ratios": "S, U, N, S.U.N. counts over the candidates assessed by sun-filter",
        "H": "QUESTS information entropy of local environments, nats (cscli.learn.entropy)",
        "dH_dN": "change of H of all labelled frames per labelled frame added, nats/frame",
        "delta_entropy.overlap": "fraction of this iteration's environments with dH(y|earlier) below dh_threshold",
        "e_hull_dft_vs_ff": "pre-screen (force field) vs DFT call of stable (E_hull < threshold); Matbench Discovery "
        "precision, recall, F1, DAF = precision / prevalence",
    }


# ----------------------------------------------------------------------------- summary table


def _fmt(v, spec="{:.3g}") -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "–"
        return spec.format(v)
    return str(v)


def markdown_table(report: dict) -> str:
    """One row per iteration (plus the cumulative row): the summary a person reads first."""
    head = [
        "iter",
        "generated",
        "relaxed",
        "failed",
        "S",
        "U",
        "N",
        "S.U.N.",
        "S.U.N. %",
        "E_hull median",
        "DFT frames",
        "H gen",
        "H DFT cum",
        "dH/dN",
        "overlap",
        "new motifs",
        "motifs",
        "F RMSE before",
        "F RMSE after",
        "E RMSE before",
        "E RMSE after",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in report["iterations"]:
        ent = r.get("entropy") or {}
        dh = (r.get("delta_entropy") or {}).get("generated") or {}
        err = r["errors"]
        ratio = r["ratios"]["sun"]
        cells = [
            r["iteration"],
            r["generated"],
            r["relaxed"],
            r["failed"],
            r["stable"],
            r["unique"],
            r["novel"],
            r["sun"],
            None if ratio is None else f"{100 * ratio:.0f}",
            _fmt(r["e_hull"].get("median")),
            r["dft_frames"],
            _fmt(ent.get("H_generated")),
            _fmt(ent.get("H_dft_cumulative")),
            _fmt(ent.get("dH_dN")),
            _fmt(dh.get("overlap")),
            r["motifs"]["new"],
            r["motifs"]["total"],
            _fmt(err["before"]["forces_rmse"]),
            _fmt(err["after"]["forces_rmse"]),
            _fmt(err["before"]["energy_per_atom_rmse"]),
            _fmt(err["after"]["energy_per_atom_rmse"]),
        ]
        lines.append("| " + " | ".join(_fmt(c) for c in cells) + " |")
    c = report["cumulative"]
    ratio = c["ratios"]["sun"]
    ent = c.get("entropy") or {}
    cells = [
        "all",
        c["generated"],
        c["relaxed"],
        c["failed"],
        c["stable"],
        c["unique"],
        c["novel"],
        c["sun"],
        None if ratio is None else f"{100 * ratio:.0f}",
        _fmt(c["e_hull"].get("median")),
        c["dft_frames"],
        _fmt(ent.get("H_generated")),
        _fmt(ent.get("H_dft")),
        "",
        "",
        (c.get("motifs") or {}).get("found"),
        (c.get("motifs") or {}).get("total"),
        "",
        "",
        "",
        "",
    ]
    lines.append("| " + " | ".join(_fmt(x) for x in cells) + " |")
    text = "\n".join(lines) + "\n"
    conv = report["converged"]
    crit = ", ".join(
        f"{k} {'met' if v['met'] else 'not met'} ({_fmt(v.get('value'))})" for k, v in conv.get("criteria", {}).items()
    )
    text += f"\nconverged: {'yes' if conv['converged'] else 'no'} ({crit})\n"
    hv = c.get("e_hull_dft_vs_ff")
    if hv:
        text += (
            f"\nE_hull force field vs DFT ({hv['n']} frames): RMSE {_fmt(hv['rmse'])} eV/atom; stable "
            f"(< {hv['threshold']:g}) precision {_fmt(hv['precision'])}, recall {_fmt(hv['recall'])}, "
            f"F1 {_fmt(hv['f1'])}, DAF {_fmt(hv['daf'])}\n"
        )
    return text


__all__ = [
    "FILES",
    "IterationData",
    "Settings",
    "build_report",
    "classification",
    "convergence",
    "e_hull_pairs",
    "load_iteration",
    "markdown_table",
    "motif_figures",
    "sun_counts",
]
