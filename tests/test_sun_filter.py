"""cscli sun-filter: S.U.N. flags, summary and errors, checked against plain StructureMatcher."""

from __future__ import annotations

import json

import numpy as np
import pytest


@pytest.fixture(scope="module")
def batch(tmp_path_factory, reference_phases):
    """References: 4 phases. Frames: rattled/rotated/supercell copies of them (not novel),
    copies of 2 phases absent from the references (novel), repeated (not unique), with e_hull set."""
    from cscli.core.frames import write_frames

    by = {a.info["phase"]: a for a in reference_phases}
    ref_names = ["Li2S", "gamma-Li3PS4", "Li3P", "Li4P2S6"]
    new_names = ["Li2P2S6", "Li2PS3-hex"]  # Li2PS3-hex has Li4P2S6's formula: same bucket, different structure
    refs = [by[n].copy() for n in ref_names]
    rng = np.random.default_rng(5)
    frames = []
    e_hull = {"Li2S": 0.0, "gamma-Li3PS4": 0.02, "Li3P": 0.3, "Li4P2S6": 0.05, "Li2P2S6": 0.04, "Li2PS3-hex": 0.2}
    for k in range(2):
        for name in ref_names + new_names:
            atoms = by[name].copy()
            if k == 1:
                atoms = atoms.repeat((1, 2, 1))
                atoms.rotate(33, "z", rotate_cell=True)
            atoms.rattle(0.01, seed=int(rng.integers(1 << 30)))
            atoms.info = {"id": f"{name}-{k}", "e_hull": e_hull[name]}
            frames.append(atoms)
    tmp = tmp_path_factory.mktemp("sun")
    write_frames(frames, str(tmp / "frames.extxyz"))
    write_frames(refs, str(tmp / "refs.extxyz"))
    return tmp, frames, refs


def test_flags_and_summary(batch, cli):
    from cscli.core.frames import read_frames

    tmp, frames, refs = batch
    res = cli(
        "sun-filter",
        tmp / "frames.extxyz",
        "--refs",
        tmp / "refs.extxyz",
        "-o",
        tmp / "out.extxyz",
        "--report",
        tmp / "summary.json",
        "-j",
        "2",
    )
    assert res.returncode == 0, res.stderr
    out = {a.info["id"]: a.info for a in read_frames(str(tmp / "out.extxyz"))}
    assert list(out) == [a.info["id"] for a in frames]  # all frames, input order
    for name in ["Li2S", "gamma-Li3PS4", "Li3P", "Li4P2S6"]:
        assert out[f"{name}-0"]["is_novel"] is False
        assert out[f"{name}-0"]["matches_reference"] == f"ref-{name}"
    for name in ["Li2P2S6", "Li2PS3-hex"]:
        assert out[f"{name}-0"]["is_novel"] is True and "matches_reference" not in out[f"{name}-0"]
        # the rotated supercell copy is a duplicate of the first copy (primitive cell reduction)
        assert out[f"{name}-1"]["is_unique"] is False and out[f"{name}-1"]["duplicate_of"] == f"{name}-0"
        assert out[f"{name}-0"]["is_unique"] is True
    assert out["Li3P-0"]["is_stable"] is False and out["Li2PS3-hex-0"]["is_stable"] is False
    sun = {k for k, v in out.items() if v["is_sun"]}
    assert sun == {"Li2P2S6-0"}  # stable, unique, novel; Li2PS3-hex is above 0.1 eV/atom
    summary = json.loads((tmp / "summary.json").read_text())
    assert summary["frames"] == 12 and summary["sun"] == 1
    assert summary["unique"] == 6 and summary["novel"] == 4 and summary["stable"] == 8
    assert summary["ratios"]["sun"] == pytest.approx(1 / 12)
    assert "1 S.U.N." in res.stderr


def test_decisions_equal_plain_structure_matcher(batch, cli):
    """The same flags from pymatgen StructureMatcher().fit used naively, MatterGen's way."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    from cscli.core.frames import read_frames
    from cscli.screen.matching import atoms_to_structure

    tmp, frames, refs = batch
    res = cli("sun-filter", tmp / "frames.extxyz", "--refs", tmp / "refs.extxyz", "-o", tmp / "o.extxyz", "-j", "1")
    assert res.returncode == 0, res.stderr
    out = read_frames(str(tmp / "o.extxyz"))
    sm = StructureMatcher()
    fs = [atoms_to_structure(a) for a in frames]
    rs = [atoms_to_structure(a) for a in refs]
    reps = []
    for i, s in enumerate(fs):
        unique = not any(sm.fit(s, fs[r]) for r in reps)
        if unique:
            reps.append(i)
        novel = not any(sm.fit(s, r) for r in rs)
        assert out[i].info["is_unique"] is unique
        assert out[i].info["is_novel"] is novel


def test_only_sun_and_stdin(batch, cli):
    from cscli.core.frames import read_frames

    tmp, frames, refs = batch
    text = (tmp / "frames.extxyz").read_text()
    res = cli("sun-filter", "--refs", tmp / "refs.extxyz", "--only-sun", "--e-hull-max", "0.25", "-q", input=text)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    (tmp / "sun.extxyz").write_text(res.stdout)
    assert sorted(a.info["id"] for a in read_frames(str(tmp / "sun.extxyz"))) == ["Li2P2S6-0", "Li2PS3-hex-0"]


def test_missing_e_hull(batch, cli, reference_phases):
    from cscli.core.frames import read_frames, write_frames

    tmp, frames, refs = batch
    stripped = [a.copy() for a in frames[:3]]
    for a in stripped:
        del a.info["e_hull"]
    write_frames(stripped + frames[3:], str(tmp / "noe.extxyz"))
    res = cli("sun-filter", tmp / "noe.extxyz", "--refs", tmp / "refs.extxyz")
    assert res.returncode == 1
    assert "3 of 12 frames cannot be assessed" in res.stderr and "no e_hull" in res.stderr
    res = cli(
        "sun-filter",
        tmp / "noe.extxyz",
        "--refs",
        tmp / "refs.extxyz",
        "--failed",
        tmp / "bad.extxyz",
        "-o",
        tmp / "ok.extxyz",
    )
    assert res.returncode == 0, res.stderr
    assert len(read_frames(str(tmp / "bad.extxyz"))) == 3 and len(read_frames(str(tmp / "ok.extxyz"))) == 9
    # a NaN e_hull is a frame failure too, not a crash of the batch
    nan = [a.copy() for a in frames]
    nan[0].info["e_hull"] = float("nan")
    write_frames(nan, str(tmp / "nan.extxyz"))
    res = cli(
        "sun-filter",
        tmp / "nan.extxyz",
        "--refs",
        tmp / "refs.extxyz",
        "--failed",
        tmp / "bad2.extxyz",
        "-o",
        tmp / "ok2.extxyz",
    )
    assert res.returncode == 0, res.stderr
    (bad,) = read_frames(str(tmp / "bad2.extxyz"))
    assert "e_hull is not finite" in bad.info["error"] and len(read_frames(str(tmp / "ok2.extxyz"))) == 11


def test_e_hull_from_references_with_energies(tmp_path, cli, reference_phases):
    """Frames without e_hull get it from --refs that carry energies (same numbers as cscli hull)."""
    from cscli.core.frames import read_frames, write_frames

    energies = {"Li": -1.9, "S": -4.1, "P": -5.2, "Li2S": -4.1, "gamma-Li3PS4": -4.6}
    refs = []
    for a in reference_phases:
        if a.info["phase"] in energies:
            b = a.copy()
            b.info["energy"] = energies[a.info["phase"]] * len(b)
            refs.append(b)
    cand = [refs[-1].copy()]
    cand[0].info = {"id": "c", "energy": -4.55 * len(cand[0])}
    write_frames(refs, str(tmp_path / "refs.extxyz"))
    write_frames(cand, str(tmp_path / "c.extxyz"))
    res = cli("sun-filter", tmp_path / "c.extxyz", "--refs", tmp_path / "refs.extxyz", "-o", tmp_path / "o.extxyz")
    assert res.returncode == 0, res.stderr
    res2 = cli("hull", tmp_path / "c.extxyz", "--refs", tmp_path / "refs.extxyz", "-o", tmp_path / "h.extxyz")
    assert res2.returncode == 0, res2.stderr
    a = read_frames(str(tmp_path / "o.extxyz"))[0].info
    assert a["e_hull"] == pytest.approx(read_frames(str(tmp_path / "h.extxyz"))[0].info["e_hull"])
    assert refs[-1].info["phase"] == "gamma-Li3PS4"  # on the hull: -1.1875 eV/atom formation vs -0.825 for Li2S+P+S
    assert a["e_hull"] == pytest.approx(0.05, abs=1e-9)
    assert a["is_novel"] is False  # it is the reference structure itself


def test_bad_options(batch, cli):
    tmp, _, _ = batch
    res = cli("sun-filter", tmp / "frames.extxyz", "--ltol", "-1")
    assert res.returncode == 2 and "must be positive" in res.stderr
