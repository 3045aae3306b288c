"""scripts/loop.sh: two iterations of a tiny loop (the force field stands in for DFT), killed in the
middle of iteration 0 and resumed without redoing finished steps; iteration 1 relaxes with
iteration 0's fine-tuned model and its hull uses iteration 0's candidates as references."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cscli.core.frames import read_frames

REPO = Path(__file__).resolve().parents[1]
LOOP = REPO / "scripts" / "loop.sh"

TINY = """\
N_GENERATE=3
GENERATE_OPTS="--charge-balance --max-atoms 8"
MODEL=7net-0
RELAX_OPTS="--fmax 0.2 --steps 8"
REFS_RELAX_OPTS="--fmax 0.2 --steps 3"
DFT_BINS="-inf:inf:2"
N_PERTURB=1
LABELLER=model
LABEL_MODEL=7net-0
FT_BACKEND=sevennet
FT_INIT=7net-0
FT_OPTS="--epochs 2"
QUIET=-q
"""
# The small reference phases (the elements and six compounds, 118 atoms): the loop's cost is per
# command, and relaxing the three 56-125-atom phases twice would double the references' share.
SMALL_REFS = ("Li", "P", "S", "Li2S", "Li3P", "gamma-Li3PS4", "Li2PS3-hex", "Li4P2S6", "Li2P2S6")


def _small_refs(path: Path) -> Path:
    from cscli.core.datafiles import reference_phases_path
    from cscli.core.frames import write_frames

    write_frames([a for a in read_frames(reference_phases_path()) if a.info["phase"] in SMALL_REFS], str(path))
    return path


def _env(tmp_path):
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "cscli").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m cscli "$@"\n')
    (shim / "cscli").chmod(0o755)
    return dict(
        os.environ,
        PATH=f"{shim}:{os.environ['PATH']}",
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    )


def _snapshot(folder: Path) -> dict:
    return {
        p.relative_to(folder): (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.mark.slow
def test_two_iterations_resume_after_kill_and_hull_on_earlier_frames(tmp_path):
    env = _env(tmp_path)
    (tmp_path / "tiny.env").write_text(TINY + f"REFS={_small_refs(tmp_path / 'refs.extxyz')}\n")
    out = tmp_path / "loop"
    cmd = ["bash", str(LOOP), "--config", str(tmp_path / "tiny.env"), "--out", str(out), "--iterations", "2"]

    # 1. start, kill -9 the whole process group as soon as iteration 0's relax is done
    with open(tmp_path / "run1.log", "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        marker = out / "iter_000" / ".done" / "relax"
        deadline = time.time() + 1800
        while not marker.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        assert marker.exists(), (tmp_path / "run1.log").read_text()[-3000:]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finished = _snapshot(out / "iter_000")
    done_before = sorted(p.name for p in (out / "iter_000" / ".done").iterdir())
    assert {"generate", "relax", "refs_relax"} <= set(done_before) and "finetune" not in done_before

    # 2. re-run: the finished steps are skipped, their outputs untouched; the rest completes
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    assert r.returncode == 0, r.stderr[-4000:]
    for name in done_before:
        assert f"iter_000: {name} done, skipped" in r.stderr
    after = _snapshot(out / "iter_000")
    for rel in ("generated.extxyz", "relaxed.extxyz"):
        assert after[Path(rel)] == finished[Path(rel)], rel
    for k in (0, 1):
        it = out / f"iter_{k:03d}"
        for name in ("generated", "relaxed", "hull", "labelled"):
            ids = [a.info["id"] for a in read_frames(str(it / f"{name}.extxyz"))]
            assert ids and len(ids) == len(set(ids)), (k, name)
        assert (it / "finetune" / "model.pth").is_file() and (it / "eval_after.json").is_file()

    # 3. iteration 1: relaxed with iteration 0's fine-tuned model; hull against refs + iteration 0,
    #    all evaluated with that model
    it0, it1 = out / "iter_000", out / "iter_001"
    relaxed1 = read_frames(str(it1 / "relaxed.extxyz"))
    model1 = {a.info["model"] for a in relaxed1}
    from cscli.core.models import file_digest, load_calculator

    # not iteration 0's 7net-0, and named by the file's content (every iteration writes a model.pth)
    assert model1 == {f"sevennet:model.pth@{file_digest(it0 / 'finetune' / 'model.pth')}"}

    calc = load_calculator(str(it0 / "finetune" / "model.pth"), device="cpu")  # iteration 0's fine-tune
    probe = relaxed1[0].copy()
    probe.calc = calc
    assert probe.get_potential_energy() == pytest.approx(relaxed1[0].info["energy"], abs=1e-5)
    refs1 = read_frames(str(it1 / "refs.extxyz"))
    assert {a.info["model"] for a in refs1} == model1
    ids0 = {a.info["id"] for a in read_frames(str(it0 / "relaxed.extxyz"))}
    ref_ids = {a.info["id"] for a in refs1}
    assert ids0 <= ref_ids and len(ref_ids - ids0) == len(SMALL_REFS)  # the reference phases + iteration 0
    from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
    from pymatgen.core import Composition

    pd = PhaseDiagram([PDEntry(Composition(a.get_chemical_formula()), a.info["energy"]) for a in refs1])
    hull1 = read_frames(str(it1 / "hull.extxyz"))
    expected = [
        pd.get_e_above_hull(PDEntry(Composition(a.get_chemical_formula()), a.info["energy"]), allow_negative=True)
        for a in hull1
    ]
    np.testing.assert_allclose([a.info["e_hull"] for a in hull1], expected, atol=1e-9)
    # iteration 0's candidates are known structures in iteration 1: a copy would not be novel
    assert all(a.info["model"] in model1 for a in hull1)

    # 4. the report of both iterations
    import json

    rep = json.loads((out / "report" / "report.json").read_text())
    assert [row["iteration"] for row in rep["iterations"]] == [0, 1]
    assert rep["iterations"][1]["relaxed"] == len(relaxed1)
    assert rep["iterations"][0]["label_methods"] == ["mlff-oracle:7net-0"] and rep["iterations"][0]["dft_frames"] == 0

    # 5. a third run redoes nothing
    before = _snapshot(out / "iter_001")
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "iter_001: finetune done, skipped" in r.stderr
    assert not re.search(r"^== .*iter_\d{3}: ", r.stderr, re.M), r.stderr  # no step ran
    assert _snapshot(out / "iter_001") == before
