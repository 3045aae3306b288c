"""Tabulate frame info keys (the quick look a scientist wants at a frame file)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms

DEFAULT_KEYS = ("id", "formula", "natoms", "energy_per_atom", "e_hull", "relax_converged", "relax_steps", "model")


def frame_value(atoms: Atoms, key: str):
    """A key's value: info keys, plus derived columns formula, natoms, volume_per_atom, fmax."""
    import numpy as np

    if key == "formula":
        return atoms.get_chemical_formula(mode="metal", empirical=False)
    if key == "reduced_formula":
        from pymatgen.core import Composition

        return Composition(atoms.get_chemical_formula()).reduced_formula
    if key == "natoms":
        return len(atoms)
    if key == "volume_per_atom":
        return atoms.get_volume() / len(atoms) if atoms.pbc.all() else None
    if key == "fmax":
        f = atoms.arrays.get("forces")
        return float(np.sqrt((f**2).sum(axis=1).max())) if f is not None else None
    return atoms.info.get(key)


def format_value(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1e5 else f"{value:.4g}"
    return str(value)


def table_rows(frames: Iterable[Atoms], keys: list[str]) -> list[list[str]]:
    return [[format_value(frame_value(a, k)) for k in keys] for a in frames]


def render(rows: list[list[str]], keys: list[str], tsv: bool = False) -> str:
    if tsv:
        return "\n".join("\t".join(r) for r in [keys, *rows]) + "\n"
    widths = [max(len(k), *(len(r[i]) for r in rows)) if rows else len(k) for i, k in enumerate(keys)]
    lines = ["  ".join(k.ljust(w) for k, w in zip(keys, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines) + "\n"
