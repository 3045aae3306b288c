"""cscli motifs: anion units of real Li-P-S phases and hand-built cells, checked against crystal chemistry.

Independent references: the Li count of each phase (formal charges must balance it), bond lengths
measured in the structures, pymatgen's Larsen dimensionality on the same bond set, the conventional
CIF cells of the shared data (same motifs as the primitive cells, counts scaled), matminer directly.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from ase import Atoms

from cscli.screen.motifs import (
    Catalogue,
    MotifSettings,
    analyze,
    bond_graph,
    charge_balance,
    find_units,
    formal_charge,
    parse_cutoffs,
    tag_frame,
)


def names(atoms, **kw):
    return {m.name: m.count for m in analyze(atoms, MotifSettings.make(**kw) if kw else None)}


def hashes(atoms):
    return {m.hash: m.count for m in analyze(atoms)}


# ----------------------------------------------------------------------------- real phases

EXPECTED = {
    "beta-Li3PS4": {"PS4^3-": 4},
    "gamma-Li3PS4": {"PS4^3-": 2},
    "Li4P2S6": {"P2S6^4- (P-P)": 1},
    "Li2P2S6": {"P2S6^2- (edge-sharing)": 1},
    "Li7P3S11": {"PS4^3-": 2, "P2S7^4-": 2},
    "Li7PS6": {"PS4^3-": 4, "S^2-": 8},  # argyrodite: PS4^3- plus free S^2-
    "Li2S": {"S^2-": 1},
    "Li3P": {"P^3-": 2},
    "P2S5": {"P4S10": 2},  # molecular P4S10 cages
    "P4S3": {"P4S3": 8},
    "S": {"S8": 4},  # cyclo-octasulfur
    "P": {"P4": 6},  # this 24-atom P-1 cell is molecular (white) phosphorus: P4 tetrahedra
    "Li": {},
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_reference_phase_motifs(phase, name):
    atoms = phase(name)
    assert names(atoms) == EXPECTED[name]
    assert all(m.dimensionality == 0 for m in analyze(atoms))


def test_every_charge_balanced_phase_balances_its_li(reference_phases):
    """Σ formal charges of the units = -(number of Li): the oxidation-state rule against composition."""
    for atoms in reference_phases:
        name = atoms.info["phase"]
        motifs = analyze(atoms)
        balance = charge_balance(atoms, motifs)
        if name == "Li":
            assert balance is None  # no anions
        elif name in ("Li2PS3-hex", "Li2PS3-orth"):
            continue  # see test_li2ps3_models_have_no_p_p_bond
        else:
            assert balance == 0, (name, [(m.name, m.count) for m in motifs])


def test_li48p16s61_is_pS4_plus_three_thiophosphites(phase):
    """16 P and 61 S: 61 P-S bonds, so 13 P have four S and 3 have three; only then Li48 balances."""
    atoms = phase("Li48P16S61")
    g = bond_graph(atoms)
    p_cn = Counter(g.degree(n) for n in g if g.nodes[n]["species"] == "P")
    assert p_cn == {4: 13, 3: 3}
    assert names(atoms) == {"PS4^3-": 13, "PS3^3-": 3}


def test_li2ps3_models_have_no_p_p_bond(phase):
    """The frame-0 Li2PS3 models put P...P at 3.21-3.22 Å (no bond), so they hold PS3 pyramids, flagged unbalanced."""
    from ase.neighborlist import neighbor_list

    for name, n_ps3 in (("Li2PS3-hex", 2), ("Li2PS3-orth", 4)):
        atoms = phase(name)
        sym = np.array(atoms.get_chemical_symbols())
        i, j, d = neighbor_list("ijd", atoms, 3.5)
        pp = d[(sym[i] == "P") & (sym[j] == "P")]
        assert 3.2 < pp.min() < 3.23  # 3.21 (hex), 3.22 (orth) Å
        assert names(atoms) == {"PS3^3-": n_ps3}
        assert charge_balance(atoms, analyze(atoms)) == -n_ps3  # Li2 per PS3^3-: one charge short each


def test_li4p2s6_dimer_has_a_p_p_bond_and_p_iv(phase):
    atoms = phase("Li4P2S6")
    (unit,) = find_units(atoms)
    pp = [d["length"] for _, _, d in unit.graph.edges(data=True) if d["bond"] == "P-P"]
    assert pp == [pytest.approx(2.175, abs=0.01)]
    assert sorted(unit.oxidation[n] for n in unit.nodes if unit.species[n] == "P") == [4, 4]
    assert unit.charge == -4


def test_li7p3s11_ratio_and_bridging_sulfur(phase):
    atoms = phase("Li7P3S11")
    motifs = {m.name: m for m in analyze(atoms)}
    assert motifs["PS4^3-"].count == motifs["P2S7^4-"].count  # 1:1, as Li7P3S11 = Li7 (PS4)(P2S7)
    p2s7 = next(u for u in find_units(atoms) if u.formula == "P2S7")
    bridging = [n for n in p2s7.nodes if p2s7.species[n] == "S" and p2s7.graph.degree(n) == 2]
    assert len(bridging) == 1
    # the bridging P-S bonds are the long ones (2.09-2.11 Å) against terminal 1.92-2.06 Å
    b = [d["length"] for u, v, d in p2s7.graph.edges(data=True) if bridging[0] in (u, v)]
    t = [d["length"] for u, v, d in p2s7.graph.edges(data=True) if bridging[0] not in (u, v)]
    assert min(b) > max(t) - 0.01


def test_p4s3_oxidation_states_neutral_cage(phase):
    units = find_units(phase("P4S3"))
    assert len(units) == 8
    u = units[0]
    p_states = sorted(u.oxidation[n] for n in u.nodes if u.species[n] == "P")
    assert p_states == [1, 1, 1, 3]  # basal P (two P-P, one S) and apical P(III) bonded to three S
    assert all(u.oxidation[n] == -2 for n in u.nodes if u.species[n] == "S")
    assert u.charge == 0


def test_formal_charge_rule():
    # S: -2 + number of bonds (as an oxidation state: -2 raised by one per S-S bond)
    assert [formal_charge("S", cn) for cn in (0, 1, 2)] == [-2, -1, 0]
    # P: octet up to CN 4 (P+ in PS4), expanded octet beyond (PF6-: -1)
    assert [formal_charge("P", cn) for cn in (0, 3, 4, 5, 6)] == [-3, 0, 1, 0, -1]
    assert formal_charge("Si", 4) == 0 and formal_charge("O", 1) == -1
    assert formal_charge("Fe", 4) is None


@pytest.mark.parametrize("name", ["Li7P3S11", "S", "P4S3", "Li4P2S6", "Li2P2S6"])
def test_conventional_cif_gives_same_hashes_scaled(shared_data, name):
    """The shared conventional (refined) CIFs: same motif hashes as the primitive cells, counts × N_conv/N_prim."""
    from ase.io import read

    d = shared_data / "structures" / "lips20_frame0_refined"
    prim = read(d / f"{name}_primitive.cif")
    conv = read(d / f"{name}_conventional_refined.cif")
    hp, hc = hashes(prim), hashes(conv)
    ratio = len(conv) // len(prim)
    assert len(conv) == ratio * len(prim)
    assert set(hp) == set(hc)
    assert {h: c * ratio for h, c in hp.items()} == hc


# ----------------------------------------------------------------------------- invariance


def _random_rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


def transformed(atoms, rng, supercell=((1, 1, 0), (0, 1, 0), (0, 0, 2))):
    from ase.build import make_supercell

    out = make_supercell(atoms, np.array(supercell))
    rot = _random_rotation(rng)
    out.set_cell(out.cell.array @ rot.T, scale_atoms=False)
    out.positions = out.positions @ rot.T + rng.normal(size=3) * 3.0
    out.wrap()
    order = rng.permutation(len(out))
    return out[order], int(round(abs(np.linalg.det(np.array(supercell)))))


@pytest.mark.parametrize("name", ["Li7P3S11", "S", "Li4P2S6", "P2S5"])
def test_rotated_translated_supercell_same_hashes(phase, name):
    rng = np.random.default_rng(7)
    atoms = phase(name)
    other, k = transformed(atoms, rng)
    assert hashes(other) == {h: c * k for h, c in hashes(atoms).items()}
    assert names(other) == {n: c * k for n, c in names(atoms).items()}


# ----------------------------------------------------------------------------- hand-built cells


def box(symbols, positions, size=15.0, pbc=True):
    a = Atoms(symbols, positions=np.asarray(positions) + size / 2, cell=[size] * 3, pbc=pbc)
    return a


def _min_nonbonded(atoms, settings=None):
    g = bond_graph(atoms, settings)
    bonded = {(min(u, v), max(u, v)) for u, v in g.edges()}
    d = atoms.get_all_distances(mic=True)
    return min(d[i, j] for i in range(len(atoms)) for j in range(i + 1, len(atoms)) if (i, j) not in bonded)


def ps4(center=(0, 0, 0)):
    dirs = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / np.sqrt(3)
    return ["P"] + ["S"] * 4, np.vstack([[0, 0, 0], 2.04 * dirs]) + np.asarray(center)


def p2s8(order):
    """Six-ring (regular hexagon, 2.10 Å sides) in ``order``, each P with two terminal S above/below."""
    ang = np.arange(6) * np.pi / 3
    ring = 2.10 * np.c_[np.cos(ang), np.sin(ang), np.zeros(6)]
    symbols, pos = list(order), list(ring)
    for k, s in enumerate(order):
        if s == "P":
            radial = ring[k] / np.linalg.norm(ring[k])
            for z in (1, -1):
                symbols.append("S")
                pos.append(ring[k] + 1.95 * (np.sin(0.6) * radial + np.cos(0.6) * np.array([0, 0, z])))
    return box(symbols, pos)


def test_isolated_ps4_with_and_without_pbc():
    s, p = ps4()
    for pbc in (True, False):
        atoms = box(s, p, pbc=pbc)
        assert names(atoms) == {"PS4^3-": 1}
    # the same anion cut out of beta-Li3PS4 has the same hash
    iso = hashes(box(s, p))
    li = Atoms("Li3", positions=[[0, 0, 4], [0, 4, 0], [4, 0, 0]])
    atoms = box(s + ["Li"] * 3, np.vstack([p, li.positions]))
    assert hashes(atoms) == iso
    assert charge_balance(atoms, analyze(atoms)) == 0


def test_isolated_ps4_hash_matches_crystal(phase):
    s, p = ps4()
    (h,) = hashes(box(s, p))
    assert h in hashes(phase("beta-Li3PS4"))


def test_p2s8_isomers_distinct():
    one_four = p2s8("PSSPSS")
    one_three = p2s8("PSPSSS")
    for a in (one_four, one_three):
        assert _min_nonbonded(a) > 2.6
    m14, m13 = analyze(one_four), analyze(one_three)
    assert [m.name for m in m14] == ["1,4-P2S8^2-"]
    assert [m.name for m in m13] == ["1,3-P2S8^2-"]
    assert m14[0].formula == m13[0].formula == "P2S8"
    assert m14[0].charge == m13[0].charge == -2
    assert m14[0].hash != m13[0].hash


def test_si_o_defaults_from_covalent_radii():
    dirs = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / np.sqrt(3)
    atoms = box(["Si"] + ["O"] * 4, np.vstack([[0, 0, 0], 1.63 * dirs]))
    assert names(atoms) == {"SiO4^4-": 1}
    # pyrosilicate: a second, inverted tetrahedron through the O along (1,1,1)
    si2 = 2 * 1.63 * dirs[0]
    pos = np.vstack([[0, 0, 0], 1.63 * dirs, si2, si2 - 1.63 * dirs[1:]])
    atoms = box(["Si"] + ["O"] * 4 + ["Si"] + ["O"] * 3, pos)
    assert _min_nonbonded(atoms) > 2.5
    assert names(atoms) == {"Si2O7^6-": 1}
    # thiogermanate with the Ge-S cutoff from covalent radii (1.15 x (1.20 + 1.05) Å)
    atoms = box(["Ge"] + ["S"] * 4, np.vstack([[0, 0, 0], 2.21 * dirs]))
    assert names(atoms) == {"GeS4^4-": 1}


def quartz():
    from ase.spacegroup import crystal

    # Levien et al. (1980) coordinates, shifted by c*2/3 onto ASE's setting of P3_221's 3a site (x, 0, 2/3)
    return crystal(
        ["Si", "O"],
        [(0.4697, 0, 2 / 3), (0.4135, 0.2669, 0.1191 + 2 / 3)],
        spacegroup=154,
        cellpar=[4.916, 4.916, 5.405, 90, 90, 120],
    )


def black_phosphorus():
    from ase.spacegroup import crystal

    return crystal("P", [(0, 0.10168, 0.08056)], spacegroup=64, cellpar=[3.3136, 10.478, 4.3763, 90, 90, 90])


def ps3_chain(a=3.8):
    """Metathiophosphate chain (PS3)n: corner-sharing PS4 tetrahedra along x, one P per cell."""
    pos = [[0, 0, 0], [a / 2, 0.9, 0], [0, -1.0, 1.67], [0, -1.0, -1.67]]
    atoms = Atoms("PS3", positions=np.array(pos) + [0, 6, 6], cell=[a, 12, 12], pbc=True)
    return atoms


def larsen_dimensionality(atoms, settings=None):
    """pymatgen's Larsen dimensionality of the same bond set (an independent implementation)."""
    from pymatgen.analysis.dimensionality import get_dimensionality_larsen
    from pymatgen.analysis.graphs import StructureGraph
    from pymatgen.io.ase import AseAtomsAdaptor

    structure = AseAtomsAdaptor.get_structure(atoms)
    sg = StructureGraph.from_empty_graph(structure)
    for _u, _v, d in bond_graph(atoms, settings).edges(data=True):
        sg.add_edge(d["_from"], d["_to"], from_jimage=(0, 0, 0), to_jimage=d["offset"])
    return get_dimensionality_larsen(sg)


def test_chain_is_1d_polymer():
    chain = ps3_chain()
    assert _min_nonbonded(chain) > 2.6
    (m,) = analyze(chain)
    assert m.dimensionality == 1 == larsen_dimensionality(chain)
    assert m.name == "(PS3)n^n-" and m.charge == -1 and m.count == 1
    # same chain in a cell three times longer along it, in two side-by-side cells, rotated: same hash
    rng = np.random.default_rng(3)
    for sc in (((3, 0, 0), (0, 1, 0), (0, 0, 1)), ((1, 0, 0), (0, 2, 0), (0, 0, 1)), ((2, 1, 0), (0, 1, 0), (0, 0, 1))):
        other, k = transformed(chain, rng, sc)
        (o,) = analyze(other)
        assert (o.hash, o.name, o.count, o.dimensionality) == (m.hash, m.name, k, 1)


def test_layer_and_framework_dimensionality():
    bp = black_phosphorus()
    (m,) = analyze(bp)
    assert (m.name, m.dimensionality, m.charge) == ("(P)n", 2, 0)
    assert larsen_dimensionality(bp) == 2
    q = quartz()
    (m,) = analyze(q)
    assert (m.name, m.dimensionality, m.charge, m.count) == ("(SiO2)n", 3, 0, 3)
    assert larsen_dimensionality(q) == 3
    # a supercell of the layer keeps its hash
    other, k = transformed(bp, np.random.default_rng(1))
    (o,) = analyze(other)
    assert (o.hash, o.count) == (analyze(bp)[0].hash, 8 * k)


@pytest.mark.parametrize("name", ["Li7P3S11", "S", "P4S3", "Li4P2S6"])
def test_finite_phases_larsen_zero(phase, name):
    atoms = phase(name)
    assert larsen_dimensionality(atoms) == 0


def test_cutoff_override_and_exclude(phase):
    atoms = phase("Li2PS3-hex")
    # lengthen P-P beyond the 3.21 Å of this model: its P atoms, 3.21 Å apart along c, join the
    # PS3 pyramids into one chain (two PS3 per cell), as pymatgen's Larsen analysis agrees
    settings = MotifSettings.make(cutoffs={("P", "P"): 3.3})
    (m,) = analyze(atoms, settings)
    assert (m.name, m.count, m.dimensionality) == ("(PS3)n^3n-", 2, 1)
    assert larsen_dimensionality(atoms, settings) == 1
    assert parse_cutoffs(["S-P=2.4", "P-P=3"]) == {("P", "S"): 2.4, ("P", "P"): 3.0}
    from cscli.core.errors import UsageError

    for bad in ("PS=2", "P-Xx=2", "P-S=-1"):
        with pytest.raises(UsageError):
            parse_cutoffs([bad])
    # keeping Li in the graph with a Li-S cutoff makes one 3D framework of the whole crystal
    li2s = phase("Li2S")
    (m,) = analyze(li2s, MotifSettings.make(exclude=(), cutoffs={("Li", "S"): 2.6}))
    assert m.dimensionality == 3 and m.formula == "Li2S"


# ----------------------------------------------------------------------------- frames, catalogue, CLI


def test_tag_frame_roundtrip(phase, tmp_path):
    from cscli.core.frames import info_json, read_frames, write_frames

    frames = [tag_frame(phase(n), analyze(phase(n))) for n in ("Li7P3S11", "Li")]
    for ext in ("extxyz", "jsonl"):
        path = tmp_path / f"t.{ext}"
        write_frames(frames, str(path))
        back = read_frames(str(path))
        got = {m["name"]: m["count"] for m in info_json(back[0], "motifs")}
        assert got == {"PS4^3-": 2, "P2S7^4-": 2}
        assert back[0].info["motif_names"] == "P2S7^4- x2, PS4^3- x2"
        assert int(back[0].info["motif_charge_balance"]) == 0
        assert info_json(back[1], "motifs") == [] and back[1].info["motif_names"] == "none"


def test_catalogue_merges_and_flags_new(phase, tmp_path):
    cat_path = tmp_path / "cat.jsonl"
    cat = Catalogue.load(cat_path)
    a = phase("beta-Li3PS4")
    cat.add("it0-a", analyze(a), iteration=0)
    cat.save(cat_path)
    cat = Catalogue.load(cat_path)
    cat.add("it1-b", analyze(phase("Li7P3S11")), iteration=1)
    rows = {r["name"]: r for r in cat.summary_rows()}
    assert rows["PS4^3-"]["new"] is False and rows["P2S7^4-"]["new"] is True
    cat.save(cat_path)
    recs = {r["name"]: r for r in map(json.loads, cat_path.read_text().splitlines())}
    assert recs["PS4^3-"]["count"] == 4 + 2 and recs["PS4^3-"]["first_id"] == "it0-a"
    assert recs["PS4^3-"]["first_iteration"] == 0 and recs["P2S7^4-"]["first_iteration"] == 1
    ex = recs["P2S7^4-"]["example"]
    assert Counter(ex["symbols"]) == {"P": 2, "S": 7}
    # the example cluster, rebuilt in a box, has the catalogue's hash
    assert set(hashes(box(ex["symbols"], ex["positions"]))) == {recs["P2S7^4-"]["hash"]}


def _write(frames, path):
    from cscli.core.frames import write_frames

    write_frames(frames, str(path))
    return str(path)


def test_cli_catalogue_across_iterations(cli, phase, tmp_path):
    from ase.io import read

    from cscli.core.frames import info_json

    first = _write([phase("beta-Li3PS4"), phase("S")], tmp_path / "it0.extxyz")
    second = _write([phase("Li7P3S11"), phase("gamma-Li3PS4")], tmp_path / "it1.extxyz")
    cat = tmp_path / "cat.jsonl"
    r = cli("motifs", first, "--catalogue", cat, "-q")
    assert r.returncode == 0, r.stderr
    assert len(cat.read_text().splitlines()) == 2
    export = tmp_path / "clusters"
    r = cli("motifs", second, "--catalogue", cat, "--export-dir", export, "--table", tmp_path / "s.tsv")
    assert r.returncode == 0, r.stderr
    assert "P2S7^4-" in r.stderr and "name" in r.stderr  # the table on stderr
    tagged = read_frames_text(r.stdout)
    assert [f.info["motif_names"] for f in tagged] == ["P2S7^4- x2, PS4^3- x2", "PS4^3- x2"]
    rows = [line.split("\t") for line in (tmp_path / "s.tsv").read_text().splitlines()]
    head = rows[0]
    table = {row[0]: dict(zip(head, row)) for row in rows[1:]}
    assert table["P2S7^4-"]["new"] == "yes" and table["PS4^3-"]["new"] == ""
    assert table["PS4^3-"]["count"] == "4"
    recs = {json.loads(line)["name"]: json.loads(line) for line in cat.read_text().splitlines()}
    assert set(recs) == {"PS4^3-", "S8", "P2S7^4-"}
    assert recs["PS4^3-"]["count"] == 4 + 4 and recs["PS4^3-"]["first_id"] == "ref-beta-Li3PS4"
    files = sorted(p.name for p in export.iterdir())
    assert len(files) == 2
    for p in export.iterdir():
        c = read(p)
        assert np.allclose(c.cell.lengths(), 20.0)
        assert np.allclose(c.positions.mean(axis=0), 10.0, atol=1e-6)
        assert set(hashes(c)) == {c.info["motif_hash"]}
    assert info_json(tagged[0], "motifs")[0]["hash"] == recs["P2S7^4-"]["hash"]


def read_frames_text(text):
    import io

    from ase.io.extxyz import read_xyz

    return list(read_xyz(io.StringIO(text), index=slice(None)))


def test_cli_usage_errors(cli, phase, tmp_path):
    path = _write([phase("S")], tmp_path / "s.extxyz")
    r = cli("motifs", path, "--cutoff", "P-S")
    assert r.returncode == 2 and "P-S" in r.stderr
    r = cli("motifs", path, "--exclude", "Qq")
    assert r.returncode == 2
    r = cli("motifs", path, "--color-by", "iteration")
    assert r.returncode == 2


# ----------------------------------------------------------------------------- fingerprints and the map


def test_fingerprint_anion_framework(phase):
    """gamma-Li3PS4 without Li: 8 terminal S (CN 1) and 2 tetrahedral P (CN 4) out of 10 sites."""
    from cscli.screen.fingerprints import fingerprint_labels, structure_fingerprint

    labels = fingerprint_labels()
    fp = structure_fingerprint(phase("gamma-Li3PS4"))
    assert len(fp) == len(labels) == 61
    assert fp[labels.index("mean wt CN_1")] == pytest.approx(0.8, abs=0.03)
    assert fp[labels.index("mean wt CN_4")] == pytest.approx(0.2, abs=0.03)
    assert fp[labels.index("mean tetrahedral CN_4")] == pytest.approx(0.2, abs=0.03)


def test_fingerprint_is_matminer_site_mean(phase):
    """Same numbers as averaging matminer's CrystalNNFingerprint over the sites by hand."""
    import warnings

    from matminer.featurizers.site import CrystalNNFingerprint
    from pymatgen.io.ase import AseAtomsAdaptor

    from cscli.screen.fingerprints import structure_fingerprint

    atoms = phase("Li2S")
    s = AseAtomsAdaptor.get_structure(atoms)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = CrystalNNFingerprint.from_preset("ops")
        ref = np.mean([f.featurize(s, i) for i in range(len(s))], axis=0)
    assert np.allclose(structure_fingerprint(atoms, remove=()), ref, atol=1e-9)


def test_map_separates_two_phases(phase, tmp_path):
    """Perturbed copies of two phases: each point's nearest map neighbour is a copy of its own phase."""
    from cscli.screen.fingerprints import fingerprint_map, frame_fingerprint

    rng = np.random.default_rng(0)
    frames, labels = [], []
    for name in ("gamma-Li3PS4", "Li4P2S6"):
        for _ in range(4):
            a = phase(name)
            a.positions += rng.normal(scale=0.03, size=a.positions.shape)
            frames.append(a)
            labels.append(name)
    fps = [frame_fingerprint(a) for a in frames]
    png = tmp_path / "map.png"
    xy = fingerprint_map(fps, labels, str(png), ids=[str(k) for k in range(len(frames))])
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    assert len((tmp_path / "map.csv").read_text().splitlines()) == 1 + len(frames)
    d = np.linalg.norm(xy[:, None] - xy[None], axis=-1) + np.eye(len(xy)) * 1e9
    nearest = d.argmin(axis=1)
    assert all(labels[k] == labels[n] for k, n in enumerate(nearest))


def test_one_atom_cell_self_loop_chain():
    """A helix-free sulfur chain in a one-atom cell: the atom bonds to its own images (a self-loop)."""
    chain = Atoms("S", positions=[[0, 5, 5]], cell=[2.05, 10, 10], pbc=True)
    g = bond_graph(chain)
    assert list(g.edges(data="offset")) == [(0, 0, (1, 0, 0))]
    (m,) = analyze(chain)
    assert (m.name, m.dimensionality, m.charge, m.count) == ("(S)n", 1, 0, 1)
    assert larsen_dimensionality(chain) == 1
    for sc, k in ((((3, 0, 0), (0, 1, 0), (0, 0, 1)), 3), (((2, 0, 0), (0, 2, 0), (0, 0, 1)), 4)):
        other, kk = transformed(chain, np.random.default_rng(5), sc)
        assert kk == k
        (o,) = analyze(other)
        assert (o.hash, o.count, o.dimensionality) == (m.hash, k, 1)


def test_cli_resume_does_not_count_twice(cli, phase, tmp_path):
    src = _write([phase("beta-Li3PS4"), phase("Li7P3S11")], tmp_path / "in.extxyz")
    out, cat = tmp_path / "out.extxyz", tmp_path / "cat.jsonl"
    for _ in range(2):
        r = cli("motifs", src, "-o", out, "--catalogue", cat, "-q")
        assert r.returncode == 0, r.stderr
    recs = {json.loads(line)["name"]: json.loads(line) for line in cat.read_text().splitlines()}
    assert recs["PS4^3-"]["count"] == 4 + 2 and recs["PS4^3-"]["frames"] == 2
    assert out.read_text().count("motif_names=") == 2


def test_cli_resume_after_a_kill_merges_frames_the_catalogue_missed(cli, phase, tmp_path):
    """A run killed after writing a frame but before saving its catalogue: the resumed run skips the
    frame, so it merges the frame's motifs from the output instead (once)."""
    import shutil

    src = _write([phase("beta-Li3PS4"), phase("Li7P3S11")], tmp_path / "in.extxyz")
    out, cat = tmp_path / "out.extxyz", tmp_path / "cat.jsonl"
    r = cli("motifs", _write([phase("beta-Li3PS4")], tmp_path / "first.extxyz"), "-o", out, "--catalogue", cat, "-q")
    assert r.returncode == 0, r.stderr
    # the killed run's output: both frames tagged, catalogue saved after the first only
    r = cli("motifs", src, "-o", tmp_path / "both.extxyz", "-q")
    assert r.returncode == 0, r.stderr
    shutil.copy(tmp_path / "both.extxyz", out)
    for _ in range(2):  # the second resume finds nothing to add
        r = cli("motifs", src, "-o", out, "--catalogue", cat, "-q")
        assert r.returncode == 0, r.stderr
        recs = {json.loads(line)["name"]: json.loads(line) for line in cat.read_text().splitlines()}
        assert recs["PS4^3-"]["count"] == 4 + 2 and recs["PS4^3-"]["frames"] == 2
        assert recs["P2S7^4-"]["frames"] == 1 and recs["P2S7^4-"]["first_id"] == "ref-Li7P3S11"
        assert sorted(recs["PS4^3-"]["ids"]) == ["ref-Li7P3S11", "ref-beta-Li3PS4"]
    assert out.read_text().count("motif_names=") == 2


@pytest.mark.parametrize(
    "name, formula, n_edges, degrees",
    [
        ("S", "S8", 8, {"S": {2: 8}}),  # one 8-membered ring
        ("P2S5", "P4S10", 16, {"P": {4: 4}, "S": {2: 6, 1: 4}}),  # adamantane cage, 4 terminal S
        ("P4S3", "P4S3", 9, {"P": {3: 4}, "S": {2: 3}}),  # P3 basal ring, apical P, 3 bridging S
        ("P", "P4", 6, {"P": {3: 4}}),  # tetrahedron
    ],
)
def test_molecular_cages_and_rings(phase, name, formula, n_edges, degrees):
    import networkx as nx

    for unit in find_units(phase(name)):
        assert unit.formula == formula and unit.finite
        assert unit.graph.number_of_edges() == n_edges
        got = {}
        for n in unit.nodes:
            got.setdefault(unit.species[n], Counter())[unit.graph.degree(n)] += 1
        assert got == degrees
        if name == "S":
            (ring,) = nx.cycle_basis(nx.Graph(unit.graph))
            assert len(ring) == 8


def test_disulfide_linked_chain_is_ps4_n():
    """The seed paper's (PS4)n chain: PS2 units linked by S-S bridges, -P(S2)-S-S-P(S2)-, one P per cell."""
    a = 5.397
    pos = [[0, 0, 0], [1.5, 1.47, 0], [3.5, 0.9, 0], [0, -1.0, 1.67], [0, -1.0, -1.67]]
    chain = Atoms("PS4", positions=np.array(pos) + [0, 6, 6], cell=[a, 12, 12], pbc=True)
    assert _min_nonbonded(chain) > 2.6
    bonds = Counter(d for _, _, d in bond_graph(chain).edges(data="bond"))
    assert bonds == {"P-S": 4, "S-S": 1}
    (m,) = analyze(chain)
    # P(V); the S-S bridge sulfurs are -1 each, the terminal ones -2: 5 - 1 - 1 - 2 - 2 = -1 per PS4
    assert (m.name, m.charge, m.dimensionality) == ("(PS4)n^n-", -1, 1)
    assert m.hash != analyze(ps3_chain())[0].hash


def test_catalogue_accepts_iterations_read_from_extxyz(tmp_path, phase, cli):
    """Regression: `generate` frames carry iteration=0, which extxyz reads back as a numpy integer."""
    from cscli.core.frames import write_frames

    atoms = phase("gamma-Li3PS4")
    atoms.info["iteration"] = 0
    src = tmp_path / "gen.extxyz"
    write_frames([atoms], str(src))
    cat = tmp_path / "cat.jsonl"
    r = cli("motifs", src, "--catalogue", cat, "-o", tmp_path / "out.extxyz", "-q")
    assert r.returncode == 0, r.stderr
    (record,) = [json.loads(line) for line in cat.read_text().splitlines()]
    assert record["name"] == "PS4^3-" and record["first_iteration"] == 0
