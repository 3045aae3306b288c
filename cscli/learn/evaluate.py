"""Errors of a force field against labelled frames: energy per atom, forces, stress.

Pure functions, streaming: :func:`evaluate_model` walks the frames once, predicts each with an
ASE calculator and folds the errors into running sums, so a 100k-frame file costs memory only for
the optional parity sample. Finetuning uses it for learning curves::

    from cscli.learn.evaluate import evaluate_model
    report = evaluate_model(calc, frames)          # frames: any iterable of labelled Atoms
    report["overall"]["forces"]["rmse"]            # eV/Å

Definitions (every quantity: ``n`` values, ``rmse`` = sqrt(mean(e²)), ``mae`` = mean|e|,
``mean_error`` = mean(e) (bias, prediction minus label), ``std_error`` = sqrt(rmse² - mean_error²),
i.e. the RMSE after removing a constant offset, which is what compares across DFT codes whose
absolute energies differ):

* ``energy_per_atom`` (eV/atom): e = E_pred/N - E_label/N, one value per frame.
* ``forces`` (eV/Å): e = F_pred - F_label, one value per Cartesian component (3N per frame), as in
  the NequIP/MACE literature. ``forces_norm`` (eV/Å): |F_pred - F_label| per atom, also reported.
* ``stress`` (GPa): e = σ_pred - σ_label per Voigt component (6 per frame), ASE sign convention;
  labels in ``info['stress']`` are eV/Å³ and are converted with ``ase.units.GPa``.

Labels are ``info['energy']``, ``arrays['forces']``, ``info['stress']``; a frame lacking a label
contributes nothing to that quantity and is counted in ``skipped``. Groups: ``overall`` and
``per_composition`` (keyed by pymatgen reduced formula).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms

QUANTITIES = ("energy_per_atom", "forces", "forces_norm", "stress")
UNITS = {"energy_per_atom": "eV/atom", "forces": "eV/Å", "forces_norm": "eV/Å", "stress": "GPa"}
DEFAULT_PARITY_SAMPLE = 50_000  # force components kept for the parity plot


# ----------------------------------------------------------------------------- metrics


def error_metrics(pred, ref) -> dict:
    """RMSE, MAE, bias and offset-free RMSE of ``pred - ref`` (any shapes, flattened)."""
    e = np.asarray(pred, dtype=float).ravel() - np.asarray(ref, dtype=float).ravel()
    acc = _Acc()
    acc.add(e)
    return acc.result()


@dataclass
class _Acc:
    """Running sums of errors: count, Σe, Σ|e|, Σe², max|e|."""

    n: int = 0
    s1: float = 0.0
    sa: float = 0.0
    s2: float = 0.0
    mx: float = 0.0

    def add(self, e: np.ndarray) -> None:
        e = np.asarray(e, dtype=float).ravel()
        if e.size == 0:
            return
        self.n += e.size
        self.s1 += float(e.sum())
        self.sa += float(np.abs(e).sum())
        self.s2 += float(np.dot(e, e))
        self.mx = max(self.mx, float(np.abs(e).max()))

    def result(self) -> dict:
        if self.n == 0:
            return {"n": 0, "rmse": None, "mae": None, "mean_error": None, "std_error": None, "max_abs_error": None}
        mean = self.s1 / self.n
        rmse = math.sqrt(self.s2 / self.n)
        return {
            "n": self.n,
            "rmse": rmse,
            "mae": self.sa / self.n,
            "mean_error": mean,
            "std_error": math.sqrt(max(self.s2 / self.n - mean * mean, 0.0)),
            "max_abs_error": self.mx,
        }


@dataclass
class _Group:
    frames: int = 0
    acc: dict = field(default_factory=lambda: {q: _Acc() for q in QUANTITIES})

    def result(self) -> dict:
        out = {"frames": self.frames}
        for q in QUANTITIES:
            out[q] = {"unit": UNITS[q], **self.acc[q].result()}
        return out


# ----------------------------------------------------------------------------- predictions


def labels(atoms: Atoms) -> dict:
    """The labels a frame carries: energy (eV), forces (N,3 eV/Å), stress (6, eV/Å³); absent keys omitted."""
    out = {}
    e = atoms.info.get("energy")
    if e is not None and np.isfinite(float(e)):
        out["energy"] = float(e)
    f = atoms.arrays.get("forces")
    if f is not None and np.all(np.isfinite(f)):
        out["forces"] = np.asarray(f, dtype=float).reshape(len(atoms), 3)
    s = atoms.info.get("stress")
    if s is not None:
        s = np.asarray(s, dtype=float)
        if s.shape == (3, 3):
            from ase.stress import full_3x3_to_voigt_6_stress

            s = full_3x3_to_voigt_6_stress(s)
        if s.shape == (6,) and np.all(np.isfinite(s)):
            out["stress"] = s
    return out


def predict(calc, atoms: Atoms, properties: Iterable[str] = ("energy", "forces", "stress")) -> dict:
    """Predictions of an ASE calculator on a bare copy of ``atoms`` (labels never leak in).

    Stress is Voigt-6 eV/Å³; a calculator that cannot give stress omits it.
    """
    from ase import Atoms
    from ase.calculators.calculator import PropertyNotImplementedError

    bare = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    bare.calc = calc
    out = {}
    props = set(properties)
    if "energy" in props:
        out["energy"] = float(bare.get_potential_energy())
    if "forces" in props:
        out["forces"] = np.array(bare.get_forces(), dtype=float)
    if "stress" in props and bare.pbc.all():
        try:
            out["stress"] = np.array(bare.get_stress(voigt=True), dtype=float)
        except (PropertyNotImplementedError, NotImplementedError):
            pass
    return out


def composition_key(atoms: Atoms) -> str:
    """Reduced formula (pymatgen reduced composition, electronegativity order, no polyanion
    brackets): Li3PS4 for Li12P4S16, Li27P12S44 for the NequIP LiPS cell."""
    from pymatgen.core import Composition
    from pymatgen.util.string import formula_double_format

    reduced = Composition(atoms.get_chemical_formula()).reduced_composition
    return "".join(f"{el.symbol}{formula_double_format(n)}" for el, n in sorted(reduced.items(), key=lambda x: x[0].X))


# ----------------------------------------------------------------------------- evaluation


def evaluate_model(
    calc,
    frames: Iterable[Atoms],
    per_composition: bool = True,
    parity: bool = False,
    parity_sample: int = DEFAULT_PARITY_SAMPLE,
    progress=None,
    seed: int = 0,
) -> dict:
    """Errors of ``calc`` against the labels of ``frames`` (streamed once).

    Returns ``{"overall": {...}, "per_composition": {formula: {...}}, "frames_read", "frames_evaluated",
    "skipped": {"no_labels", "energy", "forces", "stress"}, "failed": [...], "units"}``; each group has
    ``frames`` and per quantity ``n, rmse, mae, mean_error, std_error, max_abs_error``.
    With ``parity=True`` it also holds ``"parity"``: label/prediction pairs (all energies and
    stresses, a uniform sample of at most ``parity_sample`` force components) for plotting.
    """
    from ase.units import GPa

    overall = _Group()
    groups: dict[str, _Group] = {}
    skipped = {"no_labels": 0, "energy": 0, "forces": 0, "stress": 0}
    failed: list[dict] = []
    read = evaluated = 0
    rng = np.random.default_rng(seed)
    par = {"energy_per_atom": ([], [], []), "stress": ([], []), "forces": (np.zeros(0), np.zeros(0), np.zeros(0))}
    force_seen = 0

    for atoms in frames:
        read += 1
        lab = labels(atoms)
        for key in ("energy", "forces", "stress"):
            if key not in lab:
                skipped[key] += 1
        if not lab:
            skipped["no_labels"] += 1
            if progress:
                progress(1)
            continue
        try:
            pred = predict(calc, atoms, properties=lab.keys())
        except Exception as exc:  # one bad frame must not end a long evaluation
            failed.append({"id": str(atoms.info.get("id", read - 1)), "error": f"{type(exc).__name__}: {exc}"[:200]})
            if progress:
                progress(1)
            continue
        if "stress" in lab and "stress" not in pred:
            skipped["stress"] += 1
        evaluated += 1
        n = len(atoms)
        key = composition_key(atoms) if per_composition else None
        targets = [overall] + ([groups.setdefault(key, _Group())] if key else [])
        errs = {}
        if "energy" in lab:
            errs["energy_per_atom"] = np.array([(pred["energy"] - lab["energy"]) / n])
        if "forces" in lab:
            df = pred["forces"] - lab["forces"]
            errs["forces"] = df
            errs["forces_norm"] = np.linalg.norm(df, axis=1)
        if "stress" in lab and "stress" in pred:
            errs["stress"] = (pred["stress"] - lab["stress"]) / GPa
        for g in targets:
            g.frames += 1
            for q, e in errs.items():
                g.acc[q].add(e)
        if parity:
            if "energy" in lab:
                par["energy_per_atom"][0].append(lab["energy"] / n)
                par["energy_per_atom"][1].append(pred["energy"] / n)
                par["energy_per_atom"][2].append(key or "")
            if "stress" in errs:
                par["stress"][0].extend((lab["stress"] / GPa).tolist())
                par["stress"][1].extend((pred["stress"] / GPa).tolist())
            if "forces" in lab:
                fl, fp = lab["forces"].ravel(), pred["forces"].ravel()
                force_seen, par["forces"] = _reservoir(par["forces"], fl, fp, force_seen, parity_sample, rng)
        if progress:
            progress(1)

    report = {
        "frames_read": read,
        "frames_evaluated": evaluated,
        "skipped": skipped,
        "failed": failed,
        "units": dict(UNITS),
        "overall": overall.result(),
        "per_composition": {k: groups[k].result() for k in sorted(groups)},
    }
    if parity:
        e = par["energy_per_atom"]
        report["parity"] = {
            "energy_per_atom": {"label": e[0], "pred": e[1], "composition": e[2]},
            "forces": {
                "label": par["forces"][1].tolist(),
                "pred": par["forces"][2].tolist(),
                "sampled_from": force_seen,
            },
            "stress": {"label": par["stress"][0], "pred": par["stress"][1]},
        }
    return report


def _reservoir(kept, new_label, new_pred, seen, cap, rng):
    """Uniform sample of at most ``cap`` (label, pred) pairs from a stream (bottom-k random keys)."""
    keys, lab, pred = kept
    keys = np.concatenate([keys, rng.random(len(new_label))])
    lab = np.concatenate([lab, new_label])
    pred = np.concatenate([pred, new_pred])
    if len(keys) > cap:
        keep = np.argpartition(keys, cap - 1)[:cap]
        keys, lab, pred = keys[keep], lab[keep], pred[keep]
    return seen + len(new_label), (keys, lab, pred)


# ----------------------------------------------------------------------------- plot


def plot_parity(report: dict, path: str, title: str | None = None) -> None:
    """Parity plots (label vs prediction) of energy per atom, force components and stress."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    par = report.get("parity")
    if par is None:
        raise ValueError("report has no parity data; call evaluate_model(..., parity=True)")
    panels = [
        ("energy_per_atom", "energy (eV/atom)"),
        ("forces", "force component (eV/Å)"),
        ("stress", "stress component (GPa)"),
    ]
    panels = [(q, lab) for q, lab in panels if len(par[q]["label"])]
    if not panels:
        raise ValueError("nothing to plot: no labelled frame was evaluated")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2), squeeze=False)
    for ax, (q, label) in zip(axes[0], panels):
        x = np.asarray(par[q]["label"])
        y = np.asarray(par[q]["pred"])
        if q == "energy_per_atom":
            comps = par[q]["composition"]
            for i, c in enumerate(sorted(set(comps))):
                m = np.array([cc == c for cc in comps])
                ax.scatter(x[m], y[m], s=10, alpha=0.7, label=c or None, color=f"C{i % 10}")
            if len(set(comps)) > 1:
                ax.legend(fontsize=7, loc="upper left")
        elif len(x) > 5000:
            ax.hexbin(x, y, gridsize=80, bins="log", mincnt=1, cmap="viridis")
        else:
            ax.scatter(x, y, s=4, alpha=0.5)
        lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
        pad = 0.03 * (hi - lo or 1.0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=0.8)
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(lo - pad, hi + pad)
        m = report["overall"][q]
        unit = UNITS[q]
        text = f"RMSE {m['rmse']:.3g}, MAE {m['mae']:.3g} {unit}"
        if q == "energy_per_atom":
            text += f"\nbias {m['mean_error']:+.3g}, offset-free RMSE {m['std_error']:.3g}"
        ax.set_title(text, fontsize=9)
        ax.set_xlabel(f"label {label}")
        ax.set_ylabel(f"predicted {label}")
        ax.set_aspect("equal", adjustable="box")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def summary_lines(report: dict) -> list[str]:
    """Short human-readable table (stderr)."""
    rows = [("overall", report["overall"])] + list(report["per_composition"].items())
    lines = [f"{'group':<14}{'frames':>7}  {'E RMSE/MAE meV/at':>19}  {'F RMSE/MAE eV/Å':>17}  {'S RMSE/MAE GPa':>16}"]

    def pair(m, scale=1.0):
        return "-" if m["rmse"] is None else f"{m['rmse'] * scale:.3g}/{m['mae'] * scale:.3g}"

    for name, g in rows:
        lines.append(
            f"{name:<14}{g['frames']:>7}  {pair(g['energy_per_atom'], 1000):>19}  {pair(g['forces']):>17}  "
            f"{pair(g['stress']):>16}"
        )
    return lines
