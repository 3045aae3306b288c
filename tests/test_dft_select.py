"""dft-select: bin quotas, seeded choice, farthest-point sampling; VASP inputs and SLURM script."""

from __future__ import annotations

import gzip
import json
import math
import os
import subprocess
from collections import Counter

import numpy as np
import pytest

from cscli.core.errors import DataError, UsageError
from cscli.core.frames import read_frames, write_frames
from cscli.dft.dft_select import DEFAULT_BINS, Bin, farthest_point_order, ov_fingerprint, parse_bins, select


def _pool(phase, e_hulls, name="Li2S"):
    frames = []
    for i, e in enumerate(e_hulls):
        a = phase(name)
        a.info["id"] = f"c{i:04d}"
        a.info["e_hull"] = float(e)
        frames.append(a)
    return frames


def test_default_bins_are_the_paper_quotas():
    assert DEFAULT_BINS == (Bin(-math.inf, 0.0, 100), Bin(0.0, 0.03, 200), Bin(0.03, 0.10, 300))
    assert parse_bins("-inf:0:100,0:0.03:200,0.03:0.1:300") == DEFAULT_BINS
    assert parse_bins("0:0.05:7") == (Bin(0.0, 0.05, 7),)
    for bad in ("0:1", "1:0:3", "0:0.1:x", "0:0.1:3,0.05:0.2:3", "0:0.1:-1"):
        with pytest.raises(UsageError):
            parse_bins(bad)


def test_quotas_and_bin_edges(phase):
    rng = np.random.default_rng(0)
    e = np.concatenate(
        [
            rng.uniform(-0.2, -1e-6, 150),  # 150 below the hull -> quota 100
            rng.uniform(0.0, 0.0299, 250),  # 250 in [0, 0.03) -> quota 200
            rng.uniform(0.03, 0.0999, 120),  # 120 in [0.03, 0.1) -> all (quota 300)
            rng.uniform(0.1, 0.5, 30),  # outside
            [0.0, 0.03, 0.1],  # edges: lo inclusive, hi exclusive
        ]
    )
    frames = _pool(phase, e)
    chosen, reports = select(frames, seed=3)
    assert [(r.available, r.selected) for r in reports] == [(150, 100), (251, 200), (121, 121)]
    picked = e[chosen]
    assert (picked < 0).sum() == 100
    assert ((picked >= 0) & (picked < 0.03)).sum() == 200
    assert ((picked >= 0.03) & (picked < 0.1)).sum() == 121
    assert not (picked >= 0.1).any()
    assert chosen == sorted(chosen) and len(set(chosen)) == len(chosen)
    assert len(e) - 3 in chosen and len(e) - 2 in chosen and len(e) - 1 not in chosen  # 0.0, 0.03 in; 0.1 out


def test_seeds_reproducible_and_uniform(phase):
    frames = _pool(phase, np.linspace(0.0, 0.029, 10))
    bins = (Bin(0.0, 0.03, 3),)
    a, _ = select(frames, bins, seed=11)
    b, _ = select(frames, bins, seed=11)
    assert a == b
    draws = [tuple(select(frames, bins, seed=s)[0]) for s in range(1500)]
    assert len(set(draws)) > 50  # different seeds, different samples
    freq = Counter(i for d in draws for i in d)
    # uniform sampling without replacement: each frame chosen with p = 3/10; 5 sigma band
    sigma = math.sqrt(0.3 * 0.7 / 1500)
    for i in range(10):
        assert abs(freq[i] / 1500 - 0.3) < 5 * sigma


def test_missing_e_hull_is_a_data_error(phase):
    a = phase("Li2S")
    with pytest.raises(DataError, match="e_hull"):
        select([a])


def test_ov_fingerprint_counts_pairs_like_pymatgen(phase):
    """Integrating the OV density over [0, r] gives the number of A-B pairs within r (pymatgen)."""
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = phase("gamma-Li3PS4")
    dr, r_max = 0.01, 6.0
    elements = ["Li", "P", "S"]
    fp = ov_fingerprint(atoms, elements, r_max=r_max, dr=dr, sigma=0.02)
    grid = np.arange(dr / 2, r_max, dr)
    pairs = [(a, b) for i, a in enumerate(elements) for b in elements[i:]]
    syms = atoms.get_chemical_symbols()
    n = {el: syms.count(el) for el in elements}
    wtot = sum(n[a] * n[b] for a, b in pairs)
    structure = AseAtomsAdaptor.get_structure(atoms)
    # r_cut in the widest gap of all pair distances between 2 and 4.5 Å (pymatgen's neighbours)
    d_all = np.sort(np.unique(np.round([nb.nn_distance for nbs in structure.get_all_neighbors(4.5) for nb in nbs], 4)))
    d_all = d_all[d_all > 2.0]
    k_gap = int(np.argmax(np.diff(d_all)))
    assert d_all[k_gap + 1] - d_all[k_gap] > 0.2  # well wider than the smearing (0.02 Å)
    r_cut = 0.5 * (d_all[k_gap] + d_all[k_gap + 1])
    neigh = structure.get_all_neighbors(r_cut)
    for k, (a, b) in enumerate(pairs):
        block = fp[k * len(grid) : (k + 1) * len(grid)] / (n[a] * n[b] / wtot)
        density = (block + 1.0) * 4 * math.pi * grid**2 * n[a] * n[b] / atoms.cell.volume
        mask = grid < r_cut
        integral = density[mask].sum() * dr
        expected = sum(
            1 for i, site in enumerate(structure) if site.specie.symbol == a for nb in neigh[i] if nb.specie.symbol == b
        )
        assert integral == pytest.approx(expected, abs=0.05), (a, b)
    # P-S: 4 S around each of the 2 P (PS4 tetrahedra) -> 8 pairs
    assert (
        sum(1 for i, s in enumerate(structure) if s.specie.symbol == "P" for nb in neigh[i] if nb.specie.symbol == "S")
        == 8
    )


def test_ov_fingerprint_is_cell_invariant(phase):
    atoms = phase("beta-Li3PS4")
    from cscli.dft.dft_select import pairwise_distances

    fp1 = ov_fingerprint(atoms, ["Li", "P", "S"])
    fp2 = ov_fingerprint(atoms.repeat((2, 1, 1)), ["Li", "P", "S"])
    d = pairwise_distances(np.array([fp1, fp2]), "cosine")
    assert d[0, 1] < 1e-10


def test_farthest_point_order_on_a_line():
    x = np.array([0.0, 0.1, 0.2, 5.0, 10.0])
    dist = np.abs(x[:, None] - x[None, :])
    assert farthest_point_order(dist, 3, start=0) == [0, 4, 3]
    assert farthest_point_order(dist, 9, start=2)[:2] == [2, 4]
    assert len(farthest_point_order(dist, 9)) == 5


@pytest.mark.parametrize("fingerprint", ["ov", "crystalnn"])
def test_fps_spreads_over_distinct_phases(phase, fingerprint):
    """6 rattled copies of one phase + 2 other phases, quota 3: FPS takes one of each."""
    frames = []
    rng = np.random.default_rng(5)
    for k in range(6):
        a = phase("Li2S")
        a.positions += rng.normal(0, 0.01, a.positions.shape)
        a.info.update(id=f"dup{k}", e_hull=0.01 + 0.001 * k)
        frames.append(a)
    for name in ("Li4P2S6", "Li3P"):
        a = phase(name)
        a.info.update(id=name, e_hull=0.02)
        frames.append(a)
    chosen, _ = select(frames, (Bin(0.0, 0.03, 3),), method="fps", fingerprint=fingerprint)
    ids = {frames[i].info["id"] for i in chosen}
    assert ids == {"dup0", "Li4P2S6", "Li3P"}  # starts at the lowest E_hull (dup0)


def test_cli_selects_and_writes(tmp_path, phase, cli):
    rng = np.random.default_rng(1)
    frames = _pool(phase, rng.uniform(-0.05, 0.15, 40))
    src = tmp_path / "pool.extxyz"
    write_frames(frames, str(src))
    out = tmp_path / "sel.extxyz"
    r = cli("dft-select", src, "--bins=-inf:0:2,0:0.03:2,0.03:0.1:3", "--seed", "4", "-o", out)
    assert r.returncode == 0, r.stderr
    sel = read_frames(str(out))
    assert len(sel) == 7
    assert Counter(a.info["dft_bin"] for a in sel) == {"[-inf,0)": 2, "[0,0.03)": 2, "[0.03,0.1)": 3}
    assert "7 of 40 frames selected" in r.stderr
    r2 = cli("dft-select", src, "--bins=-inf:0:2,0:0.03:2,0.03:0.1:3", "--seed", "4")
    assert [a.info["id"] for a in sel] == [
        line.split("id=")[1].split()[0] for line in r2.stdout.splitlines() if "id=" in line
    ]
    bad = cli("dft-select", src, "--bins", "0:0.1")
    assert bad.returncode == 2 and "lo:hi:quota" in bad.stderr
    nohull = tmp_path / "nohull.extxyz"
    write_frames([phase("Li2S")], str(nohull))
    r3 = cli("dft-select", nohull)
    assert r3.returncode == 1 and "e_hull" in r3.stderr


# ----------------------------------------------------------------------------- VASP inputs


def _mp_mesh_by_hand(atoms, density=64):
    """Materials Project reciprocal density: kppa = density * V_rec * N, V_rec = (2 pi)^3 / V;
    n_i = max(1, floor((kppa / N * a b c)^(1/3) / a_i)) (pymatgen's automatic_density)."""
    a, b, c = atoms.cell.lengths()
    v = atoms.cell.volume
    kppa = density * (2 * math.pi) ** 3 / v * len(atoms)
    m = (kppa / len(atoms) * a * b * c) ** (1 / 3)
    return [max(1, math.floor(m / x)) for x in (a, b, c)]


def test_vasp_inputs_gamma_li3ps4(tmp_path, phase, cli):
    from ase.io import read as ase_read
    from pymatgen.io.vasp import Incar, Kpoints

    atoms = phase("gamma-Li3PS4")  # Pmn2_1, 16 atoms, a,b,c = 6.136, 6.535, 7.709 Å
    atoms.info["e_hull"] = 0.0
    src = tmp_path / "in.extxyz"
    write_frames([atoms], str(src))
    env = {"PMG_VASP_PSP_DIR": ""}
    r = cli("dft-select", src, "--write-vasp", tmp_path / "vasp", "-o", tmp_path / "sel.extxyz", env=env)
    assert r.returncode == 0, r.stderr
    assert "PMG_VASP_PSP_DIR" in r.stderr and "POTCAR" in r.stderr
    folders = (tmp_path / "vasp" / "folders.txt").read_text().split()
    assert folders == ["00000_ref-gamma-Li3PS4"]
    d = tmp_path / "vasp" / folders[0]
    assert not (d / "POTCAR").exists()
    assert (d / "POTCAR.spec").read_text().split() == ["Li_sv", "P", "S"]

    incar = Incar.from_file(d / "INCAR")
    assert incar["ENCUT"] == 520
    assert incar["EDIFF"] == pytest.approx(5e-5 * 16)  # 8e-4 eV per cell
    assert incar["EDIFFG"] == pytest.approx(10 * 5e-5 * 16)  # positive: energy criterion
    assert incar["EDIFFG"] > 0
    for key, value in {"ISIF": 3, "IBRION": 2, "ISMEAR": -5, "NSW": 99, "PREC": "Accurate", "ISPIN": 2}.items():
        assert incar[key] == value, key
    assert "LDAU" not in incar or not incar["LDAU"]  # no +U for Li-P-S

    kp = Kpoints.from_file(d / "KPOINTS")
    assert kp.style.name == "Gamma"
    assert list(kp.kpts[0]) == [4, 3, 3] == _mp_mesh_by_hand(atoms)
    text = (d / "KPOINTS").read_text().splitlines()
    assert text[2].strip().lower().startswith("gamma") and text[3].split() == ["4", "3", "3"]

    poscar = ase_read(d / "POSCAR", format="vasp")
    assert poscar.get_chemical_formula() == atoms.get_chemical_formula()
    assert np.allclose(poscar.cell.lengths(), atoms.cell.lengths(), atol=1e-6)
    from ase.geometry import get_distances

    for sym in ("Li", "P", "S"):  # same sites, up to order within a species and lattice translations
        mine = atoms.positions[[s == sym for s in atoms.get_chemical_symbols()]]
        theirs = poscar.positions[[s == sym for s in poscar.get_chemical_symbols()]]
        _, dist = get_distances(mine, theirs, cell=atoms.cell, pbc=True)
        assert dist.min(axis=1).max() < 1e-5
    frame = json.loads((d / "cscli_frame.json").read_text())
    assert frame["info"]["id"] == "ref-gamma-Li3PS4"


def test_kpoint_mesh_for_other_phases(tmp_path, phase):
    """Hand formula vs written KPOINTS on a triclinic/hexagonal/cubic set of real phases."""
    from pymatgen.io.vasp import Kpoints

    from cscli.dft.vasp import write_vasp_inputs

    names = ["Li2S", "Li7P3S11", "Li2PS3-hex", "beta-Li3PS4"]
    frames = [phase(n) for n in names]
    rep = write_vasp_inputs(frames, str(tmp_path / "v"))
    for atoms, folder in zip(frames, rep.folders):
        kp = Kpoints.from_file(tmp_path / "v" / folder / "KPOINTS")
        assert kp.style.name == "Gamma"
        assert list(kp.kpts[0]) == _mp_mesh_by_hand(atoms), atoms.info["phase"]
    # beta-Li3PS4 (Pnma, 32 atoms, cell 6.1235 x 8.220 x 12.819 Å): V = 645.3 Å^3,
    # kppa = 64 (2 pi)^3 / V * 32 = 787, m = (787/32 * V)^(1/3) = 25.13 -> floor(4.10, 3.06, 1.96)
    assert np.allclose(frames[3].cell.lengths(), [6.1235, 8.220, 12.819], atol=1e-3)
    assert _mp_mesh_by_hand(frames[3]) == [4, 3, 1]


def _make_vasp_dir(tmp_path, phase, cli, n=3):
    frames = _pool(phase, [0.0] * n)
    src = tmp_path / "in.extxyz"
    write_frames(frames, str(src))
    r = cli(
        "dft-select",
        src,
        "--write-vasp",
        tmp_path / "vasp",
        "--slurm-max-parallel",
        "2",
        "--sbatch=--partition=cpu",
        "--incar",
        "NCORE=4",
        "-o",
        tmp_path / "sel.extxyz",
    )
    assert r.returncode == 0, r.stderr
    return tmp_path / "vasp"


def test_sbatch_script_syntax_and_header(tmp_path, phase, cli):
    root = _make_vasp_dir(tmp_path, phase, cli)
    script = root / "run_vasp_array.sbatch"
    text = script.read_text()
    assert text.startswith("#!/bin/bash\n")
    assert "#SBATCH --array=0-2%2\n" in text and "#SBATCH --partition=cpu\n" in text
    assert "${VASP_CMD:-vasp_std}" in text
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    from pymatgen.io.vasp import Incar

    assert Incar.from_file(root / "00000_c0000" / "INCAR")["NCORE"] == 4


def test_sbatch_test_only(tmp_path, phase, cli):
    """The written script passes sbatch --test-only on a real one-node SLURM (tests/slurm_cluster.py;
    its --ntasks=32 is shrunk to the node, the rest of the #SBATCH lines are checked as written)."""
    from slurm_cluster import TEST_ONLY_OK, cluster_env, sbatch_test_only

    env = cluster_env()
    root = _make_vasp_dir(tmp_path, phase, cli)
    r = sbatch_test_only(root / "run_vasp_array.sbatch", env=env)
    assert r.returncode == 0, r.stderr
    m = TEST_ONLY_OK.search(r.stderr)
    assert m and m.group(1) == "cpu", r.stderr
    # and a bad --slurm-time would be refused by SLURM, not only by bash -n
    script = root / "run_vasp_array.sbatch"
    script.write_text(script.read_text().replace("#SBATCH --time=", "#SBATCH --time=x"))
    r = sbatch_test_only(script, env=env)
    assert r.returncode != 0 and "Invalid --time specification" in r.stderr, r.stderr


def test_sbatch_script_runs_a_task(tmp_path, phase, cli):
    """Run array task 1 as SLURM would: POTCAR assembled from POTCAR.spec, VASP_CMD run in folder 2."""
    root = _make_vasp_dir(tmp_path, phase, cli)
    psp = tmp_path / "psp" / "POT_GGA_PAW_PBE"
    psp.mkdir(parents=True)
    (psp / "POTCAR.Li_sv").write_text("fake Li_sv\n")
    with gzip.open(psp / "POTCAR.S.gz", "wt") as fh:
        fh.write("fake S\n")
    env = dict(os.environ, SLURM_ARRAY_TASK_ID="1", PMG_VASP_PSP_DIR=str(tmp_path / "psp"), VASP_CMD="pwd")
    r = subprocess.run(["bash", str(root / "run_vasp_array.sbatch")], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    folder = root / "00001_c0001"
    assert (folder / "POTCAR").read_text() == "fake Li_sv\nfake S\n"
    assert (folder / "vasp.out").read_text().strip() == str(folder.resolve())
    assert not (root / "00000_c0000" / "vasp.out").exists()
    # a finished folder is skipped on a re-run
    (folder / "OUTCAR").write_text(" General timing and accounting informations for this job:\n")
    (folder / "vasp.out").unlink()
    r = subprocess.run(["bash", str(root / "run_vasp_array.sbatch")], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "skipping" in r.stdout and not (folder / "vasp.out").exists()
    # a missing POTCAR is a clear error
    env_bad = dict(env, SLURM_ARRAY_TASK_ID="2", PMG_VASP_PSP_DIR=str(tmp_path / "nowhere"))
    env_bad.pop("VASP_PP_PATH", None)
    r = subprocess.run(["bash", str(root / "run_vasp_array.sbatch")], capture_output=True, text=True, env=env_bad)
    assert r.returncode == 1 and "no POTCAR for Li_sv" in r.stderr


def test_write_vasp_refuses_to_overwrite_runs(tmp_path, phase, cli):
    root = _make_vasp_dir(tmp_path, phase, cli)
    (root / "00000_c0000" / "OUTCAR").write_text("x")
    src = tmp_path / "in.extxyz"
    r = cli("dft-select", src, "--write-vasp", root, "-o", tmp_path / "sel2.extxyz")
    assert r.returncode == 1 and "already holds VASP output" in r.stderr
