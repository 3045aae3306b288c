"""Shared test fixtures.

Tests that need ``../shared/data`` use the ``shared_data`` fixture, which skips with a reason when
the folder is absent (and fails under CI, see :func:`missing_prerequisite`). CLI tests run the real entry point in a subprocess (``run_cli``) so that
pipes, exit codes and stderr are exactly what a user sees.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[1]


def missing_prerequisite(reason: str) -> None:
    """Skip a test whose prerequisite (GPAW, the shared data, a SLURM cluster) is missing here, with
    the reason; under CI (``CI`` set) fail instead: CI provides them, so a missing one is a bug there."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI provides it, so this is a failure there)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    from cscli.core.datafiles import shared_data_dir

    path = shared_data_dir()
    if path is None:
        missing_prerequisite("needs ../shared/data beside the checkout (or CSCLI_SHARED_DATA); not present here")
    return path


@pytest.fixture(scope="session")
def reference_phases():
    """The 16 shipped Li-P-S reference phases as a list of Atoms (id ref-<phase>)."""
    from cscli.core.datafiles import reference_phases_path
    from cscli.core.frames import read_frames

    return read_frames(str(reference_phases_path()))


@pytest.fixture(scope="session")
def phase(reference_phases):
    """Look up one reference phase by name: phase('gamma-Li3PS4')."""
    by_name = {a.info["phase"]: a for a in reference_phases}

    def get(name):
        return by_name[name].copy()

    return get


def run_cli(*args, input: str | bytes | None = None, cwd=None, env=None, timeout=600) -> subprocess.CompletedProcess:
    """Run ``python -m cscli ARGS`` as a user would; returns the CompletedProcess (text mode)."""
    full_env = dict(os.environ)
    full_env.setdefault("PYTHONPATH", str(REPO))
    full_env["PYTHONPATH"] = str(REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "cscli", *map(str, args)],
        input=input,
        capture_output=True,
        text=True,
        cwd=cwd or REPO,
        env=full_env,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def cli():
    """``cli(*args, input=..., env=...)``: run ``python -m cscli ARGS`` (see :func:`run_cli`)."""
    return run_cli


def run_cli_batch(cases: list[dict], timeout: float = 1200) -> list[SimpleNamespace]:
    """Run many command lines, each ``{"args": [...], "cwd": DIR, "stdin": FILE}``, in one
    interpreter with one forked process each (tests/cli_batch.py): the same entry point, exit
    status, stdout and stderr as ``run_cli`` at a fraction of the start-up cost. Each result has
    ``returncode``, ``stdout``, ``stderr`` and ``imported`` (model packages the command imported)."""
    import json
    import tempfile

    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    with tempfile.TemporaryDirectory() as tmp:
        cases_path, results_path = Path(tmp) / "cases.json", Path(tmp) / "results.json"
        cases_path.write_text(
            json.dumps(
                [
                    {
                        **c,
                        "args": [str(a) for a in c["args"]],
                        "cwd": str(c.get("cwd") or REPO),
                        "stdin": str(c["stdin"]) if c.get("stdin") else None,
                    }
                    for c in cases
                ]
            )
        )
        r = subprocess.run(
            [sys.executable, str(REPO / "tests" / "cli_batch.py"), str(cases_path), str(results_path)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
            timeout=timeout,
        )
        assert r.returncode == 0, r.stderr
        return [SimpleNamespace(**res) for res in json.loads(results_path.read_text())]


@pytest.fixture(scope="session")
def cli_batch():
    return run_cli_batch
