"""Resume, shards and per-frame failures of long commands."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from conftest import REPO

from cscli.core.errors import DataError, UsageError
from cscli.core.frames import read_frames, write_frames
from cscli.core.log import configure
from cscli.core.stream import StreamOptions, finish, parse_shard, run_stream, shard_of


def li_frames(n, prefix="li"):
    frames = []
    for k in range(n):
        atoms = bulk("Li", "bcc", a=3.44 + 0.001 * k, cubic=True)
        atoms.info["id"] = f"{prefix}{k}"
        frames.append(atoms)
    return frames


def test_shards_partition_ids_deterministically():
    ids = [f"gen-{k}" for k in range(1000)]
    n = 4
    parts = [{i for i in ids if shard_of(i, n) == s} for s in range(n)]
    assert set().union(*parts) == set(ids)
    assert sum(len(p) for p in parts) == len(ids)
    assert all(150 < len(p) < 350 for p in parts)  # a hash split, not all in one shard
    # independent of order and of the Python process (no PYTHONHASHSEED dependence)
    out = subprocess.run(
        [sys.executable, "-c", "from cscli.core.stream import shard_of; print(shard_of('gen-7', 4))"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": "123", "PYTHONPATH": str(REPO)},
    )
    assert int(out.stdout) == shard_of("gen-7", 4)


def test_parse_shard(monkeypatch):
    assert parse_shard("2/5").index == 2
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "4")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "1")
    assert parse_shard("auto").index == 2 and parse_shard("auto").count == 4
    # --array=0-8:4 → tasks 0, 4, 8 are shards 0, 1, 2 of 3
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "0")
    monkeypatch.setenv("SLURM_ARRAY_TASK_STEP", "4")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "3")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "8")
    assert (parse_shard("auto").index, parse_shard("auto").count) == (2, 3)
    # --array=0,2: SLURM says step 1, count 2; task 2 is no shard of 2 and must not drop frames silently
    monkeypatch.setenv("SLURM_ARRAY_TASK_STEP", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
    with pytest.raises(UsageError, match="--shard i/n"):
        parse_shard("auto")


def test_sharded_cli_runs_cover_the_input_once(tmp_path, cli):
    src = tmp_path / "in.extxyz"
    write_frames(li_frames(12), str(src))
    ids = []
    for s in range(3):
        out = tmp_path / f"shard{s}.extxyz"
        r = cli("perturb", src, "-n", "1", "--seed", "0", "--shard", f"{s}/3", "-o", out, "-q")
        assert r.returncode == 0, r.stderr
        ids += [a.info["parent_id"] for a in read_frames(str(out))]
    assert sorted(ids) == sorted(f"li{k}" for k in range(12))


class NaNForLargeCells(Calculator):
    """A calculator that fails (NaN energy) on purpose for one frame: tests failure isolation."""

    implemented_properties = ["energy", "forces", "stress"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        bad = abs(atoms.cell.lengths()[0] - 3.441) < 1e-6
        self.results = {
            "energy": float("nan") if bad else -1.0,
            "forces": np.zeros((len(atoms), 3)),
            "stress": np.zeros(6),
        }


def test_failing_frame_is_reported_and_run_goes_on(tmp_path, capsys):
    from cscli.explore.relax import store_results

    frames = li_frames(3)  # li1 (a=3.441) fails
    out, failed = tmp_path / "out.extxyz", tmp_path / "failed.extxyz"
    configure("test", quiet=True)  # failures are warnings: shown with -q too
    opts = StreamOptions(output=str(out), failed=str(failed), command="test")
    summary = run_stream(iter(frames), lambda a: store_results(a.copy(), NaNForLargeCells()), opts)
    assert (summary.written, summary.failed) == (2, 1)
    assert [a.info["id"] for a in read_frames(str(out))] == ["li0", "li2"]
    (bad,) = read_frames(str(failed))
    assert bad.info["id"] == "li1" and "non-finite" in bad.info["error"]
    assert "frame li1 failed" in capsys.readouterr().err
    finish(summary, opts)  # captured in --failed: exit 0
    opts.failed = None
    with pytest.raises(DataError, match="1 of 3 frames failed"):
        finish(summary, opts)


def test_overlapping_atoms_fail_one_frame_with_clear_message(tmp_path, cli):
    good = bulk("Li", "bcc", a=3.44, cubic=True)
    bad = Atoms("Li2", positions=[[0, 0, 0], [0.3, 0, 0]], cell=[5, 5, 5], pbc=True)
    src = tmp_path / "in.extxyz"
    write_frames([good, bad], str(src))
    r = cli("perturb", src, "-n", "1", "--seed", "1", "-q")
    assert r.returncode == 1
    assert "overlapping atoms (0.300 Å apart" in r.stderr and "Traceback" not in r.stderr
    assert len(read_frames_text(r.stdout)) == 1  # the good frame was still written
    r = cli("perturb", src, "-n", "1", "--seed", "1", "-q", "--failed", tmp_path / "failed.extxyz")
    assert r.returncode == 0


def read_frames_text(text):
    import io

    import ase.io

    return ase.io.read(io.StringIO(text), index=":", format="extxyz") if text.strip() else []


@pytest.mark.slow
def test_resume_after_sigkill_yields_each_id_once(tmp_path):
    """Kill a relax run with SIGKILL mid-way, re-run it: every id exactly once, none lost."""
    frames = li_frames(14)
    for k, atoms in enumerate(frames):
        atoms.rattle(0.05, seed=k)
    src, out = tmp_path / "in.extxyz", tmp_path / "out.extxyz"
    write_frames(frames, str(src))
    cmd = [sys.executable, "-m", "cscli", "relax", str(src), "-o", str(out), "--model", "chgnet", "--steps", "15", "-q"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=REPO)
    deadline = time.time() + 300
    while time.time() < deadline:
        if out.exists() and out.read_text().count("Lattice=") >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = out.read_text().count("Lattice=")
    assert 3 <= partial < 14, "the kill must land mid-run"
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    assert r.returncode == 0, r.stderr
    ids = [a.info["id"] for a in read_frames(str(out))]
    assert sorted(ids) == sorted(f"li{k}" for k in range(14))
    assert len(ids) == len(set(ids))
    # a third run has nothing left to do
    r = subprocess.run([*cmd[:-1]], capture_output=True, text=True, env=env, cwd=REPO)
    assert "14 already done" in r.stderr
