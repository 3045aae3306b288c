"""evaluate: error metrics equal direct numpy on the same predictions; CHGNet on NequIP LiPS."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cscli.learn.evaluate import composition_key, error_metrics, evaluate_model

PETMAD = "lips_dft_frames/petmad_workshop_Li3PS4/petmad_workshop_Li3PS4_val.extxyz"
LI2S = "lips_dft_frames/lips20_egraffbench/lips20_Li2S_3000K_every50.extxyz"
NEQUIP = "lips_dft_frames/lips_nequip_batzner2022/lips_val_every10_100frames.extxyz"


def _lj():
    from ase.calculators.lj import LennardJones

    return LennardJones(sigma=2.2, epsilon=0.02, rc=5.0, smooth=True)


@pytest.fixture(scope="module")
def labelled(shared_data):
    """Real DFT frames of two compositions; stress labels from a second LJ; some labels removed."""
    from ase.calculators.lj import LennardJones

    from cscli.core.frames import read_frames

    frames = read_frames(str(shared_data / PETMAD))[:4] + read_frames(str(shared_data / LI2S))[:2]
    other = LennardJones(sigma=2.0, epsilon=0.03, rc=5.0, smooth=True)
    for i, atoms in enumerate(frames):
        if i % 2 == 0:
            b = atoms.copy()
            b.calc = other
            atoms.info["stress"] = b.get_stress(voigt=True)
    del frames[1].info["energy"]
    del frames[4].arrays["forces"]
    bare = frames[0].copy()
    bare.info.pop("energy")
    bare.info.pop("stress")
    del bare.arrays["forces"]
    bare.info["id"] = "nolabels"
    return frames + [bare]


def test_metrics_equal_direct_numpy(labelled):
    from ase.units import GPa

    calc = _lj()
    report = evaluate_model(calc, iter(labelled), parity=True)  # a generator: evaluated streaming
    # independent predictions and errors, straight from ASE and numpy
    groups: dict[str, dict[str, list]] = {}
    for atoms in labelled[:-1]:
        b = atoms.copy()
        b.calc = calc
        g = groups.setdefault(composition_key(atoms), {"e": [], "f": [], "s": []})
        n = len(atoms)
        if "energy" in atoms.info:
            g["e"].append(b.get_potential_energy() / n - atoms.info["energy"] / n)
        if "forces" in atoms.arrays:
            g["f"].append((b.get_forces() - atoms.arrays["forces"]).ravel())
        if "stress" in atoms.info:
            g["s"].append((b.get_stress(voigt=True) - atoms.info["stress"]) / GPa)
    assert set(report["per_composition"]) == {"Li3PS4", "Li2S"} == set(groups)

    def check(rep, e, f, s):
        for key, errs in (("energy_per_atom", e), ("forces", f), ("stress", s)):
            arr = np.concatenate([np.ravel(x) for x in errs])
            m = rep[key]
            assert m["n"] == arr.size
            assert m["rmse"] == pytest.approx(np.sqrt(np.mean(arr**2)), rel=1e-10)
            assert m["mae"] == pytest.approx(np.mean(np.abs(arr)), rel=1e-10)
            assert m["mean_error"] == pytest.approx(np.mean(arr), rel=1e-9, abs=1e-14)
            assert m["std_error"] == pytest.approx(np.std(arr), rel=1e-6, abs=1e-12)

    for name, g in groups.items():
        check(report["per_composition"][name], g["e"], g["f"], g["s"])
    check(report["overall"], *[sum((g[k] for g in groups.values()), []) for k in "efs"])
    assert report["frames_read"] == 7 and report["frames_evaluated"] == 6
    assert report["skipped"] == {"no_labels": 1, "energy": 2, "forces": 2, "stress": 4}
    assert report["overall"]["stress"]["n"] == 6 * 3
    assert len(report["parity"]["energy_per_atom"]["label"]) == 5
    assert error_metrics([1.0, 2.0], [0.0, 0.0])["rmse"] == pytest.approx(np.sqrt(2.5))


def test_parity_sample_is_capped(labelled, tmp_path):
    from cscli.learn.evaluate import plot_parity

    report = evaluate_model(_lj(), labelled, parity=True, parity_sample=100)
    f = report["parity"]["forces"]
    assert len(f["label"]) == 100 and f["sampled_from"] == report["overall"]["forces"]["n"]
    # every sampled pair is a real (label, prediction) pair of the stream
    all_labels = np.concatenate([a.arrays["forces"].ravel() for a in labelled if "forces" in a.arrays])
    assert np.all(np.isin(f["label"], all_labels))
    plot_parity(report, str(tmp_path / "p.png"))
    assert (tmp_path / "p.png").stat().st_size > 10_000


@pytest.mark.slow
def test_chgnet_errors_on_nequip_lips_equal_a_direct_chgnet_computation(shared_data):
    """CHGNet 0.3.0 on NequIP LiPS validation frames 0-2: the report's errors equal those computed
    here from CHGNet's own ASE calculator (chgnet.model.dynamics.CHGNetCalculator, not cscli's
    loader) and numpy. (Force RMSE measured: 0.280 eV/Å.)"""
    from chgnet.model.dynamics import CHGNetCalculator

    from cscli.core.frames import iter_frames, read_frames
    from cscli.core.models import load_calculator

    frames = read_frames(str(shared_data / NEQUIP))[:3]
    report = evaluate_model(
        load_calculator("chgnet", device="cpu"),
        (a for i, a in enumerate(iter_frames(str(shared_data / NEQUIP))) if i < 3),
    )
    direct = CHGNetCalculator(use_device="cpu")
    df, de = [], []
    for atoms in frames:
        b = atoms.copy()
        b.calc = direct
        df.append((b.get_forces() - atoms.arrays["forces"]).ravel())
        de.append((b.get_potential_energy() - atoms.info["energy"]) / len(atoms))
    df, de = np.concatenate(df), np.array(de)
    f, e = report["overall"]["forces"], report["overall"]["energy_per_atom"]
    assert f["n"] == df.size == 3 * 83 * 3 and e["n"] == 3
    np.testing.assert_allclose([f["rmse"], f["mae"]], [np.sqrt(np.mean(df**2)), np.mean(np.abs(df))], rtol=1e-5)
    np.testing.assert_allclose(
        [e["rmse"], e["mean_error"], e["std_error"]],
        [np.sqrt(np.mean(de**2)), np.mean(de), np.std(de)],
        rtol=1e-4,
        atol=1e-6,
    )
    assert list(report["per_composition"]) == ["Li27P12S44"]
    # energies: a constant offset vs VASP-PBE dominates; the offset-free spread is small
    assert np.std(de) < 0.05 < np.sqrt(np.mean(de**2))


@pytest.mark.slow
def test_cli_evaluate(cli, shared_data, tmp_path):
    png = tmp_path / "parity.png"
    src = tmp_path / "two.extxyz"
    from cscli.core.frames import read_frames, write_frames

    write_frames(read_frames(str(shared_data / PETMAD))[:2], str(src))
    r = cli("evaluate", "-m", "chgnet", src, "--plot", png)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["frames_evaluated"] == 2 and rep["overall"]["forces"]["n"] > 0
    assert "Li3PS4" in rep["per_composition"] and "overall" in r.stderr
    assert png.stat().st_size > 10_000
    nolab = tmp_path / "nolab.extxyz"
    a = read_frames(str(src))[0]
    a.info.pop("energy")
    del a.arrays["forces"]
    write_frames([a], str(nolab))
    bad = cli("evaluate", "-m", "chgnet", nolab)
    assert bad.returncode == 1 and "has labels" in bad.stderr
