"""examples/slurm/: one loop iteration as a chain of sbatch jobs (relax and label as --shard auto
arrays, --dependency=afterok between stages) on the local one-node SLURM (scripts/slurm_local.sh);
the merged array outputs equal a serial run of the same commands."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from slurm_cluster import cluster_env, sbatch, sbatch_test_only

from cscli.core.frames import read_frames

REPO = Path(__file__).resolve().parents[1]
CHAIN = REPO / "examples" / "slurm"
STAGES = ["generate", "relax", "screen", "label", "learn", "md_screen"]


@pytest.mark.parametrize("stage", STAGES)
def test_stage_scripts_pass_sbatch_test_only(stage):
    env = cluster_env()
    r = sbatch_test_only(CHAIN / f"{stage}.sbatch", env=env)
    assert r.returncode == 0, r.stderr


def _frames_by_id(path):
    return {a.info["id"]: a for a in read_frames(str(path))}


def _assert_same(chain, serial, keys=("energy",)):
    assert sorted(chain) == sorted(serial) and chain
    for fid, a in chain.items():
        b = serial[fid]
        np.testing.assert_allclose(a.positions, b.positions, atol=1e-6)
        np.testing.assert_allclose(a.cell.array, b.cell.array, atol=1e-6)
        for key in keys:
            np.testing.assert_allclose(a.info[key], b.info[key], rtol=1e-6, atol=1e-6)


@pytest.mark.slow
def test_chain_of_one_iteration_equals_a_serial_run(tmp_path, cli):
    from cscli.core.datafiles import reference_phases_path

    env = cluster_env()
    out = tmp_path / "loop"
    settings = [
        "N_GENERATE=3",
        "GENERATE_OPTS=--charge-balance --max-atoms 8",
        "MODEL=7net-0",
        "RELAX_OPTS=--fmax 0.2 --steps 8",
        "DFT_BINS=-inf:inf:2",
        "N_PERTURB=1",
        "LABELLER=model",
        "LABEL_MODEL=7net-0",
        f"REFS_RELAXED={reference_phases_path()}",
        "RELAX_TASKS=2",
        "LABEL_TASKS=2",
        "CHAIN_STAGES=generate relax screen label",
        "SBATCH_OPTS=--time=30 --cpus-per-task=1",
    ]
    r = subprocess.run(
        ["bash", str(CHAIN / "submit_iteration.sh"), "--out", str(out), "--iteration", "0", *settings],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    jobs = dict(re.findall(r"^(\w+): job (\d+)$", r.stderr, re.M))
    assert list(jobs) == ["generate", "relax", "screen", "label"], r.stderr
    last = r.stdout.strip()
    assert last == jobs["label"]
    # wait for the chain: a job that depends on the last stage finishing (in any state)
    w = sbatch(
        "--wait",
        f"--dependency=afterany:{last}",
        "--time=5",
        "--cpus-per-task=1",
        f"--output={tmp_path}/wait.out",
        "--wrap=true",
        env=env,
        cwd=tmp_path,
        timeout=1500,
    )
    it = out / "iter_000"
    logs = {p.name: p.read_text()[-1500:] for p in (it / "slurm").glob("*.out")}
    assert w.returncode == 0, (w.stderr, logs)
    assert len(logs) == 6, logs  # generate, 2 relax tasks, screen, 2 label tasks
    for name in ("relaxed", "labelled"):
        assert {p.name for p in it.glob(f"{name}.[0-9]*.extxyz")} == {f"{name}.0.extxyz", f"{name}.1.extxyz"}
    chain_labelled = {}
    for i in (0, 1):
        chain_labelled.update(_frames_by_id(it / f"labelled.{i}.extxyz"))

    # the same commands, serially
    ser = tmp_path / "serial"
    ser.mkdir()
    steps = [
        (
            "generate",
            "--backend",
            "random",
            "-s",
            "Li-P-S",
            "-n",
            "3",
            "--seed",
            "0",
            "--iteration",
            "0",
            "--charge-balance",
            "--max-atoms",
            "8",
            "-o",
            ser / "generated.extxyz",
        ),
        (
            "relax",
            ser / "generated.extxyz",
            "--model",
            "7net-0",
            "--fmax",
            "0.2",
            "--steps",
            "8",
            "-o",
            ser / "relaxed.extxyz",
        ),
        (
            "label",
            it / "selected.extxyz",
            it / "perturbed.extxyz",
            "-c",
            "model",
            "--model",
            "7net-0",
            "-o",
            ser / "labelled.extxyz",
        ),
    ]
    for args in steps:
        s = cli(*args, "-q")
        assert s.returncode == 0, s.stderr
    _assert_same(_frames_by_id(it / "generated.extxyz"), _frames_by_id(ser / "generated.extxyz"), keys=())
    _assert_same(_frames_by_id(it / "relaxed.extxyz"), _frames_by_id(ser / "relaxed.extxyz"))
    _assert_same(chain_labelled, _frames_by_id(ser / "labelled.extxyz"))
    # the screen stage ran on the merged relax output
    hull = _frames_by_id(it / "hull.extxyz")
    assert sorted(hull) == sorted(_frames_by_id(ser / "relaxed.extxyz"))
    assert len(read_frames(str(it / "selected.extxyz"))) == min(2, len(hull))
