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
    fit = fit_qha(
        ev[:, 0],
        ev[:, 1],
        np.arange(0, 2101, 10, dtype=float),
        fe,
        cv,
        entropy,
        pressures=[0.0, 5.0],
        eos="vinet",
        t_max=1000,
    )
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
    # the pV term: dG/dp = V and V falls with p, so G(5 GPa) - G(0) lies between 5 GPa x V(5 GPa)
    # and 5 GPa x V(0) at every T: low-density states pay more
    rise = fit.gibbs[1] - fit.gibbs[0]
    assert np.all(rise > 5.0 * fit.volume[1] / EV_A3_TO_GPA) and np.all(rise < 5.0 * fit.volume[0] / EV_A3_TO_GPA)


@pytest.fixture(scope="module")
def al(shared_data):
    """phonopy's Al-QHA example: e-v.dat and the 11 thermal_properties.yaml files ([T, V] arrays)."""
    import yaml

    folder = shared_data / "phonopy_qha" / "Al-QHA"
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    columns = []
    for i in range(-5, 6):
        rows = yaml.load((folder / f"thermal_properties.yaml-{i}").read_text(), Loader=loader)["thermal_properties"]
        columns.append([[r[k] for r in rows] for k in ("temperature", "free_energy", "entropy", "heat_capacity")])
    columns = np.array(columns)  # [V, quantity, T]
    results = json.loads((folder / "Al_QHA_reference_computed_phonopy.json").read_text())["results"]
    return np.loadtxt(folder / "e-v.dat"), columns[0, 0], columns[:, 1].T, columns[:, 2].T, columns[:, 3].T, results


@pytest.mark.parametrize("eos", ["vinet", "birch_murnaghan", "murnaghan"])
def test_fit_qha_reproduces_phonopy_al_example(al, eos):
    from cscli.props.qha import fit_qha

    ev, temps, fe, s, cv, results = al
    ref = results[eos]
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


# ----------------------------------------------------------------------------- end to end with a shipped model

E2E_SCALES = (0.97, 0.985, 1.0, 1.015, 1.03)
E2E_MESH = (7, 7, 7)
E2E_MIN_LENGTH = 7.0  # Å: a 2x2x2 supercell of the 3-atom Li2S primitive cell (24 atoms)


def li2s_primitive():
    from ase.spacegroup import crystal

    atoms = crystal(
        ["S", "Li"],
        [(0, 0, 0), (0.25, 0.25, 0.25)],
        spacegroup=225,
        cellpar=[5.70, 5.70, 5.70, 90, 90, 90],
        primitive_cell=True,
    )
    atoms.info["id"] = "li2s"
    return atoms


def direct_phonopy_gibbs(atoms, model, temperatures, pressures):
    """G(T, p) per atom written out with ASE and phonopy's own run_qha: scale, relax at fixed volume,
    displace, forces, force constants, run_qha."""
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE
    from phonopy import Phonopy, run_qha
    from phonopy.structure.atoms import PhonopyAtoms

    from cscli.core.models import load_calculator

    calc = load_calculator(model, "cpu")
    phonopys, energies = [], []
    for s in E2E_SCALES:
        work = atoms.copy()
        work.set_cell(np.array(atoms.cell) * s, scale_atoms=True)
        work.calc = calc
        FIRE(FrechetCellFilter(work, constant_volume=True), logfile=None).run(fmax=0.001, steps=200)
        energies.append(work.get_potential_energy())
        unit = PhonopyAtoms(
            symbols=work.get_chemical_symbols(), cell=np.array(work.cell), scaled_positions=work.get_scaled_positions()
        )
        lengths = np.linalg.norm(np.array(work.cell), axis=1)
        phonon = Phonopy(
            unit, supercell_matrix=np.diag(np.ceil(E2E_MIN_LENGTH / lengths).astype(int)), primitive_matrix="P"
        )
        phonon.generate_displacements(distance=0.01)
        forces = []
        for sc in phonon.supercells_with_displacements:
            from ase import Atoms

            disp = Atoms(sc.symbols, cell=sc.cell, scaled_positions=sc.scaled_positions, pbc=True, calculator=calc)
            forces.append(disp.get_forces())
        phonon.forces = np.array(forces)
        phonon.produce_force_constants()
        phonopys.append(phonon)
    temps = np.append(temperatures, temperatures[-1] + (temperatures[-1] - temperatures[-2]))
    rows = []
    for p in pressures:
        result = run_qha(
            phonopys,
            temps,
            internal_energies=energies,
            mesh=E2E_MESH,
            pressure=p,
            eos="vinet",
            exclude_gamma_acoustic=True,  # as cscli: the acoustic modes at Gamma are zero, not noise
        )
        rows.append(np.asarray(result.gibbs_free_energies) / len(atoms))
    return np.array(rows).T  # [T][p]


@pytest.mark.slow
def test_cli_qha_matches_direct_phonopy_ase(tmp_path, cli):
    from ase.io import write

    from cscli.core.frames import info_json, read_frames

    src = tmp_path / "li2s.extxyz"
    write(src, li2s_primitive(), format="extxyz")
    out = tmp_path / "qha.extxyz"
    res = cli(
        "qha",
        src,
        "-o",
        out,
        "--model",
        "7net-0",
        "--device",
        "cpu",
        "--no-prerelax",
        "--scales",
        ",".join(map(str, E2E_SCALES)),
        "--mesh",
        ",".join(map(str, E2E_MESH)),
        "--min-length",
        E2E_MIN_LENGTH,
        "--temperatures",
        "0:300:50",
        "--pressures",
        "0,2",
        "--steps",
        200,
        "--plot-dir",
        tmp_path / "plots",
        "-q",
    )
    assert res.returncode == 0, res.stderr
    (frame,) = read_frames(str(out))
    gibbs = np.array(info_json(frame, "qha_gibbs_per_atom"))
    temps = np.array(info_json(frame, "qha_temperatures"))
    assert_allclose(temps, np.arange(0, 301, 50))
    assert_allclose(info_json(frame, "qha_pressures"), [0, 2])
    direct = direct_phonopy_gibbs(li2s_primitive(), "7net-0", temps, [0.0, 2.0])
    assert_allclose(gibbs, direct, atol=1e-3)  # 1 meV/atom
    alpha = np.array(info_json(frame, "qha_thermal_expansion"))
    assert np.all(alpha[2:, 0] > 0)  # Li2S expands on heating
    volume = np.array(info_json(frame, "qha_volume_per_atom"))
    assert np.all(volume[:, 1] < volume[:, 0])  # and shrinks under 2 GPa
    assert not frame.info["qha_imaginary"]
    assert frame.info["model"] == "7net-0"
    assert (tmp_path / "plots" / "li2s.png").stat().st_size > 10_000
    # resume: the per-volume force sets are cached; a second run into a new file reuses them
    work = tmp_path / "qha.qha-work"
    assert len(list(work.glob("*/scale-*.json"))) == len(E2E_SCALES)


# ----------------------------------------------------------------------------- Gibbs hulls: hull --at

GRID_T = [0.0, 300.0, 600.0]
GRID_P = [0.0, 1.0, 2.0]


def gibbs_model(energy_per_atom, volume_per_atom, t, p):
    """A G(T, p) per atom linear in T and p: static E + pV, minus T·s with s growing with V/atom
    (open structures vibrate more). Bilinear interpolation reproduces it exactly."""
    return energy_per_atom + p * volume_per_atom / EV_A3_TO_GPA - t * 1e-4 * volume_per_atom / 20.0


HULL_PHASES = (
    "Li",
    "P",
    "S",
    "Li2S",
    "Li3P",
    "P4S3",
    "P2S5",
    "gamma-Li3PS4",
    "beta-Li3PS4",
    "Li4P2S6",
    "Li2P2S6",
)  # the small cells of the 16 (the 42-125-atom ones only cost time here)


@pytest.fixture(scope="module")
def gibbs_phases(phase):
    """Reference phases with 7net-0 single-point energies and qha keys on a 3x3 (T, p) grid."""
    from cscli.core.models import load_calculator

    calc = load_calculator("7net-0", "cpu")
    frames = []
    for name in HULL_PHASES:
        atoms = phase(name)
        atoms.calc = calc
        e, v = atoms.get_potential_energy() / len(atoms), atoms.get_volume() / len(atoms)
        atoms.calc = None
        atoms.info.update(
            model="7net-0",
            energy=e * len(atoms),
            qha_temperatures=GRID_T,
            qha_pressures=GRID_P,
            qha_gibbs_per_atom=[[gibbs_model(e, v, t, p) for p in GRID_P] for t in GRID_T],
            e0=e,
            v0=v,
        )
        frames.append(atoms)
    return frames


def by_hand_e_hull(refs, frames, t, p):
    """pymatgen PhaseDiagram of the references' G(t, p), queried with each frame's G(t, p)."""
    from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
    from pymatgen.core import Composition

    def entry(a):
        return PDEntry(
            Composition(a.get_chemical_formula()),
            len(a) * gibbs_model(a.info["e0"], a.info["v0"], t, p),
            name=a.info["id"],
        )

    diagram = PhaseDiagram([entry(a) for a in refs])
    return {a.info["id"]: diagram.get_decomp_and_e_above_hull(entry(a), allow_negative=True)[1] for a in frames}


@pytest.mark.slow
def test_hull_at_equals_pymatgen_by_hand_and_plots(gibbs_phases, tmp_path, cli):
    from ase.io import write

    from cscli.core.frames import read_frames

    refs = [a for a in gibbs_phases if a.info["id"] != "ref-beta-Li3PS4"]  # beta is a candidate here
    write(tmp_path / "refs.extxyz", refs, format="extxyz")
    write(tmp_path / "frames.extxyz", gibbs_phases, format="extxyz")
    for t, p in [(450.0, 1.5), (0.0, 0.0), (300.0, 2.0)]:  # (450, 1.5) lies between grid points
        out, plot = tmp_path / f"hull-{t:g}-{p:g}.extxyz", tmp_path / f"pd-{t:g}-{p:g}.png"
        res = cli(
            "hull",
            tmp_path / "frames.extxyz",
            "--refs",
            tmp_path / "refs.extxyz",
            "--at",
            f"{t:g},{p:g}",
            "-o",
            out,
            "--plot",
            plot,
            "-q",
        )
        assert res.returncode == 0, res.stderr
        frames = read_frames(str(out))
        got = {a.info["id"]: a.info["e_hull"] for a in frames}
        expected = by_hand_e_hull(refs, gibbs_phases, t, p)
        assert got.keys() == expected.keys()
        assert_allclose([got[k] for k in expected], [expected[k] for k in expected], atol=1e-9)
        assert {a.info["hull_condition"] for a in frames} == {f"G({t:g} K, {p:g} GPa)"}
        assert plot.stat().st_size > 20_000


@pytest.mark.slow
def test_hull_at_bad_input(gibbs_phases, tmp_path, cli):
    from ase.io import write

    refs = tmp_path / "refs.extxyz"
    write(refs, gibbs_phases, format="extxyz")
    plain = tmp_path / "plain.extxyz"
    bare = gibbs_phases[3].copy()
    for key in [k for k in bare.info if k.startswith("qha_")]:
        del bare.info[key]
    write(plain, bare, format="extxyz")
    out = tmp_path / "out.extxyz"
    # a condition outside the grid: one line, non-zero exit
    res = cli("hull", refs, "--refs", refs, "--at", "900,0", "-o", out)
    assert res.returncode != 0
    assert "outside" in res.stderr and "Traceback" not in res.stderr
    # references without qha keys
    res = cli("hull", refs, "--refs", plain, "--at", "300,0", "-o", out)
    assert res.returncode != 0 and "cscli qha" in res.stderr and "Traceback" not in res.stderr
    # a frame without qha keys fails alone; the others are written
    mixed = tmp_path / "mixed.extxyz"
    bare.info["id"] = "bare"
    write(mixed, [gibbs_phases[0], bare], format="extxyz")
    res = cli("hull", mixed, "--refs", refs, "--at", "300,1", "-o", out, "--no-resume")
    assert res.returncode != 0 and "run `cscli qha`" in res.stderr
    from cscli.core.frames import read_frames

    assert [a.info["id"] for a in read_frames(str(out))] == [gibbs_phases[0].info["id"]]
    res = cli("hull", refs, "--refs", refs, "--at", "300", "-o", out)
    assert res.returncode == 2 and "T,p" in res.stderr


# ----------------------------------------------------------------------------- imaginary modes, bad input


def emt_settings(scales=(0.98, 0.99, 1.0, 1.01, 1.02), **overrides):
    """A small EMT QHA: no pre-relaxation, no fixed-volume relaxation unless ``steps`` is given."""
    from cscli.props.qha import QHASettings

    common = dict(temperatures=(0.0, 100.0, 200.0, 300.0), pressures=(0.0,), min_length=6.0, mesh=(5, 5, 5))
    return QHASettings(scales=tuple(scales), **{**common, "steps": 0, "prerelax": False, **overrides})


@pytest.mark.slow
def test_imaginary_volumes_are_dropped_then_the_frame_fails(tmp_path):
    """EMT copper: fcc is stable except at +10 % lattice (lowest frequency about -0.8 THz on this
    mesh), bcc is dynamically unstable (about -1 THz) at most volumes of the grid."""
    from ase.build import bulk
    from ase.calculators.emt import EMT

    from cscli.core.errors import FrameError
    from cscli.props.qha import qha_frame, qha_info

    fcc = bulk("Cu", "fcc", a=3.61)
    fcc.info["id"] = "cu-fcc"
    result = qha_frame(fcc, EMT(), emt_settings([0.95, 0.975, 1.0, 1.025, 1.05, 1.1]), work_dir=tmp_path)
    info = qha_info(result)
    assert info["qha_imaginary"] is True
    assert info["qha_scales_used"] == [0.95, 0.975, 1.0, 1.025, 1.05]
    assert info["qha_min_frequency"][-1] < -0.5 and min(info["qha_min_frequency"][:-1]) > -0.1
    assert_allclose(result.fit.volumes, [fcc.get_volume() * s**3 for s in info["qha_scales_used"]], rtol=1e-9)
    # resume: a second call reads every volume back from the cache and gives the same numbers
    again = qha_frame(fcc, EMT(), emt_settings([0.95, 0.975, 1.0, 1.025, 1.05, 1.1]), work_dir=tmp_path)
    assert_allclose(again.fit.gibbs, result.fit.gibbs, rtol=0, atol=1e-12)

    bcc = bulk("Cu", "bcc", a=2.87)
    bcc.info["id"] = "cu-bcc"
    # it stops at the first unstable volume: with 5 scales and 5 needed, the fit can no longer pass
    with pytest.raises(FrameError, match=r"imaginary modes at 1 of 1 volumes computed.*at most 4 stable volumes of 5"):
        qha_frame(bcc, EMT(), emt_settings([0.95, 0.975, 1.0, 1.025, 1.05]), work_dir=tmp_path)
    assert len(list(tmp_path.glob("cu-bcc-*/scale-*.json"))) == 1


def test_a_model_returning_nan_fails_the_frame():
    from ase.build import bulk
    from ase.calculators.calculator import Calculator, all_changes

    from cscli.core.errors import FrameError
    from cscli.props.qha import qha_frame

    class NaNCalculator(Calculator):
        implemented_properties = ("energy", "forces", "stress")

        def calculate(self, atoms=None, properties=None, system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            n = len(self.atoms)
            self.results = {"energy": float("nan"), "forces": np.full((n, 3), np.nan), "stress": np.full(6, np.nan)}

    atoms = bulk("Cu", "fcc", a=3.61)
    with pytest.raises(FrameError, match="non-finite"):
        qha_frame(atoms, NaNCalculator(), emt_settings([0.96, 0.98, 1.0, 1.02, 1.04]))


def test_cli_qha_bad_grids(tmp_path, cli):
    from ase.build import bulk
    from ase.io import write

    src = tmp_path / "cu.extxyz"
    write(src, bulk("Cu", "fcc", a=3.61), format="extxyz")
    out = tmp_path / "out.extxyz"
    out.write_text("")
    for args, needle in [
        (["--scales", "0.98:1.02:0.02"], "at least 5"),
        (["--temperatures", "300"], "at least two temperatures"),
        (["--scales", "1:0.9:0.01"], "LO <= HI"),
        (["--mesh", "4,4"], "three positive integers"),
        (["--mesh", "fine"], "'supercell'"),
    ]:
        res = cli("qha", src, "-o", out, *args)
        assert res.returncode == 2, res.stderr
        assert needle in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_sevennet_batched_forces_equal_one_at_a_time():
    from cscli.core.models import load_calculator
    from cscli.props.qha import batched_backend, evaluate_forces

    calc = load_calculator("7net-0", "cpu")
    assert batched_backend(calc) == "sevennet-batch"
    structures = []
    for seed in range(3):
        atoms = li2s_primitive().repeat((1, 1, 2))
        atoms.rattle(0.05, seed=seed)
        structures.append(atoms)
    one = evaluate_forces(calc, structures, batch_size=1)
    batched = evaluate_forces(calc, structures, batch_size=2)  # two batches: 2 + 1 structures
    assert_allclose(np.array(batched), np.array(one), atol=1e-5)
    assert np.abs(np.array(one)).max() > 0.05  # real forces, not zeros


def test_gibbs_at_interpolates_and_refuses_untrusted_fits():
    from ase import Atoms

    from cscli.core.errors import FrameError
    from cscli.props.qha import gibbs_at

    atoms = Atoms("Li", cell=[3, 3, 3], pbc=True)
    atoms.info.update(
        id="x",
        qha_temperatures=GRID_T,
        qha_pressures=GRID_P,
        qha_gibbs_per_atom=[[gibbs_model(-1.0, 20.0, t, p) for p in GRID_P] for t in GRID_T],
        qha_fit_ok=[[True, True, True], [True, True, True], [True, True, False]],
    )
    assert_allclose(gibbs_at(atoms, 150.0, 0.5), gibbs_model(-1.0, 20.0, 150.0, 0.5), atol=1e-12)
    assert_allclose(gibbs_at(atoms, 600.0, 1.0), gibbs_model(-1.0, 20.0, 600.0, 1.0), atol=1e-12)
    with pytest.raises(FrameError, match="unreliable EOS fit"):
        gibbs_at(atoms, 450.0, 1.5)  # uses the (600 K, 2 GPa) point
    with pytest.raises(FrameError, match="outside its qha grid"):
        gibbs_at(atoms, 300.0, 2.5)


def hcp_cu_wrong_c_over_a():
    from ase.build import bulk

    hcp = bulk("Cu", "hcp", a=2.50, c=2.50 * 1.75)
    hcp.info["id"] = "cu-hcp"
    return hcp


def test_relaxations_start_from_the_nearest_relaxed_volume(monkeypatch):
    """EMT hcp Cu with a wrong c/a (1.75): every fixed-volume relaxation must find c/a again. Started
    from the nearest relaxed volume they reach the same E(V) and cells as relaxations from the
    scaled a0 (within what fmax allows) in fewer optimizer steps."""
    from ase.calculators.emt import EMT

    import cscli.props.qha as q

    hcp = hcp_cu_wrong_c_over_a()
    settings = emt_settings(steps=300, fmax=1e-3, optimizer="FIRE")  # the step counts below are FIRE's
    steps, original = {}, q.relax_fixed_volume

    def counting(atoms, calc, fmax, n_steps, symprec=None, optimizer="BFGS"):
        relaxed, converged = original(atoms, calc, fmax, n_steps, symprec, optimizer)
        steps[round(atoms.get_volume() / hcp.get_volume(), 6)] = relaxed.info["relax_steps"]
        return relaxed, converged

    monkeypatch.setattr(q, "relax_fixed_volume", counting)
    warm = q.qha_frame(hcp, EMT(), settings)
    warm_steps = sum(steps.values())
    steps.clear()
    cold = {s: original(q.scaled_cell(hcp, s), EMT(), 1e-3, 300, None, "FIRE")[0] for s in settings.scales}
    cold_steps = sum(r.info["relax_steps"] for r in cold.values())
    for s, relaxed in cold.items():
        assert relaxed.info["relax_converged"]
        assert_allclose(warm.volumes[s], relaxed.get_volume(), rtol=1e-9)  # the volume is s^3 V0 either way
        assert_allclose(warm.energies[s], relaxed.info["energy"], atol=2e-5)  # eV per 2-atom cell
    assert warm_steps < 0.8 * cold_steps, (warm_steps, cold_steps)


def test_relaxations_keep_the_space_group():
    """hcp Cu (8-atom cell) with 1 mÅ of noise: relaxed without symmetry it stays P1 within FIRE's
    fmax, and phonopy needs 48 displaced supercells; with --symprec it is refined to P6_3/mmc, kept
    there, and needs the ideal cell's one, at the same energy."""
    from ase.build import bulk
    from ase.calculators.emt import EMT

    import cscli.props.qha as q
    from cscli.explore.relax import relax_atoms

    hcp = bulk("Cu", "hcp", a=2.50, c=2.50 * 1.75).repeat((2, 2, 1))
    noisy = hcp.copy()
    noisy.positions += np.random.default_rng(0).normal(0, 0.001, noisy.positions.shape)
    smatrix = q.supercell_matrix(hcp.cell, 5.0)
    runs = {}
    for symprec in (None, 1e-2):
        relaxed = relax_atoms(noisy, EMT(), fmax=1e-3, steps=300, constant_volume=True, symprec=symprec)
        assert relaxed.info["relax_converged"] and not relaxed.constraints  # FixSymmetry stays inside
        phonon = q.phonopy_for(relaxed, smatrix, 0.01)
        runs[symprec] = (relaxed, phonon)
    assert runs[None][1].symmetry.get_international_table() == "P1 (1)"
    assert len(runs[None][1].supercells_with_displacements) == 48
    assert runs[1e-2][1].symmetry.get_international_table() == "P6_3/mmc (194)"
    assert len(runs[1e-2][1].supercells_with_displacements) == len(
        q.phonopy_for(hcp, smatrix, 0.01).supercells_with_displacements
    )
    assert_allclose(runs[1e-2][0].info["energy"], runs[None][0].info["energy"], atol=1e-5)
    # the frame's own constraints come back; only the relaxation's FixSymmetry is dropped
    from ase.constraints import FixAtoms

    pinned = noisy.copy()
    pinned.set_constraint(FixAtoms(indices=[0]))
    out = relax_atoms(pinned, EMT(), fmax=0.05, steps=5, constant_volume=True, symprec=1e-2)
    assert [type(c).__name__ for c in out.constraints] == ["FixAtoms"]
    assert out.constraints[0].index.tolist() == [0]


def test_optimizer_choice_reaches_the_same_free_energy(tmp_path):
    """--optimizer BFGS relaxes the same EMT hcp Cu (wrong c/a) to the same E(V) and G(T) as FIRE,
    and caches under its own key; FIRE keeps the key it had before the option existed (caches
    from earlier runs stay valid)."""
    import hashlib
    import json

    from ase.calculators.emt import EMT

    import cscli.props.qha as q

    hcp = hcp_cu_wrong_c_over_a()
    fire, bfgs = (
        emt_settings(steps=300, fmax=1e-4, optimizer="FIRE"),
        emt_settings(steps=300, fmax=1e-4),
    )  # BFGS: the default
    results = {s.optimizer: q.qha_frame(hcp, EMT(), s, work_dir=tmp_path, model="emt") for s in (fire, bfgs)}
    energies = [np.array([r.energies[s] for s in fire.scales]) for r in results.values()]
    assert_allclose(energies[0], energies[1], atol=1e-6)
    assert_allclose(results["FIRE"].fit.gibbs, results["BFGS"].fit.gibbs, atol=1e-5)
    assert len(list(tmp_path.iterdir())) == 2  # one cache per optimizer
    before = json.dumps(
        {
            "model": "emt",
            "min_length": 6.0,
            "displacement": 0.01,
            "prerelax": False,
            "prerelax_fmax": 0.001,
            "fmax": 1e-4,
            "steps": 300,
            "symprec": 1e-3,
        },
        sort_keys=True,
    )
    assert fire.key("emt") == hashlib.sha1(before.encode()).hexdigest()[:10] != bfgs.key("emt")


def test_supercell_mesh_sums_the_commensurate_frequencies_exactly():
    """--mesh supercell: thermal properties over the Γ-centred q-points of the supercell, i.e. the
    frequencies the force constants give exactly (no Fourier interpolation). Reference: phonopy's
    frequencies at q = (i/n1, j/n2, k/n3), summed with the harmonic formula written here."""
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from phonopy.physical_units import get_physical_units

    from cscli.props.qha import compute_volume, supercell_matrix, thermal_of

    atoms = bulk("Cu", "fcc", a=3.61)
    settings = emt_settings([0.96, 0.98, 1.0, 1.02, 1.04])
    smatrix = supercell_matrix(atoms.cell, settings.min_length)
    n = [int(x) for x in np.diag(smatrix)]
    assert n == [3, 3, 3]
    point = compute_volume(atoms, 1.0, EMT(), settings, smatrix)
    temps = np.array([0.0, 150.0, 300.0])
    thermal = thermal_of(point, smatrix, "supercell", temps)
    assert thermal["mesh"] == n

    phonon = point.phonon
    qpoints = [[i / n[0], j / n[1], k / n[2]] for i in range(n[0]) for j in range(n[1]) for k in range(n[2])]
    freqs = np.asarray(phonon.run_qpoints(qpoints).frequencies)
    lowest = freqs.min()
    units = get_physical_units()
    kB = units.KB  # phonopy's Boltzmann constant (eV/K; ASE's differs in the 7th digit)
    assert qpoints[0] == [0.0, 0.0, 0.0]
    freqs[0, :3] = 0.0  # the acoustic modes at Γ: zero by translational invariance, left out
    energy = freqs[freqs > 0] * units.THzToEv  # eV
    expected = []
    for t in temps:
        fe = energy / 2 if t == 0 else energy / 2 + kB * t * np.log(1 - np.exp(-energy / (kB * t)))
        expected.append(fe.sum() / len(qpoints) * units.EvTokJmol)  # kJ/mol of cells
    assert_allclose(thermal["free_energy"], expected, rtol=1e-9)
    assert_allclose(thermal["min_frequency"], lowest, atol=1e-9)
    # the default interpolated mesh samples other q-points: a different sum
    assert abs(thermal_of(point, smatrix, 20.0, temps)["free_energy"][-1] - expected[-1]) > 1e-4


def _rattler_cell():
    """CsCl-type AuCu with an oversized cage (a = 3.5 Å): in EMT the Cu at the body centre sits on a
    saddle held by the Pm-3m symmetry, an off-centring optical mode at Γ is imaginary (-3.1 THz)."""
    from ase import Atoms

    atoms = Atoms("AuCu", cell=np.eye(3) * 3.5, scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5]], pbc=True)
    atoms.info["id"] = "rattler"
    return atoms


def test_gamma_modes_equal_the_direct_mass_weighted_hessian():
    """Γ frequencies from phonopy (the cell as its own supercell) against the Hessian of the periodic
    cell by central differences of EMT forces, mass-weighted and diagonalised here."""
    from ase.calculators.emt import EMT
    from ase.units import _amu, _e

    from cscli.props.qha import evaluate_forces, gamma_modes, phonopy_for, to_ase_atoms

    atoms = _rattler_cell()
    atoms.calc = EMT()
    n, step = len(atoms), 1e-3
    hessian = np.zeros((3 * n, 3 * n))
    for i in range(3 * n):
        shifted = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.calc = EMT()
            moved.positions[i // 3, i % 3] += sign * step
            shifted.append(moved.get_forces().ravel())
        hessian[i] = -(shifted[0] - shifted[1]) / (2 * step)
    hessian = (hessian + hessian.T) / 2
    inv_sqrt_m = np.repeat(1 / np.sqrt(atoms.get_masses()), 3)
    eig = np.linalg.eigvalsh(hessian * np.outer(inv_sqrt_m, inv_sqrt_m))  # eV/Å²/amu
    thz = np.sign(eig) * np.sqrt(np.abs(eig) * _e / _amu) * 1e10 / (2 * np.pi) / 1e12
    optical = np.sort(thz[np.argsort(np.abs(thz))[3:]])  # the three translations are the zero ones
    phonon = phonopy_for(atoms, np.eye(3, dtype=int), displacement=0.01)  # the cell as its own supercell
    phonon.forces = evaluate_forces(EMT(), [to_ase_atoms(sc) for sc in phonon.supercells_with_displacements])
    phonon.produce_force_constants()
    freqs, patterns = gamma_modes(phonon)
    assert_allclose(freqs, optical, atol=2e-3)
    assert freqs[0] < -3.0  # the off-centring mode
    assert_allclose(np.abs(patterns).reshape(len(freqs), -1).max(axis=1), 1.0)


def test_follow_soft_modes_rescues_a_gamma_saddle(tmp_path):
    """Without --follow-soft-modes the rattler fails (imaginary at every volume); with it, every
    volume leaves Pm-3m along its Γ mode, drops in energy and is dynamically stable at Γ (the only
    q of a 1×1×1 supercell with --mesh supercell); a second run reads the followed volumes back."""
    from ase.calculators.emt import EMT

    from cscli.core.errors import FrameError
    from cscli.props.qha import QHASettings, qha_frame, qha_info

    scales = (0.98, 0.99, 1.0, 1.01, 1.02)
    common = dict(
        prerelax=False,
        min_length=1.0,
        mesh="supercell",
        scales=scales,
        temperatures=(0.0, 100.0, 200.0, 300.0),
        pressures=(0.0,),
    )
    with pytest.raises(FrameError, match="imaginary modes at 1 of 1 volumes computed.*--follow-soft-modes"):
        qha_frame(_rattler_cell(), EMT(), QHASettings(**common), work_dir=tmp_path)
    settings = QHASettings(follow_soft_modes=True, **common)
    result = qha_frame(_rattler_cell(), EMT(), settings, work_dir=tmp_path)
    info = qha_info(result)
    followed = json.loads(info["qha_soft_modes"])
    assert sorted({r["scale"] for r in followed}) == list(scales)
    first = [next(r for r in followed if r["scale"] == s) for s in scales]  # the Pm-3m saddle at each volume
    assert all(r["frequency"] < -2.5 and r["energy_change"] < -10 for r in first)  # THz, meV/atom
    assert all(r["spacegroup_before"] == "Pm-3m (221)" != r["spacegroup_after"] for r in first)
    assert info["qha_imaginary"] is False and info["qha_scales_used"] == list(scales)
    assert min(info["qha_min_frequency"]) > -1e-3  # the acoustic zeros at Γ; every optical mode real
    # the followed volumes are lower in energy than the saddles the no-follow run cached
    [cache] = [p for p in tmp_path.iterdir() if p.is_dir()]
    for s in scales:
        saddle = json.loads((cache / f"scale-{s:.4f}.json").read_text())["energy"]
        assert result.energies[s] < saddle - 0.02

    class NoCalls(EMT):
        def calculate(self, *args, **kwargs):
            raise AssertionError("a resumed frame must not call the model")

    again = qha_frame(_rattler_cell(), NoCalls(), settings, work_dir=tmp_path)
    assert_allclose(again.fit.gibbs, result.fit.gibbs, rtol=0, atol=1e-12)


def test_eos_outlier_flags_a_volume_that_relaxed_into_another_structure():
    """A Vinet E(V) written here (E0, V0, B0, B0'), sampled at the default scales; one point moved
    30 meV/atom down (a relaxation that found another structure) is found, a smooth curve is not."""
    from cscli.props.qha import EOS_OUTLIER_TOL, eos_outlier

    e0, v0, b0, b1 = -5.5, 20.0, 0.3, 4.5  # eV/atom, Å³/atom, eV/Å³, -

    def vinet(v):
        x = (v / v0) ** (1 / 3)
        eta = 1.5 * (b1 - 1)
        return e0 + 9 * b0 * v0 / (4 * eta**2) * (2 - (5 + 3 * eta * (x - 1) - 3 * x) * np.exp(-eta * (x - 1)))

    volumes = v0 * np.array([0.95, 0.97, 0.99, 1.01, 1.03, 1.05]) ** 3
    energies = vinet(volumes)
    worst, deviation = eos_outlier(volumes, energies)
    assert abs(deviation) < 1e-6
    energies[1] -= 0.03
    worst, deviation = eos_outlier(volumes, energies)
    assert worst == 1 and -0.031 < deviation < -0.025 and abs(deviation) > EOS_OUTLIER_TOL
