"""A real one-node SLURM cluster for tests: ``scripts/slurm_local.sh`` started once per pytest process.

``cluster_env()`` returns the environment to run ``sbatch``/``squeue`` in (``SLURM_CONF`` set, no
``SLURM_*``/``SBATCH_*`` variables of an outer job, ``cscli`` on ``PATH`` running this checkout),
or skips with the reason when SLURM (Debian ``slurm-wlm`` + ``munge``) is not installed. Installed
but not coming up within ``CSCLI_SLURM_TIMEOUT`` (30 s) also skips, except under CI (``CI`` set),
where it fails: CI installs the packages, so a cluster that does not start there is a bug.
The daemons are stopped and their folder removed when the Python process exits.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "slurm_local.sh"
TOOLS = ("slurmctld", "slurmd", "sbatch", "sinfo", "munged", "mungekey")
# sbatch --test-only answers on stderr, e.g.
# "sbatch: Job 8 to start at 2026-11-23T23:16:05 using 1 processors on nodes localhost in partition cpu"
TEST_ONLY_OK = re.compile(r"Job \d+ to start at \S+ using \d+ processors on nodes localhost in partition (\S+)")

_state: dict = {}


def _which(tool: str) -> str | None:
    return shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")


def _base_env() -> dict:
    outer = ("SLURM_", "SBATCH_", "SALLOC_", "SRUN_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(outer)}
    env["PATH"] = env.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin"
    return env


def _stop() -> None:
    folder = _state.pop("dir", None)
    if folder is None:
        return
    subprocess.run(
        ["bash", str(SCRIPT), "stop"], env=dict(_base_env(), CSCLI_SLURM_DIR=folder), capture_output=True, timeout=60
    )
    shutil.rmtree(folder, ignore_errors=True)


def _give_up(reason: str) -> None:
    from conftest import missing_prerequisite

    _state["broken"] = reason
    missing_prerequisite(reason)


def cluster_env() -> dict:
    """The environment of a running one-node cluster (started on first use), or skip."""
    if "env" in _state:
        return dict(_state["env"])
    if "broken" in _state:
        _give_up(_state["broken"])
    if "skip" in _state:
        pytest.skip(_state["skip"])
    missing = [t for t in TOOLS if _which(t) is None]
    if missing:
        _state["skip"] = f"SLURM not installed ({', '.join(missing)} missing; Debian: apt-get install slurm-wlm munge)"
        pytest.skip(_state["skip"])
    folder = tempfile.mkdtemp(prefix="cscli-slurm-")  # short: slurmd's step sockets live under it
    _state["dir"] = folder
    atexit.register(_stop)
    env = dict(_base_env(), CSCLI_SLURM_DIR=folder, CSCLI_SLURM_TIMEOUT="30")
    try:
        r = subprocess.run(["bash", str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        _stop()
        _give_up("the local SLURM cluster did not start within 60 s")
    m = re.search(r"^export SLURM_CONF=(\S+)$", r.stdout, re.M)
    if r.returncode != 0 or m is None:
        _stop()
        _give_up("the local SLURM cluster did not come up: " + (r.stderr.strip() or r.stdout.strip())[-600:])
    shim = Path(folder) / "bin"
    shim.mkdir()
    (shim / "cscli").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m cscli "$@"\n')
    (shim / "cscli").chmod(0o755)
    env.update(
        SLURM_CONF=m.group(1),
        PATH=f"{shim}:{env['PATH']}",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    )
    _state["env"] = env
    return dict(env)


def sbatch(*args, env: dict, cwd=None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``sbatch ARGS`` against the local cluster (text mode, output captured)."""
    return subprocess.run(
        ["sbatch", *map(str, args)], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


# What --test-only overrides: the examples ask for cluster-sized resources (--ntasks=64,
# --cpus-per-task=4) that this one small node cannot give; everything else in the #SBATCH lines
# (option names, --time, --array, --partition, --output patterns) is checked as written.
FIT_THIS_NODE = ("--nodes=1", "--ntasks=1", "--cpus-per-task=1")


def sbatch_test_only(script, *args, env: dict) -> subprocess.CompletedProcess:
    """``sbatch --test-only`` on SCRIPT with its resource requests shrunk to this node."""
    return sbatch("--test-only", *FIT_THIS_NODE, script, *args, env=env, cwd=Path(script).parent)
