"""label: GPAW (real PBE DFT, checked by finite differences), MLFF oracle, VASP settings."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import missing_prerequisite

from cscli.core.errors import UsageError
from cscli.core.frames import read_frames, write_frames
from cscli.dft.label import kpoint_mesh


def _gpaw_python():
    from cscli.dft.label import check_gpaw

    try:
        return check_gpaw("/usr/bin/python3")
    except UsageError as exc:
        missing_prerequisite(f"GPAW not available: {exc}")


@pytest.mark.parametrize("name", ["Li2S", "gamma-Li3PS4", "Li7P3S11"])
@pytest.mark.parametrize("density", [1.5, 4.0])
def test_kpoint_mesh_matches_ase(phase, name, density):
    from ase.calculators.calculator import kptdensity2monkhorstpack

    atoms = phase(name)
    assert kpoint_mesh(atoms, density) == list(kptdensity2monkhorstpack(atoms, kptdensity=density, even=False))


def test_kpoint_mesh_by_hand(phase):
    # gamma-Li3PS4 is orthorhombic, 6.1365 x 6.535 x 7.7085 Å: n_i = ceil(2 pi / a_i * 4)
    atoms = phase("gamma-Li3PS4")
    assert kpoint_mesh(atoms, 4.0) == [5, 4, 4]
    assert [int(np.ceil(2 * np.pi / a * 4.0)) for a in atoms.cell.lengths()] == [5, 4, 4]


def test_mp_mesh_equals_the_vasp_inputs(tmp_path, phase):
    """--reciprocal-density 64 gives GPAW the KPOINTS dft-select --write-vasp writes."""
    from pymatgen.io.vasp import Kpoints

    from cscli.dft.label import mp_kpoint_mesh
    from cscli.dft.vasp import write_vasp_inputs

    frames = [phase(n) for n in ("Li2S", "gamma-Li3PS4", "Li7P3S11")]
    rep = write_vasp_inputs(frames, str(tmp_path / "v"))
    for atoms, folder in zip(frames, rep.folders):
        assert mp_kpoint_mesh(atoms, 64) == list(Kpoints.from_file(tmp_path / "v" / folder / "KPOINTS").kpts[0])
    assert mp_kpoint_mesh(frames[1], 64) == [4, 3, 3]


@pytest.mark.slow
def test_gpaw_forces_match_finite_differences(tmp_path, phase, cli):
    """Li2S primitive (3 atoms), one Li displaced: GPAW's force on it equals -dE/dx from two more
    GPAW energies (central difference), forces sum to zero; resume skips finished frames."""
    _gpaw_python()
    base = phase("Li2S")
    base.positions[0] += [0.06, -0.03, 0.02]
    h = 0.01
    frames = []
    for tag, dx in (("x0", 0.0), ("xp", h), ("xm", -h)):
        a = base.copy()
        a.positions[0, 0] += dx
        a.info = {"id": f"li2s-{tag}", "energy": 123.0}  # a stale label must be replaced
        frames.append(a)
    src = tmp_path / "in.extxyz"
    write_frames(frames, str(src))
    out = tmp_path / "out.extxyz"
    args = (
        "label",
        src,
        "-o",
        out,
        "--ecut",
        "250",
        "--kpt-density",
        "1.5",
        "--work-dir",
        tmp_path / "gpaw",
        "--gpaw-opt",
        'convergence={"energy": 1e-7, "density": 1e-6, "eigenstates": 1e-9}',
    )
    r = cli(*args)
    assert r.returncode == 0, r.stderr
    res = {a.info["id"]: a for a in read_frames(str(out))}
    assert set(res) == {"li2s-x0", "li2s-xp", "li2s-xm"}
    a0 = res["li2s-x0"]
    assert a0.info["label_method"] == "dft-gpaw"
    settings = a0.info["label_settings"]
    settings = settings if isinstance(settings, dict) else __import__("json").loads(settings)
    assert settings["kpts"] == [3, 3, 3] and settings["ecut_eV"] == 250 and settings["xc"] == "PBE"
    e0 = a0.info["energy"]
    assert np.isfinite(e0) and -14 < e0 < -10 and e0 != 123.0  # about -3.9 eV/atom (GPAW PBE reference)
    f = a0.arrays["forces"]
    assert np.all(np.isfinite(f)) and np.abs(f).max() > 0.05
    assert np.allclose(f.sum(axis=0), 0.0, atol=0.02)  # translation invariance
    # forces are -dE/dx of the free energy (zero for an insulator's 0.05 eV smearing)
    fd = -(res["li2s-xp"].info["free_energy"] - res["li2s-xm"].info["free_energy"]) / (2 * h)
    assert fd == pytest.approx(f[0, 0], abs=0.01 + 0.02 * abs(f[0, 0]))
    s = np.asarray(a0.info["stress"])
    assert s.shape == (6,) and np.all(np.isfinite(s))
    assert (tmp_path / "gpaw" / "li2s-x0.gpaw.txt").exists()
    # resume: everything is done, GPAW is not run again
    r = cli(*args)
    assert r.returncode == 0 and "3 already done" in r.stderr
    assert len(read_frames(str(out))) == 3


@pytest.mark.slow
def test_gpaw_stress_matches_strain_derivative(tmp_path):
    """GPAW's stress (it becomes the training virial) equals (1/V) dF/dε of the free energy F,
    by central differences of two strain components: zz (normal) and yz (shear).

    bcc Li, primitive (1 atom), compressed to a = 3.30 Å (PBE a0 ≈ 3.43) and sheared by ε_yz = 0.03
    so that both components are non-zero; PW 300 eV, 6x6x6 k, 0.1 eV Fermi-Dirac (a metal), SCF to
    1e-7 eV. The strained cells keep the same k-mesh. Tolerance 1e-4 eV/Å³ (0.016 GPa, 0.7 % of
    σ_zz): measured differences 1.3e-5 (zz) and 3.4e-5 (yz) eV/Å³, from the O(h²) difference error,
    SCF noise (1e-6 eV on energy differences of ~5e-4 eV) and the Pulay stress of a fixed 300 eV
    cutoff, which the analytic stress leaves out; all three are an order of magnitude below 1e-4.
    """
    from ase.build import bulk

    from cscli.dft import label as lib

    _gpaw_python()
    settings = lib.GpawSettings(
        ecut=300, kpt_density=2.0, width=0.1, convergence={"energy": 1e-7, "density": 1e-6, "eigenstates": 1e-9}
    )
    labeller = lib.gpaw_labeller(settings, str(tmp_path / "gpaw"))
    base = bulk("Li", "bcc", a=3.30)
    shear = np.eye(3)
    shear[1, 2] = shear[2, 1] = 0.03
    base.set_cell(base.cell.array @ shear, scale_atoms=True)
    volume = base.get_volume()

    def labelled(eps, tag):
        atoms = base.copy()
        atoms.set_cell(base.cell.array @ (np.eye(3) + eps), scale_atoms=True)
        atoms.info["id"] = tag
        out = labeller(atoms)
        assert out.info["label_settings"]["kpts"] == [6, 6, 6]  # one k-mesh for every strain
        return out

    stress = np.asarray(labelled(np.zeros((3, 3)), "li-0").info["stress"])
    h = 0.004
    derivative = []
    for i, j in ((2, 2), (1, 2)):
        free = []
        for sign in (1, -1):
            eps = np.zeros((3, 3))
            eps[i, j] = eps[j, i] = sign * h  # symmetric strain: dF/dh = V (σ_ij + σ_ji) off the diagonal
            free.append(labelled(eps, f"li-{i}{j}{'p' if sign > 0 else 'm'}").info["free_energy"])
        derivative.append((free[0] - free[1]) / (2 * h) / (1 if i == j else 2) / volume)
    analytic = stress[[2, 3]]  # Voigt zz, yz (eV/Å³)
    assert np.all(np.abs(analytic) > 3e-3)  # both components are well above the tolerance
    np.testing.assert_allclose(analytic, derivative, rtol=0, atol=1e-4)


def test_missing_gpaw_skips_here_and_fails_under_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="GPAW not available"):
        missing_prerequisite("GPAW not available: test")
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="GPAW not available: test .CI provides it"):
        missing_prerequisite("GPAW not available: test")


def test_gpaw_failure_goes_to_failed(tmp_path, phase, cli):
    _gpaw_python()
    src = tmp_path / "in.extxyz"
    write_frames([phase("Li2S")], str(src))
    r = cli(
        "label",
        src,
        "-o",
        tmp_path / "out.extxyz",
        "--failed",
        tmp_path / "bad.extxyz",
        "--ecut",
        "200",
        "--kpt-density",
        "1",
        "--gpaw-opt",
        "no_such_keyword=1",
    )
    assert r.returncode == 0, r.stderr
    (bad,) = read_frames(str(tmp_path / "bad.extxyz"))
    assert "GPAW failed" in bad.info["error"] and "no_such_keyword" in bad.info["error"]


def test_gpaw_missing_is_a_usage_error(tmp_path, phase, cli):
    src = tmp_path / "in.extxyz"
    write_frames([phase("Li2S")], str(src))
    r = cli("label", src, "--gpaw-command", "/nonexistent/python3")
    assert r.returncode == 2 and "gpaw-data" in r.stderr


def test_vasp_needs_vasp(tmp_path, phase, cli):
    src = tmp_path / "in.extxyz"
    write_frames([phase("Li2S")], str(src))
    env = {"ASE_VASP_COMMAND": "", "VASP_COMMAND": "", "VASP_SCRIPT": ""}
    r = cli("label", src, "-c", "vasp", env=env)
    assert r.returncode == 2 and "ASE_VASP_COMMAND" in r.stderr


def test_vasp_parameters_as_written_by_ase(tmp_path, phase, monkeypatch):
    """The single-point INCAR/KPOINTS ASE's Vasp writes from our parameters (no VASP needed)."""
    from ase.calculators.vasp import Vasp
    from pymatgen.io.vasp import Incar

    from cscli.dft.label import vasp_parameters

    for sym in ("Li_sv", "P", "S"):  # ASE only locates POTCAR files to write the INCAR
        (tmp_path / "pp" / "potpaw_PBE" / sym).mkdir(parents=True)
        (tmp_path / "pp" / "potpaw_PBE" / sym / "POTCAR").write_text("placeholder\n")
    monkeypatch.setenv("VASP_PP_PATH", str(tmp_path / "pp"))
    atoms = phase("gamma-Li3PS4")
    params = vasp_parameters(atoms)
    calc = Vasp(directory=str(tmp_path), **params)
    calc.initialize(atoms)
    calc.write_incar(atoms, directory=str(tmp_path))
    calc.write_kpoints(atoms, directory=str(tmp_path))
    incar = Incar.from_file(tmp_path / "INCAR")
    assert incar["ENCUT"] == 520 and incar["EDIFF"] == pytest.approx(8e-4)
    assert incar["NSW"] == 0 and incar["IBRION"] == -1 and incar["ISMEAR"] == -5
    assert "EDIFFG" not in incar and incar["PREC"].lower() == "accurate"
    kp = (tmp_path / "KPOINTS").read_text().splitlines()
    assert kp[2].strip().lower().startswith("gamma") and kp[3].split() == ["4", "3", "3"]


@pytest.mark.slow
def test_mlff_oracle_labels_and_shards(tmp_path, phase, cli):
    """--calculator model: CHGNet numbers equal a direct CHGNet call; marked as an oracle."""
    pytest.importorskip("cscli.core.models")
    from chgnet.model.dynamics import CHGNetCalculator

    frames = []
    for name in ("Li2S", "Li3P", "gamma-Li3PS4"):
        a = phase(name)
        a.rattle(0.05, seed=1)
        frames.append(a)
    src = tmp_path / "in.extxyz"
    write_frames(frames, str(src))
    out = tmp_path / "out.extxyz"
    r = cli("label", src, "-c", "model", "-m", "chgnet", "--device", "cpu", "-o", out)
    assert r.returncode == 0, r.stderr
    outs = read_frames(str(out))
    assert [a.info["id"] for a in outs] == [a.info["id"] for a in frames]
    # shards split the ids without overlap (in-process: one model load)
    from cscli.core.stream import Shard, StreamOptions, run_stream
    from cscli.dft.label import model_labeller

    labeller = model_labeller("chgnet", "cpu")
    shard_ids = []
    for i in range(2):
        path = tmp_path / f"shard{i}.extxyz"
        opts = StreamOptions(output=str(path), shard=Shard(i, 2))
        run_stream((f.copy() for f in frames), labeller, opts)
        shard_ids.append({a.info["id"] for a in read_frames(str(path))} if path.stat().st_size else set())
    assert not shard_ids[0] & shard_ids[1]
    assert shard_ids[0] | shard_ids[1] == {a.info["id"] for a in frames}
    from importlib.metadata import version

    calc = CHGNetCalculator(use_device="cpu")
    for a in outs:
        assert a.info["label_method"].startswith("mlff-oracle:chgnet")
        assert a.info["model"].startswith("chgnet") and "label(mlff-oracle:chgnet" in a.info["history"]
        assert a.info["model_version"] == f"chgnet {version('chgnet')}"
        ref = next(f for f in frames if f.info["id"] == a.info["id"]).copy()
        ref.calc = calc
        assert a.info["energy"] == pytest.approx(ref.get_potential_energy(), abs=1e-4)
        assert np.allclose(a.arrays["forces"], ref.get_forces(), atol=1e-4)
        assert np.allclose(a.info["stress"], ref.get_stress(voigt=True), atol=1e-5)
