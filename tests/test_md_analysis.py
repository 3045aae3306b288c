"""md-screen analysis: numbers against a synthetic trajectory of known D, a brute-force MSD,
scipy's constants, pymatgen-analysis-diffusion's DiffusionAnalyzer, and the published LGPS figures."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from cscli.props.diffusion import analyze, msd_all_origins, nernst_einstein, unwrap

D_TRUE = 1.0e-5  # cm²/s  (= 1e-4 Å²/fs)
CELL = np.array([[12.0, 0.0, 0.0], [2.0, 11.5, 0.0], [1.0, 1.5, 12.5]])  # triclinic on purpose


def synthetic(seed=0, n_li=192, n_p=16, n_s=64, n_frames=1500, dt=20.0, drift=True, breathing=0.0):
    """Li random walks of diffusivity D_TRUE inside a P–S framework that only vibrates; the whole
    content drifts (the thermostat's centre-of-mass walk); positions wrapped into the cell.
    ``breathing``: relative amplitude of an NPT-like isotropic cell oscillation (framework atoms keep
    their fractional coordinates). Returns symbols, wrapped positions, cells, true Li paths, dt."""
    rng = np.random.default_rng(seed)
    symbols = ["Li"] * n_li + ["P"] * n_p + ["S"] * n_s
    n = len(symbols)
    scale = 1.0 + breathing * np.sin(np.arange(n_frames) * 2 * np.pi / 97.0)
    cells = CELL[None] * scale[:, None, None]
    step_sd = np.sqrt(2 * D_TRUE * 10.0 * dt)  # Å per frame per axis (1 cm²/s = 10 Å²/fs)
    li = rng.uniform(0, 1, (n_li, 3)) @ CELL + np.cumsum(rng.normal(0, step_sd, (n_frames, n_li, 3)), axis=0)
    host_frac = rng.uniform(0, 1, (n - n_li, 3))
    host = np.einsum("nj,fjk->fnk", host_frac, cells) + rng.normal(0, 0.1, (n_frames, n - n_li, 3))
    li_vib = li + rng.normal(0, 0.1, li.shape)
    pos = np.concatenate([li_vib, host], axis=1)
    if drift:
        pos += (np.arange(n_frames)[:, None] * np.array([3e-2, -2e-2, 1e-2]))[:, None, :] * dt / 20
    frac = np.einsum("fnj,fjk->fnk", pos, np.linalg.inv(cells)) % 1.0
    wrapped = np.einsum("fnj,fjk->fnk", frac, cells)
    return symbols, wrapped, cells, pos, dt


@pytest.fixture(scope="module")
def traj():
    return synthetic()


def test_unwrap_recovers_paths(traj):
    symbols, wrapped, cells, true, dt = traj
    assert np.abs(wrapped - true).max() > 5  # wrapping really happened
    paths = unwrap(wrapped, cells)
    assert_allclose(paths[0], wrapped[0])
    assert_allclose(paths - paths[0], true - true[0], atol=1e-9)


def test_msd_fft_equals_direct_average_over_origins():
    rng = np.random.default_rng(3)
    x = np.cumsum(rng.normal(size=(57, 4, 3)), axis=0)
    direct = np.array(
        [[np.mean(np.sum((x[m:, i] - x[: len(x) - m, i]) ** 2, axis=1)) for m in range(len(x))] for i in range(4)]
    )
    assert_allclose(msd_all_origins(x), direct, rtol=1e-9, atol=1e-9)


def test_known_diffusivity_framework_zero_and_sigma(traj):
    import scipy.constants as c

    symbols, wrapped, cells, _, dt = traj
    r = analyze(symbols, wrapped, cells, dt, temperature=700.0)
    assert_allclose(r.d("Li"), D_TRUE, rtol=0.05)
    for el in ("P", "S"):
        assert abs(r.d(el)) < 2e-8  # 500× below D_Li: a vibrating framework does not diffuse
    # the paper's endpoint formula (one origin over the whole window) is noisier: 20 %
    assert_allclose(r.elements["Li"].d_endpoint, D_TRUE, rtol=0.2)
    # σ = n e² D / (k_B T), written out here in SI from scipy's constants
    n = 192 / (abs(np.linalg.det(CELL)) * 1e-30)
    sigma_si = n * c.e**2 * (r.d("Li") * 1e-4) / (c.k * 700.0)
    assert_allclose(r.sigma, sigma_si * 1e3 / 1e2, rtol=1e-10)  # S/m → mS/cm
    assert_allclose(r.sigma_err, r.sigma * r.elements["Li"].d_err / r.d("Li"), rtol=1e-10)
    # the standard error is a real spread, and the truth lies within 3 of them
    assert 0 < r.elements["Li"].d_err < 0.5 * D_TRUE
    assert abs(r.d("Li") - D_TRUE) < 3 * r.elements["Li"].d_err


def test_drift_removed_exactly():
    s1, w1, c1, _, dt = synthetic(seed=1, drift=True)
    s2, w2, c2, _, _ = synthetic(seed=1, drift=False)
    with_drift = analyze(s1, w1, c1, dt, 700.0)
    without = analyze(s2, w2, c2, dt, 700.0)
    assert_allclose(with_drift.d("Li"), without.d("Li"), rtol=1e-3)
    # and the drift is not small: left in, it would add its ballistic MSD
    from cscli.props.diffusion import remove_drift

    paths = unwrap(w1, c1)
    _, drift = remove_drift(paths, np.arange(192, len(s1)))
    assert np.linalg.norm(drift[-1]) > 50  # Å over the run; ~30 Å² of ballistic MSD at a 3-ps lag
    left_in = analyze(s1, w1, c1, dt, 700.0, drift=False)
    assert left_in.d("Li") > 3 * D_TRUE


def test_breathing_cell_npt_like():
    symbols, wrapped, cells, _, dt = synthetic(seed=2, breathing=0.02)
    r = analyze(symbols, wrapped, cells, dt, 700.0)
    assert_allclose(r.d("Li"), D_TRUE, rtol=0.05)
    assert abs(r.d("S")) < 2e-8
    assert_allclose(r.volume, np.mean(np.abs(np.linalg.det(cells))), rtol=1e-12)


def test_nernst_einstein_units():
    # 1 ion in 1000 Å³, D = 1e-5 cm²/s, 300 K: n e² D/(kT) = 1e27 · (1.602e-19)² · 1e-9 / 4.142e-21 S/m
    expected = 1e27 * 1.602176634e-19**2 * 1e-9 / (1.380649e-23 * 300) * 10
    assert_allclose(nernst_einstein(1, 1000.0, 1e-5, 300.0), expected, rtol=1e-12)


def test_bad_inputs():
    with pytest.raises(ValueError, match="need ≥ 3"):
        analyze(["Li"], np.zeros((2, 1, 3)), CELL, 2.0, 700)
    with pytest.raises(ValueError, match="positive"):
        analyze(["Li"], np.zeros((5, 1, 3)), CELL, 0.0, 700)


def _da(symbols, wrapped, cells, dt, temperature, **kw):
    pytest.importorskip("pymatgen.analysis.diffusion", reason="pymatgen-analysis-diffusion (cscli[md]) not installed")
    from pymatgen.analysis.diffusion.analyzer import DiffusionAnalyzer
    from pymatgen.core import Lattice, Structure

    structures = [Structure(Lattice(c), symbols, p, coords_are_cartesian=True) for p, c in zip(wrapped, cells)]
    return DiffusionAnalyzer.from_structures(structures, "Li", temperature, dt, 1, **kw)


def test_agrees_with_diffusion_analyzer_on_synthetic():
    """Same trajectory, same window (1 ps to DA's min_obs lag), same 1/t weighting: DA's "max".
    Tolerance 1e-6: both are the same least-squares problem; only float summation order differs."""
    symbols, wrapped, cells, _, dt = synthetic(seed=5, n_li=48, n_p=8, n_s=32, n_frames=500)
    da = _da(symbols, wrapped, cells, dt, 700.0, smoothed="max")
    r = analyze(symbols, wrapped, cells, dt, 700.0, fit_end_fs="max")
    assert_allclose(r.d("Li"), da.diffusivity, rtol=1e-6)
    assert_allclose(r.sigma, da.conductivity, rtol=1e-6)


def test_lgps_aimd_reproduces_published_max_estimator(shared_data):
    """pymatgen-analysis-diffusion's LGPS 600 K AIMD test run: D = 1.16084e-6 cm²/s and σ = 74.1654
    mS/cm for smoothed="max" (their test_analyzer.py). The extxyz is the run wrapped back into the
    cell, so positions carry ~1e-6 Å rounding: 1e-3 relative tolerance."""
    from ase.io import read

    frames = read(shared_data / "md_reference" / "LGPS_600K_AIMD_pymatgen-diffusion-test_derived.extxyz", ":")
    pos = np.array([a.positions for a in frames])
    r = analyze(frames[0].get_chemical_symbols(), pos, frames[0].cell.array, 20.0, 600.0, fit_end_fs="max")
    assert_allclose(r.d("Li"), 1.16084e-06, rtol=1e-3)
    assert_allclose(r.sigma, 74.1654, rtol=1e-3)
    assert_allclose([r.fit_start_fs, r.fit_end_fs], [1000.0, 13300.0])
