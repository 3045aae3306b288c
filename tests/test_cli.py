"""The CLI as a user meets it: help is import-light, bad input gives one clear line and an exit code."""

import subprocess
import sys

import pytest
from ase.build import bulk
from conftest import REPO

from cscli.core.frames import write_frames


@pytest.mark.parametrize("args", [["--help"], ["relax", "--help"], ["perturb", "--help"]])
def test_help_does_not_import_heavy_packages(args):
    """`cscli --help` stays instant because torch, ASE and pymatgen are imported only inside commands."""
    code = (
        "import sys\nfrom cscli.cli.main import cli\n"
        f"try:\n    cli({args!r})\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'ase', 'pymatgen', 'chgnet', 'sevenn', 'deepmd') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert "HEAVY []" in r.stdout, r.stdout + r.stderr


def test_version_and_command_list(cli):
    r = cli("--version")
    assert r.returncode == 0 and "cscli" in r.stdout
    r = cli("--help")
    for name in ("relax", "perturb", "sun-filter", "motifs", "entropy-select"):
        assert name in r.stdout


def one_error_line(r):
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert "Traceback" not in r.stderr, r.stderr
    return lines[-1]


def test_malformed_file(tmp_path, cli):
    bad = tmp_path / "bad.extxyz"
    bad.write_text('3\nLattice="5 0 0 0 5 0 0 0 5"\nLi 0 0 0\n')
    r = cli("perturb", bad)
    assert r.returncode == 1 and "frame truncated" in one_error_line(r)


def test_unknown_element(tmp_path, cli):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"symbols": ["Qq"], "positions": [[0, 0, 0]], "cell": [5, 5, 5], "pbc": true}\n')
    r = cli("perturb", bad)
    assert r.returncode == 1 and "unknown element" in one_error_line(r)


def test_empty_input(cli):
    r = cli("perturb", input="")
    assert r.returncode == 1 and "no frames in input" in one_error_line(r)


def test_missing_file_and_duplicate_ids(tmp_path, cli):
    r = cli("perturb", tmp_path / "nope.extxyz")
    assert r.returncode == 1 and "no such file" in one_error_line(r)
    a = bulk("Li")
    a.info["id"] = "same"
    path = tmp_path / "dup.extxyz"
    write_frames([a, a.copy()], str(path))
    r = cli("perturb", path, "-q")
    assert r.returncode == 1 and "duplicate frame id 'same'" in one_error_line(r)


def test_model_errors(tmp_path, cli):
    src = tmp_path / "li.extxyz"
    write_frames([bulk("Li", "bcc", a=3.44, cubic=True)], str(src))
    r = cli("relax", src, "--model", "no-such-model")
    assert r.returncode == 2 and "unknown model 'no-such-model'" in one_error_line(r)
    r = cli("relax", src, "--model", tmp_path / "missing.pth")
    assert r.returncode == 1 and "model file not found" in one_error_line(r)
    junk = tmp_path / "junk.pth"
    junk.write_text("not a model")
    r = cli("relax", src, "--model", junk)
    assert r.returncode == 1 and "not a PyTorch model file" in one_error_line(r)
    r = cli("relax", src, "--model", "mattersim-1m", env={"HOME": str(tmp_path)})
    line = one_error_line(r)
    assert r.returncode == 1 and "weights mattersim-v1.0.0-1M.pth not found" in line and "cannot download" in line
    r = cli("relax", src, "--model", "dpa3", env={"HOME": str(tmp_path), "CSCLI_MODEL_DIR": str(tmp_path)})
    assert r.returncode == 1 and "DPA-3.1-3M weights not found" in one_error_line(r)


def test_usage_errors(tmp_path, cli):
    r = cli("perturb", "--shard", "5/3", input="")
    assert r.returncode == 2 and "need 0 <= i < n" in r.stderr
    r = cli("perturb", "--sigma", "0.2,0.1", input="")
    assert r.returncode == 2


def test_debug_shows_the_traceback(tmp_path, cli):
    r = cli("--debug", "perturb", tmp_path / "nope.extxyz")
    assert r.returncode != 0 and "Traceback" in r.stderr
