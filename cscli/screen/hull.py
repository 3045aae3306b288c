"""Energy above the convex hull of reference phases (pymatgen ``PhaseDiagram`` underneath).

References are frames with a total energy in ``info['energy']`` (eV): relaxed reference phases,
earlier iterations' outputs, DFT-labelled frames. All energies must come from one model or one
DFT setup: the hull is only meaningful on one consistent scale, so frames whose ``info['model']``
differs from the references' are refused unless mixing is allowed explicitly.

For a frame of composition c and total energy E (per atom e = E/N):

* ``e_hull``  = e − (hull energy per atom at c), negative when the frame lies below the hull of
  the references (a new stable phase); pymatgen ``PhaseDiagram.get_decomp_and_e_above_hull``
  with ``allow_negative=True``;
* ``e_form_per_atom`` = e − Σ x_el μ_el, formation energy against the lowest elemental references;
* ``decomposition`` = the hull phases the composition decomposes into, reduced formula →
  fraction (by atoms) — a JSON string in extxyz.

At a condition ``(T, p)`` (``cscli hull --at T,p``) every frame and reference contributes its
quasi-harmonic G(T, p) per atom instead of E (``qha_gibbs_per_atom`` on its (T, p) grid, written by
``cscli qha``; see :func:`cscli.props.qha.gibbs_at`), and the same code builds the Gibbs hull.
``hull_condition`` records which: ``E(0 K)`` or ``G(300 K, 2 GPa)``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cscli.core.errors import DataError, FrameError
from cscli.core.frames import info_number

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms


def frame_energy(atoms: Atoms, condition: tuple[float, float] | None = None) -> float:
    """Total energy of a frame (eV), or N·G(T, p) at ``condition`` = (T in K, p in GPa);
    FrameError when absent or not finite (or the condition lies outside the frame's qha grid)."""
    if condition is not None:
        from cscli.props.qha import gibbs_at

        return gibbs_at(atoms, *condition) * len(atoms)
    return info_number(atoms, "energy", "label or relax it first", error=FrameError)


def condition_text(condition: tuple[float, float] | None) -> str:
    """``hull_condition`` value: ``E(0 K)`` or ``G(T K, p GPa)``."""
    return "E(0 K)" if condition is None else f"G({condition[0]:g} K, {condition[1]:g} GPa)"


def frame_entry(atoms: Atoms, condition: tuple[float, float] | None = None):
    """pymatgen ``PDEntry`` of a frame: composition and total energy (or N·G(T, p)), named by its id."""
    from pymatgen.analysis.phase_diagram import PDEntry
    from pymatgen.core import Composition

    energy = frame_energy(atoms, condition)
    comp = Composition(atoms.get_chemical_formula(mode="hill"))
    return PDEntry(comp, energy, name=str(atoms.info.get("id", comp.reduced_formula)))


def models_of(frames: Iterable[Atoms]) -> set[str]:
    return {str(a.info["model"]) for a in frames if a.info.get("model") not in (None, "")}


@dataclass
class Hull:
    """A phase diagram of reference frames, queried frame by frame."""

    diagram: object  # pymatgen PhaseDiagram
    n_refs: int
    models: set[str]
    elements: set[str]
    condition: tuple[float, float] | None = None

    @classmethod
    def from_frames(
        cls, refs: list[Atoms], allow_mixed: bool = False, condition: tuple[float, float] | None = None
    ) -> Hull:
        from pymatgen.analysis.phase_diagram import PhaseDiagram

        if not refs:
            raise DataError("no reference frames: pass --refs FILE with energies")
        entries, missing, reasons = [], [], []
        for atoms in refs:
            try:
                entries.append(frame_entry(atoms, condition))
            except FrameError as exc:
                missing.append(str(atoms.info.get("id", "?")))
                reasons.append(str(exc))
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            if condition is None:
                raise DataError(
                    f"{len(missing)} of {len(refs)} reference frames have no energy ({shown}); "
                    "relax or label the references first (cscli relax refs.extxyz)"
                )
            raise DataError(
                f"{len(missing)} of {len(refs)} reference frames have no G at "
                f"{condition_text(condition)} ({shown}): {reasons[0].split(': ', 1)[-1]}"
            )
        elements = sorted({str(el) for e in entries for el in e.composition.elements})
        terminal = {str(e.composition.elements[0]) for e in entries if len(e.composition.elements) == 1}
        lacking = [el for el in elements if el not in terminal]
        if lacking:
            raise DataError(
                f"references lack an elemental phase of {', '.join(lacking)}: the hull of "
                f"{'-'.join(elements)} needs one reference per element"
            )
        try:
            diagram = PhaseDiagram(entries)
        except ValueError as exc:  # pragma: no cover - pymatgen's own consistency checks
            raise DataError(f"cannot build the phase diagram of the references: {exc}") from None
        models = models_of(refs)
        if len(models) > 1 and not allow_mixed:
            raise DataError(
                f"references were labelled by different models ({', '.join(sorted(models))}); "
                "energies must share one scale (pass --allow-mixed-models to go on anyway)"
            )
        return cls(diagram, len(entries), models, set(elements), condition)

    def check_model(self, atoms: Atoms, allow_mixed: bool) -> str | None:
        """Refuse (FrameError) a frame whose ``model`` differs from the references' model.

        Returns the warning text instead when ``allow_mixed``; None when nothing to say.
        """
        model = atoms.info.get("model")
        if model in (None, "") or not self.models or {str(model)} == self.models:
            return None
        text = (
            f"frame {atoms.info.get('id', '?')}: labelled by {model} but the references by "
            f"{', '.join(sorted(self.models))} (energies on different scales)"
        )
        if not allow_mixed:
            raise FrameError(text + "; pass --allow-mixed-models to go on anyway")
        return text

    def evaluate(self, atoms: Atoms) -> dict:
        """``e_hull``, ``e_form_per_atom``, ``decomposition`` and ``energy_per_atom`` of one frame."""
        fid = atoms.info.get("id", "?")
        entry = frame_entry(atoms, self.condition)
        outside = sorted({str(el) for el in entry.composition.elements} - self.elements)
        if outside:
            raise FrameError(
                f"frame {fid}: element(s) {', '.join(outside)} not in the references "
                f"({'-'.join(sorted(self.elements))})"
            )
        decomp, e_hull = self.diagram.get_decomp_and_e_above_hull(entry, allow_negative=True)
        fractions: dict[str, float] = {}
        for ref_entry, amount in decomp.items():
            formula = ref_entry.composition.reduced_formula
            fractions[formula] = fractions.get(formula, 0.0) + float(amount)
        return {
            "e_hull": float(e_hull),
            "e_form_per_atom": float(self.diagram.get_form_energy_per_atom(entry)),
            "energy_per_atom": entry.energy_per_atom,
            "decomposition": json.dumps({k: round(v, 10) for k, v in sorted(fractions.items())}),
            "hull_condition": condition_text(self.condition),
        }

    def plot(self, frames: Iterable[Atoms], path, show_unstable: float = 0.1) -> None:
        """Ternary (or binary) phase diagram PNG of the references plus ``frames`` (pymatgen's
        ``PDPlotter``): stable phases labelled, metastable ones with E_hull < ``show_unstable``
        eV/atom coloured by E_hull."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from pymatgen.analysis.phase_diagram import PDEntry, PDPlotter, PhaseDiagram

        entries = list(self.diagram.all_entries)
        names = {e.name for e in entries}
        for atoms in frames:
            try:
                entry = frame_entry(atoms, self.condition)
            except FrameError:
                continue
            if entry.name not in names:  # a reference passed as a frame too is drawn once
                entries.append(entry)
        # shorter labels: reference ids are ref-<phase>
        entries = [PDEntry(e.composition, e.energy, name=e.name.removeprefix("ref-")) for e in entries]
        diagram = PhaseDiagram(entries)
        plotter = PDPlotter(diagram, show_unstable=show_unstable, backend="matplotlib")
        ax = plotter.get_plot(label_unstable=False)
        _, _, unstable = plotter.pd_plot_data
        points = [(coords, diagram.get_e_above_hull(entry), entry.name) for entry, coords in unstable.items()]
        points = [p for p in points if p[1] is not None and p[1] < show_unstable]
        if points:
            xy = [p[0] for p in points]
            sc = ax.scatter(
                [c[0] for c in xy],
                [c[1] for c in xy],
                c=[p[1] * 1000 for p in points],
                cmap="viridis_r",
                vmin=0,
                vmax=show_unstable * 1000,
                s=60,
                marker="s",
                edgecolors="k",
                zorder=5,
            )
            for coords, _, name in points:
                ax.annotate(name, coords, xytext=(4, -10), textcoords="offset points", fontsize=8, color="0.25")
            plt.colorbar(sc, ax=ax, label="E_hull (meV/atom)", shrink=0.7)
        ax.set_title(f"{'-'.join(sorted(self.elements))} at {condition_text(self.condition)}", fontsize=14)
        fig = ax.get_figure()
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)


__all__ = [
    "Hull",
    "condition_text",
    "frame_energy",
    "frame_entry",
    "models_of",
]
