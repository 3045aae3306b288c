"""The ``motifs`` backend: crystals seeded with rigid anion units (PS4^3-, S^2-, or units from a
``cscli motifs`` catalogue) and the counter-cation, placed on symmetric sites."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import product
from typing import TYPE_CHECKING

from cscli.core.errors import DataError, UsageError
from cscli.explore.generate.common import OfflineSettings, _pyxtal_call, _tol_matrix, distance_violations
from cscli.explore.generate.spacegroups import _group, choose_spacegroup, general_multiplicity

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    from ase import Atoms

PS4_BOND = 2.05  # Å, P-S in ortho-thiophosphate PS4^3- (2.03-2.07 Å in gamma/beta-Li3PS4)


@dataclass(frozen=True)
class RigidUnit:
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


def builtin_motifs() -> dict[str, RigidUnit]:
    """PS4^3- (regular tetrahedron, P-S 2.05 Å) and the lone sulfide anion S^2-."""
    d = PS4_BOND / math.sqrt(3.0)
    ps4 = RigidUnit(
        "PS4", ("P", "S", "S", "S", "S"), ((0.0, 0.0, 0.0), (d, d, d), (d, -d, -d), (-d, d, -d), (-d, -d, d)), -3
    )
    s = RigidUnit("S", ("S",), ((0.0, 0.0, 0.0),), -2)
    return {"PS4": ps4, "S": s}


def motif_from_atoms(atoms: Atoms, name: str | None = None, charge: int | None = None) -> RigidUnit:
    """A catalogue frame (one isolated unit; info ``motif_name``/``name`` and ``charge``) → RigidUnit.

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
    return RigidUnit(str(name), tuple(atoms.get_chemical_symbols()), tuple(map(tuple, np.round(pos, 6))), int(charge))


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


def load_motifs(path: str | None, names: Sequence[str] | None = None) -> list[RigidUnit]:
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
                m = motif_from_atoms(
                    Atoms(ex["symbols"], positions=np.asarray(ex["positions"], float)),
                    name=rec.get("formula") or rec["name"],
                    charge=int(rec["charge"]),
                )
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


def _cation(elements: Sequence[str], motifs: Sequence[RigidUnit]) -> str:
    from pymatgen.core import Element

    in_units = {s for m in motifs for s in m.symbols}
    left = [e for e in elements if e not in in_units]
    cations = [e for e in left if any(s > 0 for s in Element(e).common_oxidation_states)]
    if len(cations) != 1:
        raise UsageError(
            f"motif backend needs exactly one counter-cation in {'-'.join(elements)} outside the units "
            f"({', '.join(m.name for m in motifs)}); found {cations or 'none'}"
        )
    return cations[0]


def motif_compositions(
    elements: Sequence[str], motifs: Sequence[RigidUnit], max_atoms: int
) -> list[tuple[dict[str, int], int, str]]:
    """Charge-balanced unit combinations: ([unit name → count], cation count, cation), at least one
    polyatomic unit, at most two lone (single-atom) anions per polyatomic unit (Li7PS6 = PS4 + 2 S),
    gcd of all counts 1, at most ``max_atoms`` atoms per formula unit."""
    from pymatgen.core import Element

    for m in motifs:
        if not set(m.symbols) <= set(elements):
            raise UsageError(
                f"motif {m.name} ({''.join(m.symbols)}) is not in the chemical system {'-'.join(elements)}"
            )
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
        raise UsageError(
            f"no charge-balanced combination of {', '.join(m.name for m in motifs)} and {cation} "
            f"fits in {max_atoms} atoms; raise --max-atoms"
        )
    return out


_PLACEHOLDERS = ("He", "Ne", "Ar", "Kr", "Xe", "Rn")


def motif_structure(
    settings: OfflineSettings,
    rng: np.random.Generator,
    motifs: Sequence[RigidUnit],
    compositions: list[tuple[dict[str, int], int, str]],
) -> Atoms:
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

        def fits(z, sg, units=units, poly=poly, ncat=ncat):
            mult = general_multiplicity(sg)
            # polyatomic units sit on general positions (any orientation keeps the symmetry)
            if any((units[n] * z) % mult or (units[n] * z) // mult > 2 for n in poly):
                return False
            singles = [units[n] * z for n in units if n not in poly] + [ncat * z]
            return bool(_group(sg).check_compatible([units[n] * z for n in poly] + singles)[0])

        chosen = choose_spacegroup(rng, settings.spacegroups, settings.max_atoms // atoms_per_fu, fits)
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
        volume = (
            scale * sum(settings.volumes[s] * c * z for n, c in units.items() for s in by_name[n].symbols)
            + scale * settings.volumes[cation] * ncat * z
        )
        crystal = pyxtal()
        try:
            with _pyxtal_call():
                lattice = Lattice(g.lattice_type, volume, random_state=rng)
                crystal.from_random(
                    3, g, species, num, lattice=lattice, tm=tm, sites=sites, random_state=rng, max_count=2
                )
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
            bad = distance_violations(
                atoms,
                settings.bounds,
                group=np.asarray(group),
                group_bound=settings.anion_distance,
                unwrapped=np.asarray(frac) @ cell,
            )
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
