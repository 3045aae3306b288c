"""Anion motifs: bond graphs of the non-cation sublattice, their units, identities and names.

A frame's *bond graph* joins every pair of non-excluded atoms (Li excluded by default) closer than
a pair cutoff; each edge remembers the periodic-image offset of its far end, so a unit that crosses
the cell boundary is one unit. Connected components are the *units*:

* a finite unit (a molecule-like anion: PS4, P2S7, S8, P4S10) has no cycle that closes through a
  lattice translation; it is identified by the networkx Weisfeiler-Lehman hash of its molecular
  graph (species on the nodes, bond type such as ``P-S`` on the edges);
* a polymeric unit (a chain, layer or framework) is connected to its own periodic images; its
  dimensionality is the rank of the lattice spanned by the translations of its cycles (the method
  of Larsen et al., PRM 3, 034003 (2019), also used by ``ase.geometry.dimensionality`` and
  pymatgen's ``get_dimensionality_larsen``). Its identity is a WL hash of the periodic quotient
  graph whose colour counts are divided by their gcd, so it does not depend on the cell (a
  supercell gives the same hash).

Formal charges follow the octet (8 - N) rule with expanded octets for CN > 4: an atom with N
valence electrons and CN bonds carries a formal charge N + CN - 8 when CN <= 4 (N >= 4), N - CN
otherwise; its oxidation state adds +1 for every bond to a more electronegative neighbour and -1
for every bond to a less electronegative one. For Li-P-S this is: S is -2 raised by one per S-S
bond; P bonded to four atoms is P(V) lowered by one per P-P bond (P(IV) in P2S6^4-); P bonded to
three atoms is P(III)-like with a lone pair (PS3^3-, the apical P of P4S3), so P4S3, P4S10, S8 and
elemental P come out neutral. The charge of a unit is the sum of its oxidation states.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cscli.core.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    import networkx as nx
    import numpy as np
    from ase import Atoms

DEFAULT_EXCLUDE: tuple[str, ...] = ("Li",)
#: Li-P-S bond cutoffs (Å), after the seed paper's analysis.
DEFAULT_CUTOFFS: dict[tuple[str, str], float] = {("P", "S"): 2.35, ("S", "S"): 2.20, ("P", "P"): 2.50}
#: other pairs: (r_cov,a + r_cov,b) × this (Cordero radii, ase.data.covalent_radii)
COVALENT_SCALE = 1.15
FINITE_WL_ITERATIONS = 6
PERIODIC_WL_ITERATIONS = 6  # in bonds; the periodic hash runs 3× as many on the subdivided graph
EXPORT_BOX = 20.0  # Å


# ----------------------------------------------------------------------------- element data


@functools.cache
def electronegativity(symbol: str) -> float:
    from pymatgen.core import Element

    x = Element(symbol).X
    return float(x) if x == x else 0.0  # pymatgen gives nan for noble gases


@functools.cache
def valence_electrons(symbol: str) -> int | None:
    """Valence electrons of a main-group element (groups 1, 2, 13-17); None otherwise."""
    from pymatgen.core import Element

    group = Element(symbol).group
    if group in (1, 2):
        return group
    if 13 <= group <= 17:
        return group - 10
    return None


@functools.cache
def cation_charge(symbol: str) -> int | None:
    """Nominal charge of an excluded cation (Li +1, Mg +2, ...), None when not unique."""
    from pymatgen.core import Element

    el = Element(symbol)
    if el.group in (1, 2) and symbol != "H":
        return el.group
    positive = [s for s in el.common_oxidation_states if s > 0]
    return positive[0] if len(positive) == 1 else None


def formal_charge(symbol: str, cn: int) -> int | None:
    """Formal charge of an atom with ``cn`` two-electron bonds (octet rule, expanded octet beyond 4)."""
    n = valence_electrons(symbol)
    if n is None:
        return None
    if n >= 4 and cn <= 4:
        return n + cn - 8
    return n - cn


def _sort_species(species: Iterable[str]) -> list[str]:
    return sorted(set(species), key=lambda s: (electronegativity(s), s))


def formula_string(counts: dict[str, int]) -> str:
    """``{'S': 4, 'P': 1}`` → ``PS4`` (least electronegative first, counts not reduced)."""
    return "".join(f"{s}{counts[s] if counts[s] != 1 else ''}" for s in _sort_species(counts))


def charge_string(charge: int | None, polymer: bool = False) -> str:
    if charge is None:
        return "^?"
    if charge == 0:
        return ""
    mag = abs(charge)
    if polymer:
        return f"^{'' if mag == 1 else mag}n{'-' if charge < 0 else '+'}"
    return f"^{'' if mag == 1 else mag}{'-' if charge < 0 else '+'}"


# ----------------------------------------------------------------------------- cutoffs


def parse_cutoffs(items: Iterable[str]) -> dict[tuple[str, str], float]:
    """``["P-S=2.4", "Si-O=2.0"]`` → ``{('P','S'): 2.4, ('O','Si'): 2.0}`` (keys sorted)."""
    from ase.data import atomic_numbers

    out: dict[tuple[str, str], float] = {}
    for item in items:
        for part in str(item).split(","):
            part = part.strip()
            if not part:
                continue
            try:
                pair, value = part.split("=")
                a, b = (s.strip() for s in pair.split("-"))
                r = float(value)
            except ValueError:
                raise UsageError(f"--cutoff {part!r}: expected A-B=distance, e.g. P-S=2.35") from None
            for s in (a, b):
                if s not in atomic_numbers:
                    raise UsageError(f"--cutoff {part!r}: unknown element {s!r}")
            if not r > 0:
                raise UsageError(f"--cutoff {part!r}: the distance must be positive")
            out[_pair(a, b)] = r
    return out


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


def pair_cutoff(
    a: str, b: str, overrides: dict[tuple[str, str], float] | None = None, covalent_scale: float = COVALENT_SCALE
) -> float:
    """Bond cutoff of a species pair: override, else the Li-P-S table, else scaled covalent radii."""
    key = _pair(a, b)
    if overrides and key in overrides:
        return overrides[key]
    table = {_pair(*k): v for k, v in DEFAULT_CUTOFFS.items()}
    if key in table:
        return table[key]
    from ase.data import atomic_numbers, covalent_radii

    return covalent_scale * float(covalent_radii[atomic_numbers[a]] + covalent_radii[atomic_numbers[b]])


@dataclass(frozen=True)
class MotifSettings:
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    cutoffs: tuple[tuple[tuple[str, str], float], ...] = ()  # overrides, as items
    covalent_scale: float = COVALENT_SCALE

    @classmethod
    def make(
        cls,
        exclude: Iterable[str] | None = None,
        cutoffs: dict | Iterable[str] | None = None,
        covalent_scale: float = COVALENT_SCALE,
    ) -> MotifSettings:
        if cutoffs is None:
            over = {}
        elif isinstance(cutoffs, dict):
            over = {_pair(*k): float(v) for k, v in cutoffs.items()}
        else:
            over = parse_cutoffs(cutoffs)
        excl = DEFAULT_EXCLUDE if exclude is None else tuple(s for s in exclude if s)
        return cls(tuple(excl), tuple(sorted(over.items())), covalent_scale)

    def cutoff(self, a: str, b: str) -> float:
        return pair_cutoff(a, b, dict(self.cutoffs), self.covalent_scale)


# ----------------------------------------------------------------------------- the bond graph


def bond_label(a: str, b: str) -> str:
    first, second = _sort_species((a, b)) if a != b else (a, b)
    return f"{first}-{second}"


def bond_graph(atoms: Atoms, settings: MotifSettings | None = None) -> nx.MultiGraph:
    """Periodic bond graph of the non-excluded atoms.

    Nodes are atom indices of ``atoms`` with attribute ``species``; each edge ``(i, j)`` has
    ``offset`` (integer image of ``j`` seen from ``i``: the bond vector is
    ``r_j + offset @ cell - r_i``), ``bond`` (``P-S``) and ``length``. Two atoms bonded through two
    different images get two edges; an atom bonded to its own image gets a self-loop.
    """
    import networkx as nx
    import numpy as np
    from ase.neighborlist import neighbor_list

    settings = settings or MotifSettings()
    symbols = atoms.get_chemical_symbols()
    keep = [i for i, s in enumerate(symbols) if s not in settings.exclude]
    graph = nx.MultiGraph()
    for i in keep:
        graph.add_node(i, species=symbols[i])
    if len(keep) == 0:
        return graph
    sub = atoms[keep]
    species = sorted(set(sub.get_chemical_symbols()))
    cut = {(a, b): settings.cutoff(a, b) for a in species for b in species}
    if len(keep) > 1 or sub.pbc.any():
        ii, jj, dd, ss = neighbor_list("ijdS", sub, cut)
    else:
        ii = jj = ss = dd = np.zeros(0)
    for i, j, d, s in zip(ii, jj, dd, ss):
        i, j = int(i), int(j)
        s = tuple(int(x) for x in s)
        # each bond appears twice (i→j, s) and (j→i, -s); keep one of them
        if i > j or (i == j and s <= tuple(-x for x in s)):
            continue
        gi, gj = keep[i], keep[j]
        graph.add_edge(gi, gj, offset=s, bond=bond_label(symbols[gi], symbols[gj]), length=float(d), _from=gi, _to=gj)
    return graph


# ----------------------------------------------------------------------------- units


@dataclass
class Unit:
    """One connected component of the bond graph."""

    nodes: list[int]  # atom indices in the frame
    images: dict[int, tuple[int, int, int]]  # unwrapping image of each atom
    dimensionality: int
    graph: nx.MultiGraph  # the component (quotient graph for polymers)
    species: dict[int, str]
    oxidation: dict[int, int | None] = field(default_factory=dict)
    formula: str = ""
    repeat: int = 1  # formula units in the component (gcd) for polymers, 1 for finite units
    charge: int | None = None  # of the formula unit
    hash: str = ""
    name: str = ""

    @property
    def finite(self) -> bool:
        return self.dimensionality == 0

    @property
    def natoms(self) -> int:
        return len(self.nodes)

    def positions(self, atoms: Atoms) -> np.ndarray:
        """Unwrapped Cartesian positions (a finite unit in one piece)."""
        import numpy as np

        cell = atoms.cell.array
        return np.array([atoms.positions[i] + np.asarray(self.images[i]) @ cell for i in self.nodes])

    def cluster(self, atoms: Atoms, box: float | None = EXPORT_BOX) -> Atoms:
        """The unit as an Atoms object: a finite unit centred in a cubic box of ``box`` Å."""
        from ase import Atoms as _Atoms

        pos = self.positions(atoms)
        symbols = [self.species[i] for i in self.nodes]
        if not self.finite:
            return _Atoms(symbols, positions=pos, cell=atoms.cell, pbc=atoms.pbc)
        pos = pos - pos.mean(axis=0)
        extent = float((pos.max(axis=0) - pos.min(axis=0)).max()) if len(pos) else 0.0
        size = max(box or 0.0, extent + 10.0)
        return _Atoms(symbols, positions=pos + size / 2, cell=[size] * 3, pbc=True)


def _lattice_rank(vectors: list[tuple[int, int, int]]) -> int:
    import numpy as np

    if not vectors:
        return 0
    return int(np.linalg.matrix_rank(np.array(sorted(set(vectors)), dtype=float)))


def find_units(atoms: Atoms, settings: MotifSettings | None = None, graph: nx.MultiGraph | None = None) -> list[Unit]:
    """Split the bond graph into units, each with its dimensionality, formula, charge, hash and name."""
    import networkx as nx

    if graph is None:
        graph = bond_graph(atoms, settings)
    units = []
    comps = sorted(nx.connected_components(graph), key=min)
    owner = {n: k for k, comp in enumerate(comps) for n in comp}
    subs = [nx.MultiGraph() for _ in comps]
    for n, data in graph.nodes(data=True):  # one pass; much faster than subgraph views
        subs[owner[n]].add_node(n, **data)
    for u, v, data in graph.edges(data=True):
        subs[owner[u]].add_edge(u, v, **data)
    for comp, sub in zip(comps, subs):
        nodes = sorted(comp)
        root = nodes[0]
        images = {root: (0, 0, 0)}
        stack = [root]
        while stack:  # unwrap: give each atom the image that puts it next to its parent
            u = stack.pop()
            for _, v, data in sub.edges(u, data=True):
                off = _directed_offset(data["offset"], u, v, data)
                if v not in images:
                    images[v] = tuple(a + b for a, b in zip(images[u], off))
                    stack.append(v)
        cycles = []
        for _u, _v, data in sub.edges(data=True):
            i, j = data["_from"], data["_to"]
            vec = tuple(images[i][k] + data["offset"][k] - images[j][k] for k in range(3))
            if any(vec):
                cycles.append(vec)
        unit = Unit(
            nodes=nodes,
            images=images,
            dimensionality=_lattice_rank(cycles),
            graph=sub,
            species={n: graph.nodes[n]["species"] for n in nodes},
        )
        _describe(unit)
        units.append(unit)
    return units


def _directed_offset(offset, u, v, data):
    """Offset of ``v`` seen from ``u`` for an edge stored as (_from → _to, offset)."""
    if data["_from"] == u and data["_to"] == v:
        return offset
    return tuple(-x for x in offset)


# ----------------------------------------------------------------------------- charge, name, hash


def oxidation_states(unit: Unit) -> dict[int, int | None]:
    g = unit.graph
    out: dict[int, int | None] = {}
    for n in unit.nodes:
        s = unit.species[n]
        fc = formal_charge(s, g.degree(n))
        if fc is None:
            out[n] = None
            continue
        x = electronegativity(s)
        ox = fc
        for _, m in g.edges(n):
            xm = electronegativity(unit.species[m])
            ox += (xm > x) - (xm < x)
        out[n] = ox
    return out


def _describe(unit: Unit) -> None:
    counts = Counter(unit.species[n] for n in unit.nodes)
    unit.oxidation = oxidation_states(unit)
    total = None if any(v is None for v in unit.oxidation.values()) else sum(unit.oxidation.values())
    if unit.finite:
        unit.repeat = 1
        unit.formula = formula_string(counts)
        unit.charge = total
        unit.hash = _finite_hash(unit.graph)
        descriptor, prefix = _descriptor(unit)
        unit.name = f"{prefix}{unit.formula}{charge_string(total)}" + (f" ({descriptor})" if descriptor else "")
    else:
        g = 0
        for c in counts.values():
            g = math.gcd(g, c)
        if total is not None:
            g = math.gcd(g, abs(total)) if total else g
        unit.repeat = g
        unit.formula = formula_string({s: c // g for s, c in counts.items()})
        unit.charge = None if total is None else total // g
        unit.hash = _periodic_hash(unit.graph, unit.dimensionality)
        unit.name = f"({unit.formula})n{charge_string(unit.charge, polymer=True)}"


def _simple_graph(multigraph) -> nx.Graph:
    import networkx as nx

    g = nx.Graph()
    for n, data in multigraph.nodes(data=True):
        g.add_node(n, species=data["species"])
    for u, v, data in multigraph.edges(data=True):
        g.add_edge(u, v, bond=data["bond"])
    return g


def _finite_hash(multigraph) -> str:
    """networkx WL hash of a molecule's graph (finite units have no multi-edges or self-loops)."""
    import networkx as nx

    return nx.weisfeiler_lehman_graph_hash(
        _simple_graph(multigraph),
        node_attr="species",
        edge_attr="bond",
        iterations=FINITE_WL_ITERATIONS,
        digest_size=16,
    )


def _periodic_hash(multigraph, dimensionality: int) -> str:
    """Cell-independent WL hash of a periodic unit's quotient graph.

    Each bond becomes two labelled bond nodes (so multi-edges and self-loops of the quotient graph
    survive in a simple graph). WL colour refinement is invariant under graph coverings, and a
    supercell's quotient graph covers the primitive one, so the colour multiset divided by its gcd
    is the same for any cell of the same crystal.
    """
    import hashlib

    import networkx as nx

    h = nx.Graph()
    for n, data in multigraph.nodes(data=True):
        h.add_node(("a", n), species=data["species"])
    for k, (u, v, data) in enumerate(multigraph.edges(data=True)):
        b0, b1 = ("b", k, 0), ("b", k, 1)
        h.add_node(b0, species="bond:" + data["bond"])
        h.add_node(b1, species="bond:" + data["bond"])
        h.add_edges_from([(("a", u), b0), (b0, b1), (b1, ("a", v))])
    labels = nx.weisfeiler_lehman_subgraph_hashes(
        h, node_attr="species", iterations=3 * PERIODIC_WL_ITERATIONS, digest_size=16, include_initial_labels=True
    )
    colours = Counter()
    for node_labels in labels.values():
        for it, lab in enumerate(node_labels):
            colours[(it, lab)] += 1
    g = 0
    for c in colours.values():
        g = math.gcd(g, c)
    payload = f"{dimensionality}D|" + "|".join(f"{it}:{lab}:{c // g}" for (it, lab), c in sorted(colours.items()))
    return hashlib.blake2b(payload.encode(), digest_size=16).hexdigest()


def _descriptor(unit: Unit) -> tuple[str, str]:
    """(suffix, prefix) telling apart isomers of two-centre units: P-P, edge-sharing, 1,k- rings."""
    import networkx as nx

    species = set(unit.species.values())
    if len(species) < 2:
        return "", ""
    centre = _sort_species(species)[0]
    centres = [n for n in unit.nodes if unit.species[n] == centre]
    if len(centres) != 2:
        return "", ""
    a, b = centres
    g = unit.graph
    if g.has_edge(a, b):
        return f"{centre}-{centre}", ""
    simple = _simple_graph(g)
    rings = nx.cycle_basis(simple)
    if len(rings) == 1 and a in rings[0] and b in rings[0]:
        ring = rings[0]
        if len(ring) == 4:
            return "edge-sharing", ""
        i, j = ring.index(a), ring.index(b)
        sep = min(abs(i - j), len(ring) - abs(i - j))
        return "", f"1,{1 + sep}-"
    return "", ""


# ----------------------------------------------------------------------------- per-frame analysis


@dataclass
class Motif:
    """All units of one identity in one frame (or, aggregated, in a run)."""

    hash: str
    name: str
    formula: str
    charge: int | None
    dimensionality: int
    natoms: int  # atoms per unit (per formula unit for polymers)
    count: int  # units (formula units for polymers)
    unit: Unit | None = None  # one example
    atoms: Atoms | None = None  # the frame of the example

    def as_info(self) -> dict:
        return {"hash": self.hash, "name": self.name, "count": self.count}


def analyze(atoms: Atoms, settings: MotifSettings | None = None) -> list[Motif]:
    """The motifs of one frame, most abundant first."""
    graph = bond_graph(atoms, settings)
    units = find_units(atoms, settings, graph)
    by_hash: dict[str, Motif] = {}
    for u in units:
        m = by_hash.get(u.hash)
        if m is None:
            natoms = u.natoms // u.repeat
            by_hash[u.hash] = Motif(u.hash, u.name, u.formula, u.charge, u.dimensionality, natoms, u.repeat, u, atoms)
        else:
            m.count += u.repeat
    return sorted(by_hash.values(), key=lambda m: (-m.count, m.name, m.hash))


def motif_names(motifs: Sequence[Motif]) -> str:
    return ", ".join(f"{m.name} x{m.count}" for m in motifs) if motifs else "none"


def charge_balance(atoms: Atoms, motifs: Sequence[Motif], settings: MotifSettings | None = None) -> int | None:
    """Σ unit charges + Σ nominal charges of the excluded cations (0: the formal charges balance)."""
    settings = settings or MotifSettings()
    if not motifs:
        return None  # nothing to balance (e.g. Li metal)
    total = 0
    for m in motifs:
        if m.charge is None:
            return None
        total += m.charge * m.count
    for s, n in Counter(atoms.get_chemical_symbols()).items():
        if s in settings.exclude:
            q = cation_charge(s)
            if q is None:
                return None
            total += q * n
    return total


def dominant_motif(motifs: Sequence[Motif]) -> str:
    """Name of the motif holding most of the anion atoms ('none' without motifs)."""
    if not motifs:
        return "none"
    return max(motifs, key=lambda m: (m.count * m.natoms, m.name)).name


def tag_frame(atoms: Atoms, motifs: Sequence[Motif], settings: MotifSettings | None = None) -> Atoms:
    """Write ``motifs``, ``motif_names`` and ``motif_charge_balance`` into ``atoms.info``."""
    atoms.info["motifs"] = [m.as_info() for m in motifs] if motifs else "[]"
    atoms.info["motif_names"] = motif_names(motifs)
    balance = charge_balance(atoms, motifs, settings)
    if balance is not None:
        atoms.info["motif_charge_balance"] = balance
    else:
        atoms.info.pop("motif_charge_balance", None)
    return atoms
