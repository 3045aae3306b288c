"""cscli density: CHGCAR/h5 IO, model symmetries, training against a free-atom baseline, CLI."""

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose

DATA = Path(__file__).parent / "data" / "density"


def _chg(name):
    from cscli.props.density import io

    return io.read_chgcar(DATA / f"{name}.CHGCAR.gz")


# ----------------------------------------------------------------------------- IO


def test_chgcar_round_trip_keeps_grid_and_electrons(tmp_path):
    from pymatgen.io.vasp.outputs import Chgcar

    from cscli.props.density import io

    src = DATA / "Li3P-p0.CHGCAR.gz"
    d = io.read_chgcar(src)
    out = io.write_chgcar(tmp_path / "CHGCAR", d.atoms, d.values)
    a, b = Chgcar.from_file(str(src)), Chgcar.from_file(str(out))
    assert a.data["total"].shape == b.data["total"].shape == (18, 18, 32)
    # pymatgen's own electron count: grid mean of ρ·V
    assert_allclose(b.data["total"].mean(), a.data["total"].mean(), rtol=1e-6)
    assert_allclose(d.electrons(), a.data["total"].mean(), rtol=1e-6)
    assert_allclose(b.structure.lattice.matrix, a.structure.lattice.matrix, atol=1e-6)
    # every value and site as pymatgen reads them back (cscli writes the grid with numpy)
    assert_allclose(b.data["total"], a.data["total"], rtol=1e-9, atol=0)
    assert [str(x.specie) for x in b.structure] == [str(x.specie) for x in a.structure]
    assert_allclose(b.structure.frac_coords, a.structure.frac_coords, atol=2e-6)
    odd = io.write_chgcar(tmp_path / "odd", d.atoms, d.values[:3, :3, :3])  # 27 values: a short last line
    assert_allclose(Chgcar.from_file(str(odd)).data["total"], a.data["total"][:3, :3, :3], rtol=1e-9)


@pytest.mark.needs_shared
def test_vasp_chgcar_round_trip_and_vasp_grid(shared_data, tmp_path):
    from ase.io import read
    from pymatgen.io.vasp.outputs import Chgcar

    from cscli.props.density import io

    folder = shared_data / "charge_density" / "sisl_vasp_graphene"
    d = io.read_chgcar(folder / "CHGCAR")
    assert d.values.shape == (24, 24, 100)
    assert_allclose(d.electrons(), 8.0, atol=1e-5)  # PROVENANCE: 8.000 electrons
    out = io.write_chgcar(tmp_path / "CHGCAR", d.atoms, d.values)
    assert_allclose(
        Chgcar.from_file(str(out)).data["total"].mean(),
        Chgcar.from_file(str(folder / "CHGCAR")).data["total"].mean(),
        rtol=1e-6,
    )
    # the fine grid VASP chose: ENCUT 400 PREC Normal (graphene), ENCUT 600 PREC Accurate (NO)
    assert io.vasp_grid_shape(read(folder / "CONTCAR"), 400, "Normal") == (24, 24, 100)
    no = shared_data / "charge_density" / "sisl_vasp_NO_polarized"
    assert io.vasp_grid_shape(read(no / "CONTCAR"), 600, "Accurate") == (32, 48, 64)


@pytest.mark.needs_shared
def test_eacnet_h5_sample_shapes(shared_data):
    from cscli.props.density import io

    (d,) = io.read_eacnet_h5(shared_data / "charge_density" / "eacnet_water_h5" / "0.h5")
    assert len(d.atoms) == 48 and d.points.shape == (5000, 3) and d.values.shape == (5000,)
    assert sorted(set(d.atoms.get_chemical_symbols())) == ["H", "O"]
    assert d.atoms.get_chemical_symbols().count("O") == 16
    assert_allclose(np.diag(d.atoms.cell.array), [7.801506] * 3)
    assert d.meta["grid_shape"] == [140, 140, 140]


def test_broken_chgcar_grid_is_one_clear_error(tmp_path):
    from cscli.core.errors import DataError
    from cscli.props.density import io

    with gzip.open(DATA / "Li2S.CHGCAR.gz", "rt") as fh:
        lines = fh.read().splitlines()
    broken = tmp_path / "CHGCAR"
    broken.write_text("\n".join(lines[:40]) + "\n")  # grid header says 18x18x18, values cut short
    with pytest.raises(DataError, match=r"grid 18x18x18 needs 5832 values, the file has \d+"):
        io.read_chgcar(broken)


# ----------------------------------------------------------------------------- model


def test_periodic_pairs_match_ase_neighbor_list():
    from ase.neighborlist import neighbor_list

    from cscli.props.density.model import periodic_pairs

    atoms = _chg("Li3P-p1").atoms
    i, j, vec = periodic_pairs(atoms.cell.array, atoms.pbc, atoms.positions, atoms.positions, 5.0, exclude_self=True)
    ai, aj, ad = neighbor_list("ijd", atoms, 5.0)
    assert len(i) == len(ai)
    assert_allclose(np.sort(np.linalg.norm(vec, axis=1)), np.sort(ad), atol=1e-9)
    assert_allclose(np.bincount(i, minlength=len(atoms)), np.bincount(ai, minlength=len(atoms)))


@pytest.fixture(scope="module")
def model64():
    import torch

    from cscli.props.density.model import Predictor, build_model

    torch.manual_seed(0)
    net = build_model([3, 15, 16]).double()
    with torch.no_grad():  # random prior and correction so every path contributes
        net.prior_coef.normal_()
        net.correction.fill_(1.0)
    return Predictor(net)


def test_model_is_rotation_translation_and_permutation_invariant(model64):
    from scipy.spatial.transform import Rotation

    d = _chg("Li3P-p1")
    atoms = d.atoms
    rng = np.random.default_rng(1)
    pts = np.vstack([rng.random((300, 3)) @ atoms.cell.array, atoms.positions[:2]])  # two probes on nuclei
    ref = model64.predict(atoms, pts)
    assert np.all(np.isfinite(ref)) and np.std(ref) > 1e-3
    rot = Rotation.random(random_state=7).as_matrix()
    shift = np.array([1.3, -0.4, 2.2])
    moved = atoms.copy()
    moved.set_cell(atoms.cell.array @ rot.T, scale_atoms=False)
    moved.positions = atoms.positions @ rot.T + shift
    assert_allclose(model64.predict(moved, pts @ rot.T + shift), ref, rtol=1e-9, atol=1e-11)
    perm = rng.permutation(len(atoms))
    assert_allclose(model64.predict(atoms[perm], pts), ref, rtol=1e-9, atol=1e-11)
    # periodicity: a probe moved by a lattice vector sees the same crystal
    lattice_shift = np.array([1, -2, 1]) @ atoms.cell.array
    assert_allclose(model64.predict(atoms, pts + lattice_shift), ref, rtol=1e-9, atol=1e-11)


def test_tabulated_prediction_matches_the_exact_network(model64):
    """predict's fast path (per-atom matrices folding the probe tensor product, the radial MLP's
    last layer and the readout's first layer; the radial prior tabulated; spherical harmonics as
    monomials) against the e3nn network evaluated directly: the same densities to 1e-5 of the
    largest, for a random float64 model and the shipped float32 model, at random points and on
    the whole grid (predict_grid's own neighbour enumeration); the chunking changes nothing."""
    from cscli.props.density import predict as P
    from cscli.props.density.model import Predictor, load_model

    d = _chg("Li3P-p1")
    rng = np.random.default_rng(3)
    pts = np.vstack([rng.random((700, 3)) @ d.atoms.cell.array, d.atoms.positions[:2]])
    exact = model64.predict(d.atoms, pts, exact=True)
    fast = model64.predict(d.atoms, pts)
    assert_allclose(fast, exact, rtol=0, atol=1e-5 * np.abs(exact).max())
    assert_allclose(model64.predict(d.atoms, pts, batch=250, edge_chunk=7), fast, rtol=1e-12, atol=1e-14)
    shape = d.values.shape
    grid_pts, _ = d.all_points()
    exact = model64.predict(d.atoms, grid_pts, exact=True)
    assert_allclose(model64.predict_grid(d.atoms, shape), exact, rtol=0, atol=1e-5 * np.abs(exact).max())
    shipped = Predictor(load_model(P.default_model_path())[0])
    exact = shipped.predict(d.atoms, grid_pts, exact=True)
    assert_allclose(shipped.predict(d.atoms, grid_pts), exact, rtol=0, atol=1e-5 * exact.max())
    assert_allclose(shipped.predict_grid(d.atoms, shape), exact, rtol=0, atol=1e-5 * exact.max())
    assert_allclose(shipped.predict_grid(d.atoms, shape, exact=True), exact, rtol=0, atol=0)


def test_grid_atom_pairs_are_the_kdtree_pairs_of_the_grid_points():
    """predict_grid's neighbour enumeration (index box around each atom, no tree) gives exactly
    the probe–atom pairs periodic_pairs finds for the grid points: a skewed triclinic cell, and a
    slab (no periodicity along c)."""
    from cscli.props.density.io import grid_points
    from cscli.props.density.model import grid_atom_pairs, periodic_pairs

    atoms = _chg("Li3P-p1").atoms.copy()
    cell = atoms.cell.array.copy()
    cell[1] += 0.4 * cell[0]
    cell[2] += 0.3 * cell[0] - 0.2 * cell[1]
    atoms.set_cell(cell, scale_atoms=True)
    shape = (9, 11, 14)
    for pbc in ([True, True, True], [True, True, False]):
        pts = grid_points(atoms.cell.array, shape)
        p, a, vec = periodic_pairs(atoms.cell.array, pbc, pts, atoms.positions, 3.1)
        assert len(p) > 1000
        for i, flat, gvec in grid_atom_pairs(atoms.cell.array, pbc, shape, atoms.positions, 3.1):
            mine = a == i
            want = sorted(zip(p[mine], *np.round(vec[mine], 8).T))
            assert sorted(zip(flat, *np.round(gvec, 8).T)) == want


# ----------------------------------------------------------------------------- training


def _free_atom_superposition(atoms, shape):
    """The test's own baseline: GPAW free-atom radial pseudo-densities summed over atoms and
    their periodic images (brute force over image shifts)."""
    table = json.loads((DATA / "free_atoms.json").read_text())["atoms"]
    cell = atoms.cell.array
    frac = np.stack(np.meshgrid(*[np.arange(n) / n for n in shape], indexing="ij"), -1).reshape(-1, 3)
    pts = frac @ cell
    rho = np.zeros(len(pts))
    rng = range(-2, 3)
    shifts = np.array([[a, b, c] for a in rng for b in rng for c in rng]) @ cell
    for sym, pos in zip(atoms.get_chemical_symbols(), atoms.positions):
        r, prof = np.asarray(table[sym]["r"]), np.asarray(table[sym]["rho"])
        for s in shifts:
            dist = np.linalg.norm(pts - (pos + s), axis=1)
            rho += np.interp(dist, r, prof, right=0.0)
    return rho.reshape(shape)


@pytest.mark.slow
def test_short_training_beats_free_atom_superposition(tmp_path):
    from cscli.props.density import predict as P
    from cscli.props.density import train as T
    from cscli.props.density.model import Predictor, load_model

    train = [_chg(n) for n in ("Li2S-p0", "Li2S-p1", "Li2S-p2", "Li-p0", "Li3P", "Li3P-p0", "Li3P-p1")]
    held = [_chg(n) for n in ("Li2S", "Li-p1", "Li3P-p2")]
    settings = T.TrainSettings(steps=40, probes=300, eval_every=20, seed=3, resume=False)
    T.train(train, tmp_path, settings, valid=held[:1], plot=True)
    assert (tmp_path / "learning_curve.png").stat().st_size > 1000
    report = P.test_model(tmp_path / "model.pt", held)
    exact_net = Predictor(load_model(tmp_path / "model.pt")[0])
    num = den = 0.0
    for d, row in zip(held, report["structures"]):
        base = _free_atom_superposition(d.atoms, d.values.shape)
        num += np.abs(base - d.values).sum()
        den += np.abs(d.values).sum()
        # the report's NMAE (predict_grid) is the NMAE of the exact network at every grid point
        assert row["n_points"] == d.values.size
        pts, vals = d.all_points()
        exact = exact_net.predict(d.atoms, pts, exact=True)
        assert_allclose(row["nmae"], np.abs(exact - vals).sum() / np.abs(vals).sum(), rtol=1e-4)
    baseline = num / den
    assert baseline > 0.05  # free atoms miss the bonding: several per cent
    assert report["nmae"] < 0.5 * baseline, (report["nmae"], baseline)


# ----------------------------------------------------------------------------- CLI


@pytest.mark.slow
def test_cli_train_predict_nscf_and_errors(cli, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for n in ("Li2S-p0", "Li2S-p1", "Li-p0"):
        shutil.copyfile(DATA / f"{n}.CHGCAR.gz", data / f"{n}.CHGCAR.gz")
    run = cli(
        "density",
        "train",
        str(data),
        "-o",
        str(tmp_path / "m"),
        "--steps",
        "3",
        "--eval-every",
        "3",
        "--probes",
        "100",
        "--seed",
        "1",
        "--report",
        str(tmp_path / "train.json"),
        "-q",
    )
    assert run.returncode == 0, run.stderr
    model = tmp_path / "m" / "model.pt"
    assert model.is_file() and (tmp_path / "m" / "learning_curve.png").is_file()
    assert json.loads((tmp_path / "train.json").read_text())["settings"]["seed"] == 1

    from ase.io import write

    li2s = _chg("Li2S").atoms
    li2s.info["id"] = "li2s"
    write(tmp_path / "f.extxyz", li2s)
    run = cli(
        "density",
        "predict",
        str(tmp_path / "f.extxyz"),
        "--model",
        str(model),
        "-o",
        str(tmp_path / "pred"),
        "--encut",
        "300",
        "--normalize",
        "--report",
        str(tmp_path / "pred.json"),
    )
    assert run.returncode == 0, run.stderr
    from cscli.props.density import io

    pred = io.read_chgcar(tmp_path / "pred" / "li2s.CHGCAR")
    assert pred.values.shape == io.vasp_grid_shape(li2s, 300)
    assert_allclose(pred.electrons(), 8.0, rtol=1e-6)  # --normalize: Li 1 + Li 1 + S 6 (GPAW setups)
    assert "valence 8" in run.stderr

    run = cli("density", "nscf", str(tmp_path / "pred"), "-o", str(tmp_path / "bands"))
    assert run.returncode == 0, run.stderr
    incar = (tmp_path / "bands" / "li2s" / "INCAR").read_text()
    assert "ICHARG = 11" in incar
    kpoints = (tmp_path / "bands" / "li2s" / "KPOINTS").read_text().splitlines()
    # pymatgen's line mode: explicit k-points along the high-symmetry path, labelled
    assert kpoints[2] == "Reciprocal" and int(kpoints[1]) > 20 and any(line.endswith("\\Gamma") for line in kpoints)

    # bad inputs: one line, non-zero exit, nothing written before is lost
    bad = cli("density", "test", "--model", str(DATA / "Li2S.CHGCAR.gz"), str(DATA / "Li2S.CHGCAR.gz"))
    assert bad.returncode != 0 and "not a cscli density model" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    assert bad.stderr.startswith("cscli density test: error: "), bad.stderr  # the subcommand is named
    na = li2s.copy()
    na.symbols[0] = "Na"
    na.info["id"] = "na"
    write(tmp_path / "na.extxyz", na)
    bad = cli("density", "predict", str(tmp_path / "na.extxyz"), "--model", str(model), "-o", str(tmp_path / "pred"))
    assert bad.returncode != 0 and "Na not in the model" in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("cscli density predict: error: "), bad.stderr
    assert (tmp_path / "pred" / "li2s.CHGCAR").is_file()


@pytest.mark.slow
def test_label_gpaw_density_dir_writes_the_scf_density(tmp_path):
    """label -c gpaw --density-dir: a CHGCAR on GPAW's grid that integrates to info['density_electrons']."""
    from ase.build import bulk
    from pymatgen.io.vasp.outputs import Chgcar

    from cscli.core.errors import UsageError
    from cscli.dft import label as lib

    try:
        lib.check_gpaw("/usr/bin/python3")
    except UsageError as exc:
        pytest.skip(f"GPAW not available: {exc}")
    atoms = bulk("Li", "bcc", a=3.44)
    atoms.info["id"] = "li-bcc"
    labeller = lib.gpaw_labeller(lib.GpawSettings(ecut=250, kpt_density=1.5, width=0.1), density_dir=str(tmp_path))
    out = labeller(atoms)
    chg = Chgcar.from_file(str(tmp_path / "li-bcc.CHGCAR"))
    assert out.info["density_file"] == str(tmp_path / "li-bcc.CHGCAR")
    assert_allclose(chg.data["total"].mean(), out.info["density_electrons"], rtol=1e-6)
    # one valence electron (GPAW's Li setup) plus the missing compensation charge: a little above 1
    assert 1.0 < out.info["density_electrons"] < 1.3
    assert np.isfinite(out.info["energy"])
