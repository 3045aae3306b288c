"""cscli qha: the QHA layer against phonopy's own test arrays, the per-frame pipeline against a
direct phonopy + ASE computation, and the Gibbs hull against pymatgen built by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
from numpy.testing import assert_allclose

pytest.importorskip("phonopy")

EV_A3_TO_GPA = 160.21766208


# ----------------------------------------------------------------------------- QHA layer: phonopy's Si test


@pytest.fixture(scope="module")
def si(shared_data):
    folder = shared_data / "phonopy_qha" / "Si-QHA-test"
    ref = json.loads((folder / "phonopy_test_QHA_Si_reference.json").read_text())["data"]
    cv, entropy, fe = np.loadtxt(folder / "tprop-Si.dat").reshape(3, 211, 11)
    return ref, cv, entropy, fe


def test_fit_qha_reproduces_phonopy_si_arrays_at_0_and_5_gpa(si):
    from cscli.props.qha import fit_qha

    ref, cv, entropy, fe = si
    ev = np.array(ref["ev_vs_v_Si"])
    fit = fit_qha(ev[:, 0], ev[:, 1], np.arange(0, 2101, 10, dtype=float), fe, cv, entropy,
                  pressures=[0.0, 5.0], eos="vinet", t_max=1000)
    assert_allclose(fit.temperatures, np.arange(0, 1001, 10))
    t_idx = list(range(0, 101, 10))
    for row in (0, 1):  # P = 0 and 5 GPa: both from the same phonon arrays
        assert_allclose(fit.static_bulk_modulus[row], [0.5559133052877888, 0.6865238809710272][row], atol=1e-7)
        assert_allclose(fit.gibbs[row, t_idx], ref["gibbs_temperature_Si"][row], atol=1e-5)
        assert_allclose(fit.volume[row, t_idx], ref["volume_temperature_Si"][row], atol=1e-5)
        assert_allclose(fit.helmholtz_volume[row, t_idx, 0], ref["helmholtz_volume_Si"][row], atol=1e-5)
        assert_allclose(fit.bulk_modulus[row, t_idx], ref["bulkmodulus_temperature_Si"][row], atol=1e-5)
        assert_allclose(fit.heat_capacity_p_polyfit[row, t_idx], ref["cp_temperature_polyfit_Si"][row], atol=1e-5)
        assert_allclose(fit.gruneisen[row, t_idx], ref["gruneisen_temperature_Si"][row], atol=1e-5)
        # phonopy's own test tolerances for the finite-difference quantities
        assert_allclose(fit.thermal_expansion[row, t_idx] * 1e6, ref["thermal_expansion_Si"][row], atol=0.01)
        assert_allclose(fit.heat_capacity_p[row, t_idx], ref["cp_temperature_Si"][row], atol=0.02)
    # the pV term: at 5 GPa G = min_V[F + pV] is higher and V smaller at every T
    assert np.all(fit.gibbs[1] > fit.gibbs[0]) and np.all(fit.volume[1] < fit.volume[0])


def _read_thermal_yaml(path):
    import yaml

    data = yaml.safe_load(path.read_text())
    rows = data["thermal_properties"]
    return (np.array([r["temperature"] for r in rows]), np.array([r["free_energy"] for r in rows]),
            np.array([r["entropy"] for r in rows]), np.array([r["heat_capacity"] for r in rows]))


@pytest.mark.parametrize("eos", ["vinet", "birch_murnaghan", "murnaghan"])
def test_fit_qha_reproduces_phonopy_al_example(shared_data, eos):
    from cscli.props.qha import fit_qha

    folder = shared_data / "phonopy_qha" / "Al-QHA"
    ref = json.loads((folder / "Al_QHA_reference_computed_phonopy.json").read_text())["results"][eos]
    ev = np.loadtxt(folder / "e-v.dat")
    columns = [_read_thermal_yaml(folder / f"thermal_properties.yaml-{i}") for i in range(-5, 6)]
    temps = columns[0][0]
    fe, s, cv = (np.array([c[k] for c in columns]).T for k in (1, 2, 3))
    fit = fit_qha(ev[:, 0], ev[:, 1], temps, fe, cv, s, pressures=[0.0], eos=eos, t_max=400)
    idx = [int(np.argmin(np.abs(fit.temperatures - t))) for t in ref["T_K"]]
    assert_allclose(fit.gibbs[0, idx], ref["gibbs_eV"], atol=1e-5)
    assert_allclose(fit.volume[0, idx], ref["volume_A3"], atol=1e-5)
    assert_allclose(fit.bulk_modulus[0, idx], ref["bulk_modulus_GPa"], atol=1e-4)
    assert_allclose(fit.thermal_expansion[0, idx] * 1e6, ref["thermal_expansion_1e-6_per_K"], atol=1e-3)
    assert_allclose(fit.static_bulk_modulus[0], ref["static_B0_eV_per_A3"], rtol=1e-6)


def test_parse_grid_and_supercell():
    from cscli.core.errors import UsageError
    from cscli.props.qha import parse_grid, supercell_matrix

    assert_allclose(parse_grid("0:600:10", "--temperatures"), np.arange(0, 601, 10))
    assert_allclose(parse_grid("0.95:1.05:0.025", "--scales"), [0.95, 0.975, 1.0, 1.025, 1.05])
    assert_allclose(parse_grid("2,0,0.5,1", "--pressures"), [0, 0.5, 1, 2])
    for bad in ("1:0:0.1", "a,b", "0:1", "0:1:0"):
        with pytest.raises(UsageError):
            parse_grid(bad, "--scales")
    cell = np.array([[3.0, 0, 0], [0, 5.0, 0], [1.0, 0, 7.0]])
    m = supercell_matrix(cell, 12.0)
    lengths = np.linalg.norm(m @ cell, axis=1)
    assert np.all(lengths >= 12.0) and np.all(lengths < 12.0 + np.linalg.norm(cell, axis=1))
    assert_allclose(np.diag(m), [4, 3, 2])
