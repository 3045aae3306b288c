"""relax and perturb: real models, real numbers, the README pipe."""

import ase.io
import numpy as np
import pytest

from cscli.core.frames import write_frames
from cscli.core.models import DEFAULT_MODEL, load_calculator
from cscli.explore.perturb import mean_spacing, perturb_frame
from cscli.explore.relax import relax_atoms


@pytest.fixture(scope="module")
def sevennet():
    return load_calculator("7net-0", "cpu")


def test_relax_matches_a_bare_ase_loop(phase, sevennet):
    """cscli's relax is ASE FIRE + FrechetCellFilter: same steps, same energy as driving ASE by hand."""
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE

    start = phase("Li2S")
    start.rattle(0.02, seed=3)
    ours = relax_atoms(start, sevennet, fmax=0.02, steps=200)
    bare = start.copy()
    bare.calc = sevennet
    opt = FIRE(FrechetCellFilter(bare), logfile=None)
    opt.run(fmax=0.02, steps=200)
    assert ours.info["relax_converged"] and ours.info["relax_fmax"] < 0.02
    assert ours.info["relax_steps"] == opt.get_number_of_steps()
    assert ours.info["energy"] == pytest.approx(bare.get_potential_energy(), abs=1e-6)
    assert ours.info["energy_per_atom"] == pytest.approx(ours.info["energy"] / 3)
    assert ours.info["model"] == "7net-0" and ours.info["id"] == "ref-Li2S"
    from importlib.metadata import version

    assert ours.info["model_version"] == f"sevenn {version('sevenn')}"  # the backend beside the model name
    # antifluorite Li2S: conventional a = 5.708 Å (exp.), PBE ≈ 5.70; the model must be close
    a_conv = ours.cell.lengths()[0] * np.sqrt(2)
    assert a_conv == pytest.approx(5.71, rel=0.02)


def test_fix_cell_relaxes_positions_and_keeps_the_cell(phase, sevennet):
    """--fix-cell: the atoms relax (forces below fmax by a fresh model call, energy lower than at
    the start), the cell stays what it was to float precision."""
    start = phase("Li2S")
    start.rattle(0.05, seed=1)
    before = start.copy()
    before.calc = sevennet
    e_start, f_start = before.get_potential_energy(), before.get_forces()
    assert np.sqrt((f_start**2).sum(axis=1)).max() > 0.2  # the rattled start is far from relaxed
    out = relax_atoms(start, sevennet, fmax=0.05, steps=100, fix_cell=True, optimizer="BFGS")
    np.testing.assert_allclose(out.cell.array, start.cell.array, rtol=0, atol=1e-12)
    assert out.info["relax_cell_filter"] == "fixed" and out.info["relax_optimizer"] == "BFGS"
    after = out.copy()
    after.calc = sevennet
    forces = after.get_forces()
    assert out.info["relax_converged"] and np.sqrt((forces**2).sum(axis=1)).max() < 0.05
    np.testing.assert_allclose(out.arrays["forces"], forces, atol=1e-6)
    assert out.info["energy"] == pytest.approx(after.get_potential_energy(), abs=1e-6)
    assert out.info["energy"] < e_start - 1e-3  # relaxing lowered the energy
    assert np.abs(out.positions - start.positions).max() > 0.01  # the atoms moved


def test_chgnet_energy_equals_chgnet_own_prediction(phase):
    """The loader's CHGNet calculator gives what CHGNet itself predicts for the structure."""
    from chgnet.model import CHGNet
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = phase("gamma-Li3PS4")
    calc = load_calculator("chgnet", "cpu")
    atoms.calc = calc
    e_ours = atoms.get_potential_energy() / len(atoms)
    pred = CHGNet.load(verbose=False).predict_structure(AseAtomsAdaptor.get_structure(atoms))
    assert e_ours == pytest.approx(float(pred["e"]), abs=1e-4)
    np.testing.assert_allclose(atoms.get_forces(), pred["f"], atol=1e-4)


def test_perturb_statistics_follow_the_recipe(phase):
    atoms = phase("gamma-Li3PS4")
    copies = perturb_frame(atoms, 40, seed=7)
    a = mean_spacing(atoms)
    for c in copies:
        assert c.info["parent_id"] == "ref-gamma-Li3PS4" and c.info["id"].startswith("ref-gamma-Li3PS4.p")
        assert 0.08 <= c.info["perturb_sigma_rel"] <= 0.15
        assert c.info["perturb_sigma"] == pytest.approx(c.info["perturb_sigma_rel"] * a)
        # the strain: cell' = cell (I + eps) with the largest principal |strain| in [3 %, 5 %]
        eps = np.linalg.solve(atoms.cell.array, c.cell.array) - np.eye(3)
        eps = 0.5 * (eps + eps.T)
        assert np.abs(np.linalg.eigvalsh(eps)).max() == pytest.approx(c.info["perturb_strain"], rel=1e-6)
        assert 0.03 <= c.info["perturb_strain"] <= 0.05
        assert (
            np.min(ase.geometry.get_distances(c.positions, cell=c.cell, pbc=True)[1][np.triu_indices(len(c), 1)]) >= 0.7
        )
    # measured displacements (after removing the affine strain part) have the drawn sigma
    rel = []
    for c in copies:
        affine = atoms.get_scaled_positions(wrap=False) @ c.cell.array
        d = (c.positions - affine).ravel()
        rel.append(d.std() / c.info["perturb_sigma"])
    assert np.mean(rel) == pytest.approx(1.0, abs=0.05)


def test_perturb_is_reproducible_and_order_independent(phase):
    a, b = phase("Li2S"), phase("Li3P")
    first = perturb_frame(a, 2, seed=1) + perturb_frame(b, 2, seed=1)
    again = perturb_frame(b, 2, seed=1) + perturb_frame(a, 2, seed=1)
    by_id = {f.info["id"]: f for f in again}
    for f in first:
        np.testing.assert_allclose(f.positions, by_id[f.info["id"]].positions)
    other = perturb_frame(a, 2, seed=2)
    assert not np.allclose(other[0].positions, first[0].positions)


def test_readme_pipe_relax_then_perturb(tmp_path, reference_phases, cli):
    """`cscli relax refs.extxyz | cscli perturb -n 3 --seed 1 > out.extxyz` and ase reads the result."""
    refs = tmp_path / "refs.extxyz"
    write_frames([f for f in reference_phases if f.info["phase"] in ("Li2S", "Li")], str(refs))
    relax = cli("relax", refs, "--steps", "30", "-q")
    assert relax.returncode == 0, relax.stderr
    assert "CHGNet" not in relax.stdout and relax.stdout.startswith(("1\n", "3\n"))  # nothing but frames on stdout
    perturb = cli("perturb", "-n", "3", "--seed", "1", input=relax.stdout)
    assert perturb.returncode == 0, perturb.stderr
    out = tmp_path / "out.extxyz"
    out.write_text(perturb.stdout)
    frames = ase.io.read(out, index=":")
    assert len(frames) == 6
    assert {f.info["parent_id"] for f in frames} == {"ref-Li2S", "ref-Li"}
    assert all(
        f"relax({DEFAULT_MODEL})" in f.info["history"] and "perturb(seed=1)" in f.info["history"] for f in frames
    )
    jsonl = cli("perturb", "-n", "1", "--seed", "1", "--output-format", "jsonl", "-q", input=relax.stdout)
    assert len(jsonl.stdout.strip().splitlines()) == 2
