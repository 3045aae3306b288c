"""cscli hull: E_hull against hand-computed hulls and pymatgen PhaseDiagram on the same entries."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase import Atoms


def _frame(symbols, energy_per_atom, fid, model=None, a=4.0):
    n = len(Atoms(symbols))
    atoms = Atoms(
        symbols,
        scaled_positions=np.linspace(0, 0.9, n)[:, None] * np.ones(3),
        cell=np.eye(3) * a * n ** (1 / 3),
        pbc=True,
    )
    atoms.info["id"] = fid
    atoms.info["energy"] = energy_per_atom * n
    if model:
        atoms.info["model"] = model
    return atoms


@pytest.fixture
def li_s_refs(tmp_path):
    from cscli.core.frames import write_frames

    refs = [
        _frame("Li", -1.9, "Li"),
        _frame("S", -4.1, "S"),
        _frame("Li2S", -4.0, "Li2S"),
        _frame("LiS2", -3.0, "LiS2-above"),
    ]  # above the Li2S-S tie line
    path = tmp_path / "refs.extxyz"
    write_frames(refs, str(path))
    return path


def test_binary_hull_by_hand(li_s_refs, tmp_path, cli):
    """Li-S: formation energies e_f(Li2S) = -4.0 - (2/3(-1.9) + 1/3(-4.1)) = -1.36667 eV/atom.
    LiS at -3.5 eV/atom: e_f = -0.5; hull at x_S = 1/2 on the Li2S-S line: 3/4 e_f(Li2S) = -1.025;
    E_hull = 0.525 eV/atom, decomposing into 3/4 Li2S + 1/4 S (fractions of atoms)."""
    from cscli.core.frames import read_frames, write_frames

    cand = [_frame("LiS", -3.5, "LiS"), _frame("Li2S", -4.2, "Li2S-low"), _frame("Li", -1.9, "Li-copy")]
    write_frames(cand, str(tmp_path / "cand.extxyz"))
    res = cli("hull", tmp_path / "cand.extxyz", "--refs", li_s_refs, "-o", tmp_path / "out.extxyz")
    assert res.returncode == 0, res.stderr
    out = {a.info["id"]: a for a in read_frames(str(tmp_path / "out.extxyz"))}
    ef_li2s = -4.0 - (2 / 3 * -1.9 + 1 / 3 * -4.1)
    assert out["LiS"].info["e_hull"] == pytest.approx(-0.5 - 0.75 * ef_li2s, abs=1e-9)
    assert out["LiS"].info["e_hull"] == pytest.approx(0.525, abs=1e-6)
    assert out["LiS"].info["e_form_per_atom"] == pytest.approx(-0.5, abs=1e-9)
    assert json.loads(out["LiS"].info["decomposition"]) == pytest.approx({"Li2S": 0.75, "S": 0.25})
    # a frame below the hull gets a negative E_hull (0.2 eV/atom below Li2S)
    assert out["Li2S-low"].info["e_hull"] == pytest.approx(-0.2, abs=1e-9)
    assert out["Li-copy"].info["e_hull"] == pytest.approx(0.0, abs=1e-12)
    assert "hull" in out["LiS"].info["history"]


@pytest.fixture(scope="module")
def chgnet_refs(tmp_path_factory, reference_phases):
    """Static CHGNet energies of the 16 shipped Li-P-S phases (one consistent model scale)."""
    from chgnet.model import CHGNet

    from cscli.core.frames import write_frames
    from cscli.screen.matching import atoms_to_structure

    model = CHGNet.load(verbose=False)
    frames = [a.copy() for a in reference_phases]
    preds = model.predict_structure([atoms_to_structure(a) for a in frames], task="e", batch_size=4)
    for atoms, pred in zip(frames, preds):
        atoms.info["energy"] = float(pred["e"]) * len(atoms)
        atoms.info["model"] = "chgnet-0.3.0"
    path = tmp_path_factory.mktemp("hull") / "refs_chgnet.extxyz"
    write_frames(frames, str(path))
    return path, frames


def test_ternary_equals_phase_diagram(chgnet_refs, tmp_path, cli):
    """Li-P-S with CHGNet energies: every number equals pymatgen PhaseDiagram's on the same entries."""
    from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
    from pymatgen.core import Composition

    from cscli.core.frames import read_frames, write_frames

    path, refs = chgnet_refs
    rng = np.random.default_rng(1)
    cands = []
    for atoms in refs:
        c = atoms.copy()
        c.info["id"] = "cand-" + atoms.info["id"]
        c.info["energy"] = atoms.info["energy"] + rng.uniform(-0.05, 0.15) * len(c)
        cands.append(c)
    write_frames(cands, str(tmp_path / "cand.extxyz"))
    res = cli("hull", tmp_path / "cand.extxyz", "--refs", path, "-o", tmp_path / "out.extxyz")
    assert res.returncode == 0, res.stderr
    out = read_frames(str(tmp_path / "out.extxyz"))
    entries = [PDEntry(Composition(a.get_chemical_formula()), a.info["energy"]) for a in refs]
    pd = PhaseDiagram(entries)
    assert len(out) == len(cands)
    below = 0
    for atoms in out:
        entry = PDEntry(Composition(atoms.get_chemical_formula()), float(atoms.info["energy"]))
        assert atoms.info["e_hull"] == pytest.approx(pd.get_e_above_hull(entry, allow_negative=True), abs=1e-9)
        assert atoms.info["e_form_per_atom"] == pytest.approx(pd.get_form_energy_per_atom(entry), abs=1e-9)
        decomp = pd.get_decomposition(entry.composition)
        expected = {}
        for e, x in decomp.items():
            expected[e.composition.reduced_formula] = expected.get(e.composition.reduced_formula, 0) + x
        assert json.loads(atoms.info["decomposition"]) == pytest.approx(expected, abs=1e-9)
        below += atoms.info["e_hull"] < 0
    assert 0 < below < len(out)  # the perturbation put some candidates below, some above
    # the references themselves: stable ones at 0, the rest above the hull
    res = cli("hull", path, "--refs", path, "-o", tmp_path / "self.extxyz")
    self_hull = {a.info["id"]: a.info["e_hull"] for a in read_frames(str(tmp_path / "self.extxyz"))}
    stable = {e.composition.reduced_formula for e in pd.stable_entries}
    for atoms in refs:
        e = self_hull[atoms.info["id"]]
        assert e >= -1e-9
        if atoms.get_chemical_formula() and atoms.info["phase"] in ("Li", "S", "P", "Li2S"):
            assert e == pytest.approx(0, abs=1e-9)
    assert "Li2S" in stable


def test_refs_without_energy_is_a_clear_error(reference_phases, tmp_path, cli):
    from cscli.core.datafiles import reference_phases_path

    res = cli("hull", reference_phases_path(), "--refs", reference_phases_path())
    assert res.returncode == 1
    assert "16 of 16 reference frames have no energy" in res.stderr
    assert "Traceback" not in res.stderr


def test_refs_missing_an_element(tmp_path, cli):
    from cscli.core.frames import write_frames

    write_frames([_frame("Li", -1.9, "Li"), _frame("Li2S", -4.0, "Li2S")], str(tmp_path / "refs.extxyz"))
    write_frames([_frame("LiS", -3.5, "LiS")], str(tmp_path / "c.extxyz"))
    res = cli("hull", tmp_path / "c.extxyz", "--refs", tmp_path / "refs.extxyz")
    assert res.returncode == 1
    assert "lack an elemental phase of S" in res.stderr


def test_element_outside_references_fails_per_frame(li_s_refs, tmp_path, cli):
    from cscli.core.frames import read_frames, write_frames

    write_frames(
        [_frame("LiS", -3.5, "ok"), _frame("Li3P", -3.3, "has-P"), _frame("S", -4.0, "no-e")],
        str(tmp_path / "c.extxyz"),
    )
    frames = read_frames(str(tmp_path / "c.extxyz"))
    del frames[2].info["energy"]
    write_frames(frames, str(tmp_path / "c.extxyz"))
    res = cli("hull", tmp_path / "c.extxyz", "--refs", li_s_refs, "-o", tmp_path / "o.extxyz")
    assert res.returncode == 1 and "P not in the references" in res.stderr and "no energy" in res.stderr
    res = cli(
        "hull",
        tmp_path / "c.extxyz",
        "--refs",
        li_s_refs,
        "-o",
        tmp_path / "o2.extxyz",
        "--failed",
        tmp_path / "bad.extxyz",
    )
    assert res.returncode == 0, res.stderr
    assert [a.info["id"] for a in read_frames(str(tmp_path / "o2.extxyz"))] == ["ok"]
    assert sorted(a.info["id"] for a in read_frames(str(tmp_path / "bad.extxyz"))) == ["has-P", "no-e"]


def test_mixed_models(tmp_path, cli):
    from cscli.core.frames import read_frames, write_frames

    refs = [
        _frame("Li", -1.9, "Li", "chgnet"),
        _frame("S", -4.1, "S", "chgnet"),
        _frame("Li2S", -4.0, "Li2S", "chgnet"),
    ]
    write_frames(refs, str(tmp_path / "refs.extxyz"))
    write_frames([_frame("LiS", -3.5, "LiS", "sevennet")], str(tmp_path / "c.extxyz"))
    res = cli("hull", tmp_path / "c.extxyz", "--refs", tmp_path / "refs.extxyz", "-o", tmp_path / "o.extxyz")
    assert res.returncode == 1 and "labelled by sevennet but the references by chgnet" in res.stderr
    res = cli(
        "hull",
        tmp_path / "c.extxyz",
        "--refs",
        tmp_path / "refs.extxyz",
        "-o",
        tmp_path / "o2.extxyz",
        "--allow-mixed-models",
    )
    assert res.returncode == 0 and "warning" in res.stderr
    assert read_frames(str(tmp_path / "o2.extxyz"))[0].info["e_hull"] == pytest.approx(0.525, abs=1e-6)


def test_lips_hull_close_to_materials_project(chgnet_refs, shared_data, tmp_path, cli):
    """E_hull of the 16 phases (CHGNet static energies, experimental cells) against Materials
    Project's values (reference_numbers/mp_ehull_LiPS_from_IonNet_Li-MP-final.csv): the hull
    phases agree, the metastable sulfides are within 0.08 eV/atom (model and cell differences)."""
    import csv

    from cscli.core.frames import read_frames

    path, refs = chgnet_refs
    res = cli("hull", path, "--refs", path, "-o", tmp_path / "self.extxyz")
    assert res.returncode == 0, res.stderr
    ours = {}
    for a in read_frames(str(tmp_path / "self.extxyz")):
        from pymatgen.core import Composition

        ours.setdefault(Composition(a.get_chemical_formula()).reduced_formula, []).append(a.info["e_hull"])
    with open(shared_data / "reference_numbers" / "mp_ehull_LiPS_from_IonNet_Li-MP-final.csv") as fh:
        mp = {row["Formula"]: float(row["Energy Above Hull (eV)"]) for row in csv.DictReader(fh)}
    compared = 0
    for formula, e_mp in mp.items():
        if formula in ours:
            assert min(ours[formula]) == pytest.approx(e_mp, abs=0.08), formula
            compared += 1
    assert compared >= 6  # Li2S, Li3P, Li3PS4, Li48P16S61, Li7P3S11, Li7PS6
    assert min(ours["Li2S"]) == 0 and min(ours["Li3P"]) == 0 and min(ours["Li3PS4"]) == 0
