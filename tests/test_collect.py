"""collect: VASP runs back into labelled frames, checked against pymatgen's independent parsers.

Real VASP outputs: the vasprun.xml (diamond C, VASP 6.3.0, PSTRESS 1 kB) and OUTCAR (Ni18, VASP 5) that
ship as test data inside ASE's wheel (LGPL), read in place. Relaxation trajectories: vasprun.xml
files written here in VASP's layout around a short CHGNet relaxation of gamma-Li3PS4 (real
MLFF energies/forces/stress of a real Li-P-S cell; the SCF blocks are synthetic) and parsed by
both cscli (ASE) and pymatgen's Vasprun.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cscli.core.frames import frame_to_dict, read_frames

KBAR_TO_EV_A3 = 0.1 / 160.21766208  # 1 kB = 0.1 GPa; 1 eV/Å^3 = 160.2177 GPa


def _ase_testdata(name):
    import ase

    path = Path(ase.__file__).parent / "test" / "testdata" / "vasp" / name
    if not path.exists():
        pytest.skip(f"ASE's test data {name} is not installed with this ASE")
    return path


def _vasprun(v_path):
    from pymatgen.io.vasp import Vasprun

    return Vasprun(str(v_path), parse_dos=False, parse_eigen=False, parse_potcar_file=False)


# ----------------------------------------------------------------------------- real files


def test_real_vasprun_single_point(tmp_path, cli):
    src = _ase_testdata("vasprun_pstress.xml")
    run = tmp_path / "c"
    run.mkdir()
    shutil.copy(src, run / "vasprun.xml")
    out = tmp_path / "out.extxyz"
    r = cli("collect", run, "-o", out, "--report", tmp_path / "rep.json")
    assert r.returncode == 0, r.stderr
    (frame,) = read_frames(str(out))
    vr = _vasprun(run / "vasprun.xml")
    step = vr.ionic_steps[-1]
    pstress = vr.parameters["PSTRESS"]
    volume = vr.final_structure.volume
    # VASP's calculation/energy holds the enthalpy E + pV under PSTRESS; the label is E
    assert frame.info["energy"] == pytest.approx(step["e_0_energy"] - pstress * KBAR_TO_EV_A3 * volume, abs=1e-6)
    assert frame.info["energy"] == pytest.approx(-20.2472010, abs=1e-6)
    assert np.allclose(frame.arrays["forces"], np.array(step["forces"]), atol=1e-8)
    stress_kbar = np.array(step["stress"])
    expected = -KBAR_TO_EV_A3 * stress_kbar[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
    assert np.allclose(frame.info["stress"], expected, atol=1e-8)
    assert frame.info["label_method"] == "dft-vasp"
    assert frame.info["parent_id"] == "c" and frame.info["id"] == "c-step000"
    assert frame.get_chemical_formula() == "C2"  # diamond, a = 3.57 Å
    rep = json.loads((tmp_path / "rep.json").read_text())
    assert rep["runs"][0]["status"] == "ok" and rep["runs"][0]["reader"] == "vasprun.xml"
    assert vr.converged_electronic and vr.converged_ionic


def test_real_outcar_fallback(tmp_path, cli):
    src = _ase_testdata("OUTCAR_example_1")
    run = tmp_path / "ni"
    run.mkdir()
    shutil.copy(src, run / "OUTCAR")
    (run / "vasprun.xml").write_text("")  # empty: a killed run; OUTCAR must be used
    out = tmp_path / "out.extxyz"
    r = cli("collect", run, "-o", out, "--report", tmp_path / "rep.json")
    assert r.returncode == 0, r.stderr
    (frame,) = read_frames(str(out))
    from pymatgen.io.vasp import Outcar

    oc = Outcar(str(run / "OUTCAR"))
    assert frame.info["energy"] == pytest.approx(oc.final_energy, abs=1e-8)  # energy(sigma->0)
    assert frame.info["free_energy"] == pytest.approx(oc.final_fr_energy, abs=1e-8)  # TOTEN
    assert frame.info["energy"] == pytest.approx(-68.23102426, abs=1e-8)
    table = oc.read_table_pattern(
        r"POSITION\s+TOTAL-FORCE \(eV/Angst\)\s*\n\s*-+\n",
        r"\s+" + r"\s+".join([r"(-?\d+\.\d+)"] * 6),
        r"\s*-+",
        last_one_only=True,
    )
    ref_forces = np.array(table, dtype=float)[:, 3:]
    assert ref_forces.shape == (18, 3)
    assert np.allclose(frame.arrays["forces"], ref_forces, atol=1e-6)
    assert np.allclose(frame.arrays["forces"][0], [0.030415, -0.114705, -0.460114])
    rep = json.loads((tmp_path / "rep.json").read_text())["runs"][0]
    assert rep["reader"] == "OUTCAR" and rep["status"] == "ok"


# ----------------------------------------------------------------------------- relaxation trajectories


def _v(rows):
    return "".join("    <v>" + " ".join(f"{x:16.8f}" for x in row) + " </v>\n" for row in rows)


def _structure(atoms, name=None):
    head = f' <structure name="{name}" >\n' if name else " <structure>\n"
    rec = atoms.cell.reciprocal()
    return (
        head + '  <crystal>\n   <varray name="basis" >\n' + _v(atoms.cell.array) + "   </varray>\n"
        f'   <i name="volume">{atoms.cell.volume:16.8f} </i>\n   <varray name="rec_basis" >\n'
        + _v(rec)
        + '   </varray>\n  </crystal>\n  <varray name="positions" >\n'
        + _v(atoms.get_scaled_positions(wrap=False))
        + "  </varray>\n </structure>\n"
    )


def _energy_block(e, indent="  "):
    return (
        f'{indent}<energy>\n{indent} <i name="e_fr_energy">{e:18.8f} </i>\n'
        f'{indent} <i name="e_wo_entrp">{e:18.8f} </i>\n{indent} <i name="e_0_energy">{e:18.8f} </i>\n'
        f"{indent}</energy>\n"
    )


def write_vasprun(path, steps, nelm=60, nsw=99, ibrion=2, scf_counts=None, cut_after=None):
    """A vasprun.xml in VASP's layout (as in a real VASP 6 file) for ``steps`` (Atoms with
    info energy/stress and arrays forces). ``scf_counts`` sets the SCF iterations per ionic step;
    ``cut_after`` truncates the file inside ionic step ``cut_after`` (a killed run)."""
    from ase.units import GPa

    first = steps[0]
    symbols = first.get_chemical_symbols()
    types = list(dict.fromkeys(symbols))
    pots = {"Li": "Li_sv", "P": "P", "S": "S"}
    n = len(first)
    scf_counts = scf_counts or [12] * len(steps)
    parts = [
        '<?xml version="1.0" encoding="ISO-8859-1"?>\n<modeling>\n <generator>\n'
        '  <i name="program" type="string">vasp </i>\n  <i name="version" type="string">6.3.0  </i>\n'
        '  <i name="subversion" type="string">20Jan22 complex parallel </i>\n'
        '  <i name="platform" type="string">LinuxIFC </i>\n  <i name="date" type="string">2026 11 23 </i>\n'
        '  <i name="time" type="string">12:00:00 </i>\n </generator>\n <incar>\n'
        f'  <i type="string" name="PREC">accurate</i>\n  <i name="ENCUT">    520.00000000</i>\n'
        f'  <i name="EDIFF">{5e-5 * n:.8f}</i>\n  <i type="int" name="NSW">{nsw}</i>\n'
        f'  <i type="int" name="IBRION">{ibrion}</i>\n  <i type="int" name="ISIF">3</i>\n'
        '  <i type="int" name="ISMEAR">-5</i>\n </incar>\n <kpoints>\n  <generation param="Gamma">\n'
        '   <v type="int" name="divisions">       1        1        1 </v>\n'
        '   <v name="usershift">      0.00000000       0.00000000       0.00000000 </v>\n'
        '   <v name="genvec1">      1.00000000       0.00000000       0.00000000 </v>\n'
        '   <v name="genvec2">      0.00000000       1.00000000       0.00000000 </v>\n'
        '   <v name="genvec3">      0.00000000       0.00000000       1.00000000 </v>\n'
        '   <v name="shift">      0.00000000       0.00000000       0.00000000 </v>\n  </generation>\n'
        '  <varray name="kpointlist" >\n   <v>       0.00000000       0.00000000       0.00000000 </v>\n'
        '  </varray>\n  <varray name="weights" >\n   <v>       1.00000000 </v>\n  </varray>\n </kpoints>\n'
        ' <parameters>\n  <separator name="electronic" >\n   <i type="string" name="PREC">accurate</i>\n'
        '   <i name="ENMAX">    520.00000000</i>\n'
        f'   <i name="EDIFF">{5e-5 * n:16.8f}</i>\n   <i name="NELECT">     64.00000000</i>\n'
        '   <separator name="electronic smearing" >\n    <i type="int" name="ISMEAR">    -5</i>\n'
        '    <i name="SIGMA">      0.05000000</i>\n   </separator>\n'
        '   <separator name="electronic spin" >\n    <i type="int" name="ISPIN">     1</i>\n'
        '    <i type="logical" name="LNONCOLLINEAR"> F  </i>\n    <i type="logical" name="LSORBIT"> F  </i>\n'
        '   </separator>\n   <separator name="electronic convergence" >\n'
        f'    <i type="int" name="NELM">{nelm:6d}</i>\n   </separator>\n  </separator>\n'
        '  <separator name="ionic" >\n'
        f'   <i type="int" name="NSW">{nsw:6d}</i>\n   <i type="int" name="IBRION">{ibrion:6d}</i>\n'
        '   <i type="int" name="ISIF">     3</i>\n'
        f'   <i name="EDIFFG">{5e-4 * n:16.8f}</i>\n'
        '   <i name="PSTRESS">      0.00000000</i>\n  </separator>\n </parameters>\n'
        f' <atominfo>\n  <atoms>{n:8d} </atoms>\n  <types>{len(types):8d} </types>\n  <array name="atoms" >\n'
        '   <dimension dim="1">ion</dimension>\n   <field type="string">element</field>\n'
        '   <field type="int">atomtype</field>\n   <set>\n'
    ]
    parts += [f"    <rc><c>{s:2s}</c><c>{types.index(s) + 1:4d}</c></rc>\n" for s in symbols]
    parts.append(
        '   </set>\n  </array>\n  <array name="atomtypes" >\n   <dimension dim="1">type</dimension>\n'
        '   <field type="int">atomspertype</field>\n   <field type="string">element</field>\n'
        '   <field>mass</field>\n   <field>valence</field>\n   <field type="string">pseudopotential</field>\n'
        "   <set>\n"
    )
    masses = {"Li": 7.01, "P": 30.974, "S": 32.066}
    valence = {"Li": 3.0, "P": 5.0, "S": 6.0}
    parts += [
        f"    <rc><c>{symbols.count(t):4d}</c><c>{t:2s}</c><c>{masses[t]:16.8f}</c><c>{valence[t]:16.8f}</c>"
        f"<c>  PAW_PBE {pots[t]} 17Jan2003</c></rc>\n"
        for t in types
    ]
    parts.append("   </set>\n  </array>\n </atominfo>\n")
    parts.append(_structure(first, "initialpos"))
    for k, atoms in enumerate(steps):
        e = float(atoms.info["energy"])
        block = [" <calculation>\n"]
        for it in range(scf_counts[k]):
            e_it = e + 10.0 ** (1 - it) if it < scf_counts[k] - 1 else e
            block.append(
                '  <scstep>\n   <time name="total">    0.10    0.10</time>\n'
                + _energy_block(e_it, "   ")
                + "  </scstep>\n"
            )
        block.append(_structure(atoms).replace("\n ", "\n  ").replace(" <structure>", "  <structure>", 1))
        block.append('  <varray name="forces" >\n' + _v(atoms.arrays["forces"]) + "  </varray>\n")
        from ase.stress import voigt_6_to_full_3x3_stress

        stress_kbar = -voigt_6_to_full_3x3_stress(atoms.info["stress"]) / (0.1 * GPa)
        block.append('  <varray name="stress" >\n' + _v(stress_kbar) + "  </varray>\n")
        block.append(_energy_block(e) + '  <time name="totalsc">    1.00    1.00</time>\n </calculation>\n')
        text = "".join(block)
        if cut_after is not None and k == cut_after:
            parts.append(text[: len(text) // 2])
            Path(path).write_text("".join(parts))
            return
        parts.append(text)
    parts.append(_structure(steps[-1], "finalpos"))
    parts.append("</modeling>\n")
    Path(path).write_text("".join(parts))


@pytest.fixture(scope="module")
def trajectory():
    """6 FIRE steps of CHGNet on a rattled gamma-Li3PS4 cell (16 atoms): energies, forces, stress."""
    from ase.optimize import FIRE

    from cscli.core.datafiles import reference_phases_path
    from cscli.core.models import load_calculator

    calc = load_calculator("chgnet", device="cpu")
    atoms = next(a for a in read_frames(str(reference_phases_path())) if a.info["phase"] == "gamma-Li3PS4")
    atoms.info = {"id": "cand-7", "iteration": 2, "e_hull": 0.04}
    parent = atoms.copy()
    atoms.rattle(0.08, seed=3)
    atoms.calc = calc
    steps = []

    def record():
        snap = atoms.copy()
        snap.calc = None
        snap.info = {"energy": atoms.get_potential_energy(), "stress": atoms.get_stress(voigt=True)}
        snap.arrays["forces"] = atoms.get_forces()
        steps.append(snap)

    opt = FIRE(atoms, logfile=None)
    opt.attach(record)
    opt.run(fmax=1e-4, steps=5)
    assert len(steps) == 6
    return parent, steps


def _run_dir(root, name, parent, steps, **kw):
    d = root / name
    d.mkdir(parents=True)
    write_vasprun(d / "vasprun.xml", steps, **kw)
    if parent is not None:
        (d / "cscli_frame.json").write_text(json.dumps(frame_to_dict(parent)))
    return d


@pytest.mark.slow
def test_relaxation_numbers_match_pymatgen(tmp_path, trajectory, cli):
    parent, steps = trajectory
    d = _run_dir(tmp_path, "00000_cand-7", parent, steps)
    out = tmp_path / "all.extxyz"
    r = cli("collect", d, "--all-steps", "-o", out)
    assert r.returncode == 0, r.stderr
    frames = read_frames(str(out))
    vr = _vasprun(d / "vasprun.xml")
    assert len(frames) == len(vr.ionic_steps) == 6
    for k, (frame, step) in enumerate(zip(frames, vr.ionic_steps)):
        assert frame.info["id"] == f"cand-7-step{k:03d}" and frame.info["parent_id"] == "cand-7"
        assert frame.info["energy"] == pytest.approx(step["e_0_energy"], abs=1e-7)
        assert frame.info["energy"] == pytest.approx(steps[k].info["energy"], abs=1e-7)
        assert np.allclose(frame.arrays["forces"], np.array(step["forces"]), atol=1e-7)
        s = np.array(step["stress"])  # kB, VASP sign (positive = compressive)
        assert np.allclose(frame.info["stress"], -KBAR_TO_EV_A3 * s[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]], atol=1e-8)
        pm = vr.structures[k]
        assert np.allclose(frame.cell.array, pm.lattice.matrix, atol=1e-6)
        assert np.allclose(frame.get_scaled_positions(wrap=False), pm.frac_coords, atol=1e-7)
        assert frame.info["iteration"] == 2 and frame.info["label_method"] == "dft-vasp"
        assert frame.info["vasp_n_steps"] == 6 and frame.info["vasp_relax_converged"]
    assert vr.converged_ionic and vr.converged_electronic


@pytest.mark.slow
def test_sampling_recipe(tmp_path, trajectory, cli):
    parent, steps = trajectory
    d = _run_dir(tmp_path, "run", parent, steps)

    from cscli.dft.vasp import collect_runs, parse_per_run

    def collect(seed=0, per_run="5"):
        frames, _ = collect_runs([d], per_run=parse_per_run(per_run), seed=seed)
        return [f.info["vasp_step"] for f in frames]

    out = tmp_path / "s.extxyz"
    r = cli("collect", d, "-o", out, "-q", "--seed", "0")
    assert r.returncode == 0 and r.stderr == ""
    default = [f.info["vasp_step"] for f in read_frames(str(out))]
    assert {f.info["collect_seed"] for f in read_frames(str(out))} == {0}
    assert len(default) == 5 and default[0] == 0 and default[-1] == 5 and default == sorted(set(default))
    assert collect(0) == default  # --seed 0 reproduces the library's seed 0
    middles = {tuple(collect(s, "3")) for s in range(12)}
    assert all(m[0] == 0 and m[-1] == 5 and len(m) == 3 for m in middles)
    assert len(middles) > 1  # the middle step is random
    assert collect(per_run="1") == [5]  # one step: the relaxed end point
    assert collect(per_run="9") == [0, 1, 2, 3, 4, 5]
    counts = {len(collect(s, "1-5")) for s in range(30)}
    assert counts == {1, 2, 3, 4, 5}


@pytest.mark.slow
def test_unconverged_incomplete_and_failed_runs_are_reported(tmp_path, trajectory, cli):
    parent, steps = trajectory
    root = tmp_path / "runs"
    _run_dir(root, "a_ok", parent, steps)
    _run_dir(root, "b_nsw", None, steps, nsw=6)  # hit NSW: ionic loop not converged
    _run_dir(root, "c_scf", None, steps, nelm=20, scf_counts=[12, 12, 20, 12, 12, 20])  # steps 2, 5 hit NELM
    _run_dir(root, "d_cut", None, steps, cut_after=4)  # killed inside step 4
    (root / "e_failed").mkdir()
    (root / "e_failed" / "INCAR").write_text("ENCUT = 520\n")
    out = tmp_path / "out.extxyz"
    r = cli("collect", root, "--all-steps", "-o", out, "--report", tmp_path / "rep.json")
    assert r.returncode == 0, r.stderr
    rep = {Path(x["dir"]).name: x for x in json.loads((tmp_path / "rep.json").read_text())["runs"]}
    assert rep["a_ok"]["status"] == "ok"
    assert rep["b_nsw"]["status"] == "unconverged" and rep["b_nsw"]["relax_converged"] is False
    assert rep["c_scf"]["scf_unconverged_steps"] == [2, 5] and rep["c_scf"]["collected_steps"] == [0, 1, 3, 4]
    assert rep["d_cut"]["status"] == "incomplete" and rep["d_cut"]["n_steps"] == 4
    assert rep["e_failed"]["status"] == "failed"
    for name in ("b_nsw", "c_scf", "d_cut", "e_failed"):
        assert name in r.stderr
    # pymatgen agrees on the convergence flags it knows (final step only)
    assert _vasprun(root / "b_nsw" / "vasprun.xml").converged_ionic is False
    assert _vasprun(root / "c_scf" / "vasprun.xml").converged_electronic is False
    assert _vasprun(root / "a_ok" / "vasprun.xml").converged_electronic is True
    frames = read_frames(str(out))
    by_parent = {}
    for f in frames:
        by_parent.setdefault(f.info["parent_id"], []).append(f.info["vasp_step"])
    assert by_parent == {
        "cand-7": [0, 1, 2, 3, 4, 5],
        "b_nsw": [0, 1, 2, 3, 4, 5],
        "c_scf": [0, 1, 3, 4],
        "d_cut": [0, 1, 2, 3],
    }
    # --require-converged drops the unconverged and the unfinished run
    r = cli("collect", root, "--all-steps", "--require-converged", "-o", out)
    assert {f.info["parent_id"] for f in read_frames(str(out))} == {"cand-7", "c_scf"}
    # nothing readable at all: exit 1
    r = cli("collect", root / "e_failed", "-o", tmp_path / "none.extxyz")
    assert r.returncode == 1 and "nothing could be read" in r.stderr


@pytest.mark.slow
def test_collect_after_dft_select(tmp_path, trajectory, cli):
    """The folder layout of `dft-select --write-vasp` (folders.txt) is what collect reads back."""
    from cscli.dft.vasp import write_vasp_inputs

    parent, steps = trajectory
    rep = write_vasp_inputs([parent], str(tmp_path / "vasp"))
    write_vasprun(tmp_path / "vasp" / rep.folders[0] / "vasprun.xml", steps)
    r = cli("collect", tmp_path / "vasp", "--per-run", "2")
    assert r.returncode == 0, r.stderr
    ids = [line.split("id=")[1].split()[0] for line in r.stdout.splitlines() if " id=" in line]
    assert ids == ["cand-7-step000", "cand-7-step005"]
