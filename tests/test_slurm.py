"""The SLURM scripts against a real one-node SLURM (scripts/slurm_local.sh; Debian slurm-wlm + munge).

* every example with ``#SBATCH`` lines passes ``sbatch --test-only`` (option names, --time, --array,
  --partition as written; only the cluster-sized resources are shrunk to this node), and a broken
  line in one is rejected;
* a real array job runs ``cscli perturb --shard auto`` end to end: the tasks' outputs together hold
  every input frame exactly once, each in the shard its id hashes to, and equal a serial run;
* (slow) the shipped ``examples/slurm_relax_array.sh`` relaxes two frames as a 2-task array.

Skips with the reason where SLURM is not installed (see tests/slurm_cluster.py).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from slurm_cluster import TEST_ONLY_OK, cluster_env, sbatch, sbatch_test_only

from cscli.core.frames import read_frames, write_frames
from cscli.core.stream import shard_of

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(
    p
    for p in (REPO / "examples").iterdir()
    if p.suffix in (".sh", ".sbatch") and re.search(r"^#SBATCH ", p.read_text(), re.M)
)


@pytest.fixture(scope="module")
def slurm():
    return cluster_env()


def test_the_sbatch_examples_are_all_found():
    assert {p.name for p in EXAMPLES} >= {
        "slurm_relax_array.sh",
        "label_gpaw_array.sbatch",
        "vasp_array.sbatch",
        "collect_after_array.sbatch",
    }


def _directives_before_first_command(text: str) -> list[str]:
    """The #SBATCH lines sbatch reads: it stops at the first line that is not blank or a comment."""
    lines = text.splitlines()[1:]
    seen = []
    for line in lines:
        s = line.strip()
        if s and not s.startswith("#"):
            break
        if s.startswith("#SBATCH"):
            seen.append(s)
    return seen


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_passes_sbatch_test_only(script, slurm):
    text = script.read_text()
    assert text.startswith("#!/bin/bash\n")
    # a #SBATCH line after the first command is silently ignored by sbatch
    assert _directives_before_first_command(text) == re.findall(r"^#SBATCH .*$", text, re.M)
    r = sbatch_test_only(script, env=slurm)
    assert r.returncode == 0, r.stderr
    m = TEST_ONLY_OK.search(r.stderr)
    assert m and m.group(1) == "cpu", r.stderr


BROKEN = {  # a one-line change to examples/label_gpaw_array.sbatch -> what sbatch says
    "time": ("--time=12:00:00", "--time=12:00:0x", "Invalid --time specification"),
    "array": ("--array=0-15", "--array=15-0", "Invalid job array specification"),
    "option": ("--cpus-per-task=4", "--cpus-per-tsk=4", "unrecognized option '--cpus-per-tsk=4'"),
    "partition": ("--ntasks=1", "--partition=gpu", "invalid partition specified: gpu"),
    "ntasks": ("--ntasks=1", "--ntasks=one", 'Invalid numeric value "one" for --ntasks'),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_sbatch_line_is_rejected(case, slurm, tmp_path):
    old, new, message = BROKEN[case]
    text = (REPO / "examples" / "label_gpaw_array.sbatch").read_text()
    assert f"#SBATCH {old}\n" in text
    script = tmp_path / "broken.sbatch"
    script.write_text(text.replace(f"#SBATCH {old}\n", f"#SBATCH {new}\n"))
    r = sbatch_test_only(script, env=slurm)
    assert r.returncode != 0 and message in r.stderr, r.stderr


SHARD_JOB = """#!/bin/bash
#SBATCH --job-name=cscli-test-shards
#SBATCH --output=slurm-%A_%a.out
set -euo pipefail
cscli perturb in.extxyz --shard auto -n 2 --seed 7 -q -o "perturbed.${SLURM_ARRAY_TASK_ID}.extxyz"
"""


@pytest.mark.parametrize(
    "array, tasks",
    [
        ("0-1", [0, 1]),
        ("3-5", [3, 4, 5]),  # shard k = task id - first id
        ("0-4:4", [0, 4]),  # shard k = (task id - first id) / step
    ],
)
def test_array_job_shards_hold_every_frame_once(array, tasks, slurm, tmp_path, reference_phases, cli):
    """--shard auto in a real array: the k-th task of N takes the ids that hash to k, the outputs
    together are the serial run's frames, each exactly once."""
    n = len(tasks)
    write_frames(reference_phases, str(tmp_path / "in.extxyz"))
    (tmp_path / "job.sbatch").write_text(SHARD_JOB)
    r = sbatch("--wait", f"--array={array}", "--time=5", "--cpus-per-task=1", "job.sbatch", env=slurm, cwd=tmp_path)
    logs = {p.name: p.read_text() for p in tmp_path.glob("slurm-*.out")}
    assert r.returncode == 0, (r.stderr, logs)
    assert len(logs) == n, logs

    input_ids = [a.info["id"] for a in reference_phases]
    by_task = {k: read_frames(str(tmp_path / f"perturbed.{task}.extxyz")) for k, task in enumerate(tasks)}
    parents = Counter()
    for k, frames in by_task.items():
        assert frames, f"task {tasks[k]} wrote no frame"
        for a in frames:
            assert shard_of(a.info["parent_id"], n) == k, (k, a.info["parent_id"])
            parents[a.info["parent_id"]] += 1
    assert sorted(parents) == sorted(input_ids) and set(parents.values()) == {2}

    serial = cli("perturb", tmp_path / "in.extxyz", "-n", "2", "--seed", "7", "-q", "-o", tmp_path / "serial.extxyz")
    assert serial.returncode == 0, serial.stderr
    ref = {a.info["id"]: a for a in read_frames(str(tmp_path / "serial.extxyz"))}
    got = {a.info["id"]: a for frames in by_task.values() for a in frames}
    assert sorted(got) == sorted(ref) and len(ref) == 2 * len(input_ids)
    for fid, a in got.items():
        assert np.allclose(a.cell.array, ref[fid].cell.array, atol=1e-8)
        assert np.allclose(a.positions, ref[fid].positions, atol=1e-8)


@pytest.mark.slow
def test_relax_array_example_end_to_end(slurm, tmp_path, reference_phases):
    """examples/slurm_relax_array.sh as shipped, as a 2-task array on 2 small frames with 7net-0."""
    small = sorted((a for a in reference_phases if len(a) <= 8), key=len)
    picked = [next(a for a in small if shard_of(a.info["id"], 2) == k) for k in (0, 1)]
    write_frames(picked, str(tmp_path / "cand.extxyz"))
    env = dict(slurm, CSCLI_MODEL="7net-0")
    r = sbatch(
        "--wait",
        "--array=0-1",
        "--time=10",
        "--cpus-per-task=1",
        REPO / "examples" / "slurm_relax_array.sh",
        "cand.extxyz",
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    logs = {p.name: p.read_text() for p in tmp_path.glob("slurm-*.out")}
    assert r.returncode == 0, (r.stderr, logs)
    for k, atoms in enumerate(picked):
        out = read_frames(str(tmp_path / f"relaxed.{k}.extxyz"))
        assert [a.info["id"] for a in out] == [atoms.info["id"]]
        assert out[0].info["model"] == "7net-0" and out[0].info["relax_converged"]
        assert np.isfinite(out[0].info["energy"]) and np.abs(out[0].arrays["forces"]).max() < 0.05 + 1e-6
        assert not (tmp_path / f"failed.{k}.extxyz").exists() or not read_frames(str(tmp_path / f"failed.{k}.extxyz"))
