"""Space groups for the offline backends: parsing ``--spacegroups``, general-position
multiplicities, and the one chooser both backends draw (formula units, space group) from."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from typing import TYPE_CHECKING

from cscli.core.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np


@cache
def _group(number: int):
    from pyxtal.symmetry import Group

    return Group(number)


def parse_spacegroups(text: str | None) -> list[int]:
    """``"1-230"``, ``"2-230"``, ``"14,62,225"`` or mixes → sorted list of numbers (default 2-230:
    P1 is left out unless asked for, as in AIRSS practice, since it has no symmetry to exploit)."""
    if not text:
        return list(range(2, 231))
    out: set[int] = set()
    for part in str(text).split(","):
        part = part.strip()
        try:
            if "-" in part:
                a, b = (int(x) for x in part.split("-"))
                out.update(range(a, b + 1))
            elif part:
                out.add(int(part))
        except ValueError:
            raise UsageError(f"--spacegroups {text!r}: expected numbers and ranges like 2-230 or 14,62") from None
    if not out or min(out) < 1 or max(out) > 230:
        raise UsageError(f"--spacegroups {text!r}: space-group numbers run from 1 to 230")
    return sorted(out)


_POINT_GROUP_ORDER = {
    "1": 1,
    "-1": 2,
    "2": 2,
    "m": 2,
    "2/m": 4,
    "222": 4,
    "mm2": 4,
    "mmm": 8,
    "4": 4,
    "-4": 4,
    "4/m": 8,
    "422": 8,
    "4mm": 8,
    "-42m": 8,
    "4/mmm": 16,
    "3": 3,
    "-3": 6,
    "32": 6,
    "3m": 6,
    "-3m": 12,
    "6": 6,
    "-6": 6,
    "6/m": 12,
    "622": 12,
    "6mm": 12,
    "-62m": 12,
    "6/mmm": 24,
    "23": 12,
    "m-3": 24,
    "432": 24,
    "-43m": 24,
    "m-3m": 48,
}
_CENTRING = {"P": 1, "A": 2, "B": 2, "C": 2, "I": 2, "F": 4, "R": 3}  # R in the hexagonal setting


@cache
def general_multiplicity(number: int) -> int:
    """Multiplicity of the general Wyckoff position (conventional cell): point-group order times the
    lattice-centring factor. Cheap: avoids building pyxtal's full Wyckoff tables for all 230 groups."""
    from pyxtal.symmetry import Group

    g = Group(number, quick=True)
    return _POINT_GROUP_ORDER[g.point_group] * _CENTRING[g.symbol[0]]


def choose_spacegroup(
    rng: np.random.Generator, spacegroups: Sequence[int], zmax: int, fits: Callable[[int, int], bool]
) -> tuple[int, int] | None:
    """(formula units Z, space group) for one attempt: Z in 1..zmax and the groups in random order,
    the first pair ``fits(z, sg)`` accepts; None when none does. Both backends draw through this,
    so a seed gives the same choices whichever backend asks."""
    zs = list(range(1, zmax + 1))
    rng.shuffle(zs)
    for z in zs:
        groups = list(spacegroups)
        rng.shuffle(groups)
        for sg in groups:
            if fits(z, sg):
                return z, sg
    return None
