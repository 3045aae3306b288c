"""Model names and files resolve to the right backend, offline, with clear errors."""

import glob
import os
from pathlib import Path

import pytest

from cscli.core.errors import ModelError, UsageError
from cscli.core.models import DEFAULT_MODEL, describe_models, detect_backend, resolve_model


def test_named_models_resolve_without_loading():
    assert resolve_model("chgnet").backend == "chgnet"
    assert resolve_model(None).name == DEFAULT_MODEL
    spec = resolve_model("7net-mf-0")
    assert (spec.backend, spec.head, spec.name) == ("sevennet", "PBE", "7net-mf-0:PBE")
    assert resolve_model("7net-l3i5").head is None
    with pytest.raises(UsageError, match="unknown model"):
        resolve_model("gpt-5")


def test_shipped_weight_files_are_detected_by_content():
    import chgnet
    import sevenn._const

    assert detect_backend(Path(sevenn._const.SEVENNET_0_11Jul2024)) == "sevennet"
    chgnet_file = glob.glob(os.path.join(os.path.dirname(chgnet.__file__), "pretrained/0.3.0/*.pth.tar"))[0]
    assert detect_backend(Path(chgnet_file)) == "chgnet"
    assert resolve_model(f"sevennet:{sevenn._const.SEVENNET_l3i5}").backend == "sevennet"


def test_downloaded_weights_are_found_in_the_model_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CSCLI_MODEL_DIR", str(tmp_path / "models"))
    with pytest.raises(ModelError, match="not found"):
        resolve_model("mattersim-5m")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "mattersim-v1.0.0-5M.pth").write_bytes(b"x")
    (tmp_path / "models" / "DPA-3.1-3M.pt").write_bytes(b"x")
    assert resolve_model("mattersim-5m").path == str(tmp_path / "models" / "mattersim-v1.0.0-5M.pth")
    spec = resolve_model("dpa3:MP_traj_v024_alldata_mixu")
    assert spec.backend == "deepmd" and spec.head == "MP_traj_v024_alldata_mixu"
    rows = {r["name"]: r for r in describe_models()}
    assert rows["mattersim-5m"]["weights"].endswith("mattersim-v1.0.0-5M.pth")
    assert rows[DEFAULT_MODEL]["default"] and rows[DEFAULT_MODEL]["available"]


def test_d3_suffix_resolves_and_rejects_unknown_corrections():
    spec = resolve_model("7net-mf-0:PBE+D3")
    assert (spec.backend, spec.head, spec.name, spec.dispersion) == ("sevennet", "PBE", "7net-mf-0:PBE+d3", "d3bj")
    assert resolve_model("7net-0").dispersion is None
    with pytest.raises(UsageError, match=r"unknown correction '\+d4'"):
        resolve_model("7net-0+d4")
    with pytest.raises(UsageError, match="one dispersion correction"):
        resolve_model("7net-0+d3+d3")


def test_d3_adds_two_body_bj_dispersion_to_the_model():
    """7net-0+d3 = 7net-0 + D3(BJ)-PBE without the three-body term, the latter computed here from
    simple-dftd3's own API in atomic units (not through its ASE calculator)."""
    import numpy as np
    from ase.units import Bohr, Hartree
    from dftd3.interface import DispersionModel, RationalDampingParam
    from numpy.testing import assert_allclose

    from cscli.core.datafiles import reference_phases_path
    from cscli.core.frames import read_frames
    from cscli.core.models import load_calculator

    sulfur = next(a for a in read_frames(reference_phases_path()) if a.info["phase"] == "S")
    with_d3, plain = sulfur.copy(), sulfur.copy()
    with_d3.calc = load_calculator("7net-0+d3", "cpu")
    plain.calc = load_calculator("7net-0", "cpu")
    assert with_d3.calc.cscli_model == "7net-0+d3" and "dftd3" in with_d3.calc.cscli_model_version

    model = DispersionModel(sulfur.numbers, sulfur.positions / Bohr, sulfur.cell[:] / Bohr, sulfur.pbc)
    two_body = model.get_dispersion(RationalDampingParam(method="pbe", atm=False), grad=True)
    three_body = model.get_dispersion(RationalDampingParam(method="pbe", atm=True), grad=False)
    disp_energy = two_body["energy"] * Hartree
    assert abs(three_body["energy"] * Hartree - disp_energy) > 1e-3  # the ATM term is measurable: it is off
    assert -0.2 < disp_energy / len(sulfur) < -0.1  # eV/atom: dispersion binds the S8 crystal

    assert_allclose(with_d3.get_potential_energy(), plain.get_potential_energy() + disp_energy, atol=1e-5)
    assert_allclose(with_d3.get_forces(), plain.get_forces() - two_body["gradient"] * Hartree / Bohr, atol=1e-5)
    virial = two_body["virial"] * Hartree / sulfur.get_volume()  # eV/Å³; ASE stress = virial / V (Voigt below)
    disp_stress = with_d3.get_stress(voigt=False) - plain.get_stress(voigt=False)
    assert_allclose(disp_stress, virial, atol=1e-6)
    assert np.trace(disp_stress) > 0  # attraction: the dispersion pressure −tr(σ)/3 is negative
