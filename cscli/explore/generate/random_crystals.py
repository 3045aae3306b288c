"""The ``random`` backend: random symmetric crystals of enumerated compositions (AIRSS-style)."""

from __future__ import annotations

import math
from itertools import product
from typing import TYPE_CHECKING

from cscli.core.errors import DataError, UsageError
from cscli.explore.generate.common import OfflineSettings, _pyxtal_call, _tol_matrix, distance_violations, formula
from cscli.explore.generate.spacegroups import _group, choose_spacegroup

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Sequence

    import numpy as np
    from ase import Atoms


def charge_balanced(counts: dict[str, int]) -> bool:
    """Balanced with one common oxidation state per element (pymatgen ``common_oxidation_states``),
    the most electronegative element taking a negative one (so no S2+ in Li-P-S)."""
    from pymatgen.core import Element

    els = [e for e, n in counts.items() if n > 0]
    if len(els) == 1:
        return True  # an element
    anion = max(els, key=lambda e: Element(e).X)
    options = []
    for e in els:
        states = [s for s in Element(e).common_oxidation_states if (s < 0 if e == anion else True)]
        if not states:
            return False
        options.append(states)
    return any(sum(s * counts[e] for s, e in zip(combo, els)) == 0 for combo in product(*options))


def enumerate_compositions(
    elements: Sequence[str], max_atoms: int, charge_balance: bool = False, allow_subsystems: bool = False
) -> list[dict[str, int]]:
    """Reduced compositions (gcd 1) of the system with at most ``max_atoms`` atoms per formula unit."""
    if max_atoms < len(elements) and not allow_subsystems:
        raise UsageError(f"--max-atoms {max_atoms} is smaller than the number of elements ({len(elements)})")
    lo = 0 if allow_subsystems else 1
    out = []
    for counts in product(range(lo, max_atoms + 1), repeat=len(elements)):
        total = sum(counts)
        if total == 0 or total > max_atoms:
            continue
        if math.gcd(*counts) != 1:
            continue
        comp = dict(zip(elements, counts))
        if charge_balance and not charge_balanced(comp):
            continue
        out.append({e: n for e, n in comp.items() if n > 0})
    if not out:
        raise UsageError(
            f"no composition of {'-'.join(elements)} with at most {max_atoms} atoms"
            + (" is charge balanced" if charge_balance else "")
        )
    return out


def random_structure(settings: OfflineSettings, rng: np.random.Generator, compositions: list[dict[str, int]]) -> Atoms:
    """One random symmetric crystal (pyxtal), within the distance bounds, or DataError after max_tries."""
    from pyxtal import pyxtal
    from pyxtal.lattice import Lattice

    tm = _tol_matrix(settings.bounds)
    last = "no attempt"
    for attempt in range(settings.max_tries):
        comp = compositions[int(rng.integers(len(compositions)))]
        species = list(comp)
        unit = [comp[e] for e in species]
        chosen = choose_spacegroup(
            rng,
            settings.spacegroups,
            settings.max_atoms // sum(unit),
            lambda z, sg: _group(sg).check_compatible([n * z for n in unit])[0],  # noqa: B023 (called now)
        )
        if chosen is None:
            last = f"no space group fits {formula(comp)} with at most {settings.max_atoms} atoms"
            continue
        z, sg = chosen
        num = [n * z for n in unit]
        scale = float(rng.uniform(*settings.volume_factor)) * (1.1 ** (attempt // 10))
        volume = scale * sum(settings.volumes[e] * n for e, n in zip(species, num))
        crystal = pyxtal()
        try:
            with _pyxtal_call():
                lattice = Lattice(_group(sg).lattice_type, volume, random_state=rng)
                crystal.from_random(3, _group(sg), species, num, lattice=lattice, tm=tm, random_state=rng, max_count=2)
        except Exception as exc:  # pyxtal raises RuntimeError/VolumeError/CompatibilityError
            last = f"pyxtal: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
            continue
        if not crystal.valid:
            last = "pyxtal returned an invalid crystal"
            continue
        with _pyxtal_call():
            atoms = crystal.to_ase(resort=True)
        bad = distance_violations(atoms, settings.bounds)
        if bad:
            last = f"distance {bad[0][2]:.2f} Å below bound {bad[0][3]:.2f} Å"
            continue
        atoms.info["spacegroup_target"] = int(sg)
        atoms.info["formula_units"] = int(z)
        atoms.info["generate_attempts"] = attempt + 1
        return atoms
    raise DataError(f"random structure not generated in {settings.max_tries} tries ({last})")
