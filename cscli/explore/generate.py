"""Offline candidate generators: random symmetric crystals (AIRSS-style) and motif-seeded crystals.

Both backends draw, for frame ``k``, everything from ``numpy.random.default_rng([seed, k])``, so a
frame is reproducible on its own: the same seed gives the same frames, a resumed run regenerates
only the missing ids, and ``--shard i/n`` splits the work without changing any frame.

``random``
    A composition is drawn from those enumerated in the chemical system (reduced formulas with at
    most ``max_atoms`` atoms per cell, all elements present unless ``allow_subsystems``; with
    ``charge_balance`` only those balanced with one common oxidation state per element and the
    most electronegative element negative), then a formula-unit count ``Z`` and a space group
    compatible with it (pyxtal's Wyckoff-position compatibility check), a cell volume from
    per-element volumes (see :func:`element_volumes`) times a random factor, and pyxtal places
    the atoms with minimum pair distances ``distance_factor * (r_cov,i + r_cov,j)`` (Cordero
    covalent radii from ASE). Every frame is checked against those bounds after generation.

``motifs``
    Rigid anion units (a built-in PS4 tetrahedron and the lone S2- anion, or units read from a
    motif catalogue) and the counter-cation (Li) in charge-balanced ratios. pyxtal places the
    unit centres on general Wyckoff positions and the cations/lone anions anywhere; each unit is
    then given a random orientation and copied by the space-group operations, so the crystal keeps
    the space group. Frames are accepted only when all pairs respect the covalent bounds and atoms
    of different anion units are at least ``anion_distance`` apart (no accidental S-S bonds).
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import product
from typing import TYPE_CHECKING

from cscli.core.errors import DataError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    from ase import Atoms

BACKENDS = ("random", "motifs", "mattergen")
DEFAULT_MAX_ATOMS = 24
DEFAULT_DISTANCE_FACTOR = 0.75
DEFAULT_ANION_DISTANCE = 3.0  # Å between atoms of different anion units (S...S in thiophosphates ~3.3-4)
DEFAULT_VOLUME_FACTOR = (1.0, 1.25)
PS4_BOND = 2.05  # Å, P-S in ortho-thiophosphate PS4^3- (2.03-2.07 Å in gamma/beta-Li3PS4)


# ----------------------------------------------------------------------------- chemical systems


def parse_chemical_system(text: str) -> list[str]:
    """``"Li-P-S"`` → ``["Li", "P", "S"]`` (order kept, duplicates and unknown symbols refused)."""
    from ase.data import atomic_numbers

    parts = [p.strip() for p in str(text).replace(",", "-").split("-") if p.strip()]
    if not parts:
        raise UsageError(f"chemical system {text!r} names no elements; write it like Li-P-S")
    for p in parts:
        if p not in atomic_numbers or p == "X":
            raise UsageError(f"chemical system {text!r}: {p!r} is not an element symbol")
    if len(set(parts)) != len(parts):
        raise UsageError(f"chemical system {text!r} repeats an element")
    return parts


def chemical_system_key(elements: Iterable[str]) -> str:
    """Canonical ``A-B-C`` key (alphabetical, as MatterGen and pymatgen write chemical systems)."""
    return "-".join(sorted(set(elements)))


def in_chemical_system(atoms: Atoms, elements: Iterable[str]) -> bool:
    """True when every element of ``atoms`` belongs to the chemical system (subsystems included)."""
    return set(atoms.get_chemical_symbols()) <= set(elements)


# ----------------------------------------------------------------------------- distances and volumes


def distance_bounds(elements: Sequence[str], factor: float = DEFAULT_DISTANCE_FACTOR) -> dict[tuple[str, str], float]:
    """Minimum distance of each element pair: ``factor * (r_cov,i + r_cov,j)`` (Cordero radii, ASE)."""
    from ase.data import atomic_numbers, covalent_radii

    out = {}
    for a in elements:
        for b in elements:
            out[(a, b)] = factor * float(covalent_radii[atomic_numbers[a]] + covalent_radii[atomic_numbers[b]])
    return out


def distance_violations(atoms: Atoms, bounds: dict[tuple[str, str], float], group=None, group_bound: float = 0.0,
                        unwrapped=None):
    """Pairs closer than their bound: list of (i, j, d, bound). ``group`` (per-atom labels, -1 = none)
    raises the bound to ``group_bound`` between atoms of different groups (anion units). With the
    units' ``unwrapped`` Cartesian positions, a unit's periodic image counts as a different unit."""
    import numpy as np
    from ase.neighborlist import neighbor_list

    cutoff = max(max(bounds.values()), group_bound) + 0.01
    i, j, d, D = neighbor_list("ijdD", atoms, cutoff)
    symbols = atoms.get_chemical_symbols()
    bad = []
    for a, b, dist, vec in zip(i, j, d, D):
        if a > b:
            continue
        bound = bounds[(symbols[a], symbols[b])]
        if group is not None and group[a] >= 0 and group[b] >= 0:
            same_unit = group[a] == group[b] and a != b
            if same_unit and unwrapped is not None:
                same_unit = np.allclose(vec, unwrapped[b] - unwrapped[a], atol=1e-4)
            if not same_unit:
                bound = max(bound, group_bound)
        if dist < bound - 1e-6:
            bad.append((int(a), int(b), float(dist), float(bound)))
    return bad


def element_volumes(elements: Sequence[str], references: Sequence[Atoms] | None = None) -> dict[str, float]:
    """Per-element volume (Å³/atom) for the cell-volume estimate ``V = sum_i n_i v_i``.

    With reference phases of the system (the shipped Li-P-S phases, or your own), ``v_i`` is a
    non-negative least-squares fit of their volumes, so ionic compression (small Li+ in sulfides) is
    in the estimate; each ``v_i`` is floored at the covalent-sphere volume ``4/3 pi r_cov^3``.
    Without references, the elemental molar volume (pymatgen) is used.
    """
    import numpy as np
    from ase.data import atomic_numbers, covalent_radii
    from pymatgen.core import Element

    floor = {e: 4.0 / 3.0 * math.pi * float(covalent_radii[atomic_numbers[e]]) ** 3 for e in elements}
    molar = {}
    for e in elements:
        mv = Element(e).molar_volume
        molar[e] = float(mv) * 1e24 / 6.02214076e23 if mv else floor[e] * 2.0
    refs = [a for a in (references or []) if set(a.get_chemical_symbols()) <= set(elements) and a.pbc.all()]
    if len(refs) >= len(elements):
        from scipy.optimize import nnls

        A = np.array([[a.get_chemical_symbols().count(e) for e in elements] for a in refs], dtype=float)
        b = np.array([abs(a.get_volume()) for a in refs])
        # weight each phase by 1/N so large cells do not dominate
        w = 1.0 / A.sum(axis=1)
        coef, _ = nnls(A * w[:, None], b * w)
        present = A.sum(axis=0) > 0
        return {e: float(max(c, floor[e])) if present[k] else molar[e] for k, (e, c) in enumerate(zip(elements, coef))}
    return molar


def default_references(elements: Sequence[str]) -> list[Atoms]:
    """The shipped reference phases when the system is one cscli ships (Li-P-S), else []."""
    from cscli.core.datafiles import reference_phases_path
    from cscli.core.frames import read_frames

    try:
        path = reference_phases_path("-".join(elements))
    except UsageError:
        return []
    return read_frames(str(path))


# ----------------------------------------------------------------------------- compositions


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


def enumerate_compositions(elements: Sequence[str], max_atoms: int, charge_balance: bool = False,
                           allow_subsystems: bool = False) -> list[dict[str, int]]:
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
        raise UsageError(f"no composition of {'-'.join(elements)} with at most {max_atoms} atoms"
                         + (" is charge balanced" if charge_balance else ""))
    return out


def formula(counts: dict[str, int]) -> str:
    return "".join(f"{e}{n if n != 1 else ''}" for e, n in counts.items() if n)


# ----------------------------------------------------------------------------- space groups


@lru_cache(maxsize=None)
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
    "1": 1, "-1": 2, "2": 2, "m": 2, "2/m": 4, "222": 4, "mm2": 4, "mmm": 8, "4": 4, "-4": 4, "4/m": 8,
    "422": 8, "4mm": 8, "-42m": 8, "4/mmm": 16, "3": 3, "-3": 6, "32": 6, "3m": 6, "-3m": 12, "6": 6,
    "-6": 6, "6/m": 12, "622": 12, "6mm": 12, "-62m": 12, "6/mmm": 24, "23": 12, "m-3": 24, "432": 24,
    "-43m": 24, "m-3m": 48,
}
_CENTRING = {"P": 1, "A": 2, "B": 2, "C": 2, "I": 2, "F": 4, "R": 3}  # R in the hexagonal setting


@lru_cache(maxsize=None)
def general_multiplicity(number: int) -> int:
    """Multiplicity of the general Wyckoff position (conventional cell): point-group order times the
    lattice-centring factor. Cheap: avoids building pyxtal's full Wyckoff tables for all 230 groups."""
    from pyxtal.symmetry import Group

    g = Group(number, quick=True)
    return _POINT_GROUP_ORDER[g.point_group] * _CENTRING[g.symbol[0]]


@contextlib.contextmanager
def _quiet_stdout():
    """pyxtal prints progress to stdout, which carries cscli's frames: send it elsewhere."""
    import warnings

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield buf


def _tol_matrix(bounds: dict[tuple[str, str], float], extra: Iterable[tuple[str, str, float]] = ()):
    from pyxtal.tolerance import Tol_matrix

    tuples = [(a, b, d) for (a, b), d in bounds.items() if a <= b]
    return Tol_matrix(*tuples, *extra, prototype="atomic")


# ----------------------------------------------------------------------------- settings


@dataclass
class OfflineSettings:
    elements: list[str]
    max_atoms: int = DEFAULT_MAX_ATOMS
    charge_balance: bool = False
    allow_subsystems: bool = False
    distance_factor: float = DEFAULT_DISTANCE_FACTOR
    volume_factor: tuple[float, float] = DEFAULT_VOLUME_FACTOR
    spacegroups: list[int] = field(default_factory=lambda: list(range(2, 231)))
    volumes: dict[str, float] | None = None  # per-element Å³; None: element_volumes(elements, refs)
    references: list | None = None
    anion_distance: float = DEFAULT_ANION_DISTANCE
    motifs: list | None = None  # list[Motif]; None: built-in PS4 + lone S
    max_tries: int = 60

    def __post_init__(self):
        if self.max_atoms < 1:
            raise UsageError("--max-atoms must be at least 1")
        if not 0.3 <= self.distance_factor <= 1.5:
            raise UsageError("--distance-factor must lie in 0.3..1.5 (fraction of the covalent-radius sum)")
        lo, hi = self.volume_factor
        if not 0.3 <= lo <= hi <= 5:
            raise UsageError("--volume-factor must be lo,hi with 0.3 <= lo <= hi <= 5")
        if self.volumes is None:
            refs = self.references if self.references is not None else default_references(self.elements)
            self.volumes = element_volumes(self.elements, refs)
        self.bounds = distance_bounds(self.elements, self.distance_factor)


# ----------------------------------------------------------------------------- random backend


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
        zmax = settings.max_atoms // sum(unit)
        zs = list(range(1, zmax + 1))
        rng.shuffle(zs)
        chosen = None
        for z in zs:
            num = [n * z for n in unit]
            groups = list(settings.spacegroups)
            rng.shuffle(groups)
            for sg in groups:
                if _group(sg).check_compatible(num)[0]:
                    chosen = (z, num, sg)
                    break
            if chosen:
                break
        if chosen is None:
            last = f"no space group fits {formula(comp)} with at most {settings.max_atoms} atoms"
            continue
        z, num, sg = chosen
        scale = float(rng.uniform(*settings.volume_factor)) * (1.1 ** (attempt // 10))
        volume = scale * sum(settings.volumes[e] * n for e, n in zip(species, num))
        crystal = pyxtal()
        try:
            with _quiet_stdout():
                lattice = Lattice(_group(sg).lattice_type, volume, random_state=rng)
                crystal.from_random(3, _group(sg), species, num, lattice=lattice, tm=tm, random_state=rng, max_count=2)
        except Exception as exc:  # pyxtal raises RuntimeError/VolumeError/CompatibilityError
            last = f"pyxtal: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
            continue
        if not crystal.valid:
            last = "pyxtal returned an invalid crystal"
            continue
        with _quiet_stdout():
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


# ----------------------------------------------------------------------------- motifs


@dataclass(frozen=True)
class Motif:
    """A rigid anion unit: symbols, Cartesian positions (Å) about its centre, formal charge."""

    name: str
    symbols: tuple[str, ...]
    positions: tuple[tuple[float, float, float], ...]
    charge: int

    @property
    def radius(self) -> float:
        import numpy as np

        p = np.asarray(self.positions)
        return float(np.linalg.norm(p, axis=1).max()) if len(p) else 0.0

    @property
    def natoms(self) -> int:
        return len(self.symbols)


def builtin_motifs() -> dict[str, Motif]:
    """PS4^3- (regular tetrahedron, P-S 2.05 Å) and the lone sulfide anion S^2-."""
    d = PS4_BOND / math.sqrt(3.0)
    ps4 = Motif("PS4", ("P", "S", "S", "S", "S"),
                ((0.0, 0.0, 0.0), (d, d, d), (d, -d, -d), (-d, d, -d), (-d, -d, d)), -3)
    s = Motif("S", ("S",), ((0.0, 0.0, 0.0),), -2)
    return {"PS4": ps4, "S": s}


def motif_from_atoms(atoms: Atoms, name: str | None = None, charge: int | None = None) -> Motif:
    """A catalogue frame (one isolated unit; info ``motif_name``/``name`` and ``charge``) → Motif.

    A periodic frame is unwrapped around its first atom (minimum image) before centring.
    """
    import numpy as np

    name = name or atoms.info.get("motif_name") or atoms.info.get("name")
    if not name:
        raise DataError("motif catalogue frame lacks info 'motif_name'")
    if charge is None:
        charge = atoms.info.get("charge", atoms.info.get("motif_charge"))
    if charge is None:
        raise DataError(f"motif {name}: catalogue frame lacks info 'charge' (formal charge, e.g. -3 for PS4)")
    pos = atoms.positions.copy()
    if atoms.pbc.any():
        from ase.geometry import find_mic

        vec, _ = find_mic(pos - pos[0], atoms.cell, atoms.pbc)
        pos = pos[0] + vec
    pos -= pos.mean(axis=0)
    return Motif(str(name), tuple(atoms.get_chemical_symbols()), tuple(map(tuple, np.round(pos, 6))), int(charge))


def _catalogue_records(path: str) -> list[dict] | None:
    """Records of a ``cscli motifs --catalogue`` JSON-lines file, or None when it is not one."""
    import json

    with open(path, encoding="utf-8") as fh:
        first = next((line for line in fh if line.strip()), "")
    try:
        rec = json.loads(first)
    except json.JSONDecodeError:
        return None
    if not isinstance(rec, dict) or "hash" not in rec or "example" not in rec:
        return None
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def load_motifs(path: str | None, names: Sequence[str] | None = None) -> list[Motif]:
    """Motifs by name (or formula) from the built-ins and a catalogue: a ``cscli motifs --catalogue``
    JSON-lines file (finite units with a charge and an ``example``), or frames of isolated units
    (extxyz/JSON lines with info ``motif_name`` and ``charge``, as ``cscli motifs --export-dir`` writes)."""
    from pathlib import Path

    available = dict(builtin_motifs())
    if path:
        if not Path(path).is_file():
            raise DataError(f"{path}: no such motif catalogue")
        records = _catalogue_records(path) if path.endswith((".jsonl", ".json", ".ndjson")) else None
        if records is not None:
            import numpy as np
            from ase import Atoms

            for rec in records:
                ex = rec.get("example") or {}
                if rec.get("dimensionality") != 0 or rec.get("charge") is None or not ex.get("symbols"):
                    continue  # polymers and units without a formal charge cannot be placed as rigid ions
                m = motif_from_atoms(Atoms(ex["symbols"], positions=np.asarray(ex["positions"], float)),
                                     name=rec.get("formula") or rec["name"], charge=int(rec["charge"]))
                available.setdefault(rec["name"], m)
                available[m.name] = m
        else:
            from cscli.core.frames import iter_frames

            for atoms in iter_frames(path):
                m = motif_from_atoms(atoms)
                available[m.name] = m
                available.setdefault(m.name.split("^")[0].split(" ")[0], m)  # "P2S7^4-" also as "P2S7"
    if not names:
        names = ["PS4", "S"]
    out = []
    for n in names:
        if n not in available:
            raise UsageError(f"unknown motif {n!r}; available: {', '.join(sorted(available))}")
        out.append(available[n])
    return out


def _cation(elements: Sequence[str], motifs: Sequence[Motif]) -> str:
    from pymatgen.core import Element

    in_units = {s for m in motifs for s in m.symbols}
    left = [e for e in elements if e not in in_units]
    cations = [e for e in left if any(s > 0 for s in Element(e).common_oxidation_states)]
    if len(cations) != 1:
        raise UsageError(f"motif backend needs exactly one counter-cation in {'-'.join(elements)} outside the units "
                         f"({', '.join(m.name for m in motifs)}); found {cations or 'none'}")
    return cations[0]


def motif_compositions(elements: Sequence[str], motifs: Sequence[Motif], max_atoms: int) -> list[tuple[dict[str, int], int, str]]:
    """Charge-balanced unit combinations: ([unit name → count], cation count, cation), at least one
    polyatomic unit, at most two lone (single-atom) anions per polyatomic unit (Li7PS6 = PS4 + 2 S),
    gcd of all counts 1, at most ``max_atoms`` atoms per formula unit."""
    from pymatgen.core import Element

    for m in motifs:
        if not set(m.symbols) <= set(elements):
            raise UsageError(f"motif {m.name} ({''.join(m.symbols)}) is not in the chemical system {'-'.join(elements)}")
        if m.charge >= 0:
            raise UsageError(f"motif {m.name} has charge {m.charge}; only anion units (negative charge) are placed")
    cation = _cation(elements, motifs)
    q = max(s for s in Element(cation).common_oxidation_states if s > 0)
    out = []
    ranges = [range(0, max_atoms // m.natoms + 1) for m in motifs]
    for counts in product(*ranges):
        npoly = sum(c for c, m in zip(counts, motifs) if m.natoms > 1)
        if npoly == 0 or sum(counts) - npoly > 2 * npoly:  # at least one unit; at most 2 lone anions per unit
            continue
        charge = -sum(c * m.charge for c, m in zip(counts, motifs))
        if charge % q:
            continue
        ncat = charge // q
        natoms = ncat + sum(c * m.natoms for c, m in zip(counts, motifs))
        if natoms > max_atoms or math.gcd(ncat, *counts) != 1:
            continue
        out.append(({m.name: c for c, m in zip(counts, motifs) if c}, ncat, cation))
    if not out:
        raise UsageError(f"no charge-balanced combination of {', '.join(m.name for m in motifs)} and {cation} "
                         f"fits in {max_atoms} atoms; raise --max-atoms")
    return out


_PLACEHOLDERS = ("He", "Ne", "Ar", "Kr", "Xe", "Rn")


def motif_structure(settings: OfflineSettings, rng: np.random.Generator, motifs: Sequence[Motif],
                    compositions: list[tuple[dict[str, int], int, str]]) -> Atoms:
    """One motif-seeded symmetric crystal, or DataError after max_tries."""
    import numpy as np
    from ase import Atoms
    from pyxtal import pyxtal
    from pyxtal.lattice import Lattice
    from scipy.spatial.transform import Rotation

    by_name = {m.name: m for m in motifs}
    last = "no attempt"
    for attempt in range(settings.max_tries):
        units, ncat, cation = compositions[int(rng.integers(len(compositions)))]
        poly = [n for n in units if by_name[n].natoms > 1]
        atoms_per_fu = ncat + sum(c * by_name[n].natoms for n, c in units.items())
        zs = list(range(1, settings.max_atoms // atoms_per_fu + 1))
        rng.shuffle(zs)
        chosen = None
        for z in zs:
            groups = list(settings.spacegroups)
            rng.shuffle(groups)
            for sg in groups:
                mult = general_multiplicity(sg)
                # polyatomic units sit on general positions (any orientation keeps the symmetry)
                if any((units[n] * z) % mult or (units[n] * z) // mult > 2 for n in poly):
                    continue
                g = _group(sg)
                singles = [units[n] * z for n in units if n not in poly] + [ncat * z]
                if not g.check_compatible([units[n] * z for n in poly] + singles)[0]:
                    continue
                chosen = (z, sg)
                break
            if chosen:
                break
        if chosen is None:
            last = "no space group puts the units on general positions"
            continue
        z, sg = chosen
        g = _group(sg)
        general = g[0].get_label()
        # skeleton: unit centres as placeholder elements, lone anions and cations as themselves
        species, num, sites, extra = [], [], [], []
        holder = {}
        for k, n in enumerate(poly):
            holder[n] = _PLACEHOLDERS[k]
            species.append(holder[n])
            num.append(units[n] * z)
            sites.append([general] * (units[n] * z // len(g[0])))
        for n in units:
            if n not in poly:
                species.append(by_name[n].symbols[0])
                num.append(units[n] * z)
                sites.append(None)
        species.append(cation)
        num.append(ncat * z)
        sites.append(None)
        if len(set(species)) != len(species):
            last = "a lone anion repeats the cation"
            continue
        for a in poly:
            ra = by_name[a].radius
            for b in poly:
                extra.append((holder[a], holder[b], ra + by_name[b].radius + 1.0))
            for s in species:
                if s not in holder.values():
                    extra.append((holder[a], s, ra + (0.8 if s == cation else settings.anion_distance - 0.5)))
        skeleton_bounds = dict(settings.bounds)
        tm = _tol_matrix(skeleton_bounds, extra)
        scale = float(rng.uniform(*settings.volume_factor)) * (1.1 ** (attempt // 10))
        volume = scale * sum(settings.volumes[s] * c * z for n, c in units.items() for s in by_name[n].symbols) \
            + scale * settings.volumes[cation] * ncat * z
        crystal = pyxtal()
        try:
            with _quiet_stdout():
                lattice = Lattice(g.lattice_type, volume, random_state=rng)
                crystal.from_random(3, g, species, num, lattice=lattice, tm=tm, sites=sites, random_state=rng, max_count=2)
        except Exception as exc:
            last = f"pyxtal: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
            continue
        if not crystal.valid:
            last = "pyxtal returned an invalid skeleton"
            continue
        cell = np.array(crystal.lattice.matrix)
        inv = np.linalg.inv(cell)
        fixed_syms, fixed_frac = [], []
        centres = []
        for site in crystal.atom_sites:
            orbit = [op.operate(site.position) for op in site.wp.ops]
            if site.specie in holder.values():
                name = next(n for n, h in holder.items() if h == site.specie)
                centres.append((by_name[name], site.position, site.wp.ops))
            else:
                fixed_syms += [site.specie] * len(orbit)
                fixed_frac += orbit
        # orient the units: random rotation per independent unit, copied by the site's operations
        for _ in range(30):
            # lone anions count as one-atom units (kept anion_distance from other anions); cations -1
            syms, frac = list(fixed_syms), list(fixed_frac)
            group = [-1 if s == cation else k for k, s in enumerate(fixed_syms)]
            unit_id = len(fixed_syms)
            for motif, centre, ops in centres:
                rot = Rotation.random(random_state=rng).as_matrix()
                local = np.asarray(motif.positions) @ rot.T @ inv + centre
                for op in ops:
                    syms += list(motif.symbols)
                    frac += [op.operate(p) for p in local]
                    group += [unit_id] * motif.natoms
                    unit_id += 1
            atoms = Atoms(syms, scaled_positions=np.mod(np.asarray(frac), 1.0), cell=cell, pbc=True)
            bad = distance_violations(atoms, settings.bounds, group=np.asarray(group), group_bound=settings.anion_distance,
                                      unwrapped=np.asarray(frac) @ cell)
            if not bad:
                order = np.argsort([settings.elements.index(s) for s in atoms.get_chemical_symbols()], kind="stable")
                atoms = atoms[order]
                atoms.info["spacegroup_target"] = int(sg)
                atoms.info["formula_units"] = int(z)
                atoms.info["seed_motifs"] = ";".join(f"{n}:{c * z}" for n, c in units.items())
                atoms.info["generate_attempts"] = attempt + 1
                return atoms
            last = f"oriented units: {bad[0][2]:.2f} Å below bound {bad[0][3]:.2f} Å"
    raise DataError(f"motif-seeded structure not generated in {settings.max_tries} tries ({last})")


# ----------------------------------------------------------------------------- driver


def offline_id(backend: str, iteration: int, k: int) -> str:
    prefix = {"random": "rnd", "motifs": "mtf"}[backend]
    return f"{prefix}-it{iteration}-{k}"


def generate_offline(backend: str, settings: OfflineSettings, num: int, seed: int, iteration: int = 0,
                     skip=lambda fid: False, on_error=None) -> Iterator[Atoms]:
    """Yield ``num`` frames (ids ``rnd-it<iteration>-<k>`` / ``mtf-...``), skipping ids ``skip(id)`` is
    true for; frame ``k`` depends only on (seed, k) and the settings. A frame that cannot be made
    within ``settings.max_tries`` raises DataError, or is passed to ``on_error(id, exc)`` and left out."""
    import numpy as np

    if backend == "random":
        comps = enumerate_compositions(settings.elements, settings.max_atoms, settings.charge_balance,
                                       settings.allow_subsystems)
        make = lambda rng: random_structure(settings, rng, comps)  # noqa: E731
    elif backend == "motifs":
        motifs = settings.motifs or load_motifs(None)
        comps = motif_compositions(settings.elements, motifs, settings.max_atoms)
        make = lambda rng: motif_structure(settings, rng, motifs, comps)  # noqa: E731
    else:
        raise UsageError(f"unknown offline backend {backend!r}")
    for k in range(num):
        fid = offline_id(backend, iteration, k)
        if skip(fid):
            continue
        rng = np.random.default_rng([int(seed), k])
        try:
            atoms = make(rng)
        except DataError as exc:
            if on_error is None:
                raise
            on_error(fid, exc)
            continue
        atoms.info["id"] = fid
        atoms.info["generator"] = backend
        atoms.info["iteration"] = int(iteration)
        atoms.info["generate_seed"] = int(seed)
        atoms.info["chemical_system"] = chemical_system_key(settings.elements)
        atoms.info["source"] = f"cscli generate --backend {backend}"
        yield atoms
