"""One input check for every command: a catalogue of bad inputs run through every command that reads frames.

The check itself (cscli.core.frames.check_frame, run by the frame reader) is tested at library
level first; then every bad input goes through every command: each must exit non-zero with one
``cscli CMD: error:`` line naming the file, no traceback, no model loaded, and an output file left
by an earlier run intact. Stream commands (relax, hull, perturb, label, motifs) fail a physically
broken frame alone (it goes to --failed; the good frames are still written), as they always did;
commands that read the whole input fail on it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule

from cscli.core.errors import DataError, FrameError
from cscli.core.frames import check_frame, frame_to_text, iter_frames, read_frames, write_frames

MODEL_PACKAGES = {"chgnet", "sevenn", "deepmd", "mattersim"}


def li_bcc(fid="good", energy=True):
    atoms = bulk("Li", "bcc", a=3.44, cubic=True)
    atoms.info["id"] = fid
    if energy:
        atoms.info["energy"] = -1.9 * len(atoms)
    return atoms


def broken_frames():
    """name -> (frame, expected message): the physically broken frames of the catalogue."""
    nan = li_bcc("nan-pos")
    nan.positions[1, 2] = np.nan
    inf_cell = li_bcc("inf-cell")
    inf_cell.cell[0, 0] = np.inf
    flat = Atoms(
        "Li2",
        positions=[[0, 0, 0], [1.5, 1.5, 0]],
        cell=[[3, 0, 0], [0, 3, 0], [3, 3, 0]],
        pbc=True,
        info={"id": "flat-cell", "energy": -3.8},
    )
    close = Atoms(
        "Li2", positions=[[0, 0, 0], [0.1, 0, 0]], cell=[5, 5, 5], pbc=True, info={"id": "close-atoms", "energy": -3.8}
    )
    return {
        "nan_positions": (nan, "frame nan-pos (#1): non-finite positions"),
        "inf_cell": (inf_cell, "frame inf-cell (#1): non-finite cell"),
        "zero_volume": (flat, "frame flat-cell (#1): periodic but the cell has zero volume"),
        "overlap": (close, "frame close-atoms (#1): overlapping atoms (0.100 Å apart, bound 0.5 Å)"),
    }


PHYSICAL = list(broken_frames())
TEXT = ["random_bytes", "empty", "truncated", "unknown_element", "broken_jsonl", "directory"]


def write_catalogue(folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (path, expected message fragment) for every bad input."""
    folder.mkdir(parents=True, exist_ok=True)
    cases: dict[str, tuple[Path, str]] = {}
    rng = np.random.default_rng(0)
    path = folder / "random_bytes.extxyz"
    path.write_bytes(b"\xff\xfe\x00\x91" + rng.bytes(4096))  # \xff never starts UTF-8
    cases["random_bytes"] = (path, f"{path}: not a structure file (extxyz/jsonl/cif/poscar)")
    path = folder / "empty.extxyz"
    path.write_text("")
    cases["empty"] = (path, "empty")
    path = folder / "truncated.extxyz"
    path.write_text(frame_to_text(li_bcc("t"), "extxyz").rsplit("\n", 2)[0] + "\n")  # last atom row cut
    cases["truncated"] = (path, f"{path}:1: frame truncated (expected 2 atoms)")
    path = folder / "unknown_element.extxyz"
    path.write_text(frame_to_text(li_bcc("xx"), "extxyz").replace("\nLi ", "\nXx ", 1))
    cases["unknown_element"] = (path, "unknown element or key 'Xx'")
    path = folder / "broken.jsonl"
    good = frame_to_text(li_bcc("j0"), "jsonl")
    path.write_text(good + good.replace('"j0"', '"j1"')[:40] + "\n")
    cases["broken_jsonl"] = (path, f"{path}:2: malformed JSON line")
    path = folder / "a_directory"
    path.mkdir(exist_ok=True)
    cases["directory"] = (path, f"{path}: is a directory")
    for name, (atoms, message) in broken_frames().items():
        path = folder / f"{name}.extxyz"
        write_frames([atoms], str(path))
        cases[name] = (path, f"{path}: {message}")
    return cases


# ----------------------------------------------------------------------------- library level


@pytest.mark.parametrize("name", PHYSICAL)
def test_check_frame_refuses_each_broken_frame(name):
    atoms, message = broken_frames()[name]
    reason = message.split(": ", 1)[1]
    with pytest.raises(FrameError, match=f"^frame {atoms.info['id']}: " + _re(reason)):
        check_frame(atoms)


def _re(text):
    import re

    return re.escape(text)


def test_check_frame_other_defects():
    with pytest.raises(FrameError, match="has no atoms"):
        check_frame(Atoms(cell=[3, 3, 3], pbc=True))
    ghost = Atoms("X", positions=[[0, 0, 0]], cell=[3, 3, 3], pbc=True)  # ASE's dummy element, Z = 0
    with pytest.raises(FrameError, match="unknown element 'X' .atomic number 0."):
        check_frame(ghost)
    # an atom overlapping its own periodic image: the distance is the cell length
    with pytest.raises(FrameError, match=r"overlapping atoms \(0.300 Å apart"):
        check_frame(Atoms("Li", cell=[0.3, 6, 6], pbc=True))
    # image overlap across the cell boundary of a skewed cell: 0.2 Å by construction
    skew = Atoms("Li2", positions=[[0.1, 0, 0], [4.9, 0, 0]], cell=[[5, 0, 0], [2.5, 4.33, 0], [0, 0, 5]], pbc=True)
    with pytest.raises(FrameError, match=r"overlapping atoms \(0.200 Å apart"):
        check_frame(skew)
    # just above and just below the bound
    check_frame(Atoms("H2", positions=[[0, 0, 0], [0.51, 0, 0]]))
    with pytest.raises(FrameError, match=r"0.490 Å apart"):
        check_frame(Atoms("H2", positions=[[0, 0, 0], [0.49, 0, 0]]))


def test_check_frame_accepts_real_structures(reference_phases):
    for atoms in reference_phases:  # the 16 shipped Li-P-S phases
        check_frame(atoms)
    check_frame(molecule("H2O"))  # non-periodic, zero cell
    slab = bulk("Li", "bcc", a=3.44, cubic=True)
    slab.pbc = [True, True, False]
    slab.cell[2] = 0.0  # a slab without a third cell vector
    check_frame(slab)
    chain = Atoms("S", positions=[[0, 5, 5]], cell=[2.05, 10, 10], pbc=[True, False, False])  # 1D S chain
    check_frame(chain)
    far = molecule("H2O")
    far.positions += 1e12  # far from the origin: the KD-tree does not bin a bounding box from 0
    check_frame(far)


def test_overlap_distance_equals_ase_neighbour_list():
    """The distance check_frame reports equals the shortest distance from ASE's neighbour list
    (images included) on random cells: triclinic, skewed, slab, chain, molecule, tiny cell."""
    import re

    from ase.neighborlist import neighbor_list

    rng = np.random.default_rng(7)
    cells = [
        np.diag([4.0, 5.0, 6.0]),
        [[4, 0, 0], [3.5, 3, 0], [1, 1.5, 4]],
        [[6, 0, 0], [5.5, 2.0, 0], [0, 0, 5]],
        np.diag([2.1, 2.3, 2.2]),
    ]
    cases = [(c, True) for c in cells] + [
        (cells[1], [True, True, False]),
        (cells[0], [True, False, False]),
        (np.zeros((3, 3)), False),
    ]
    checked = 0
    for cell, pbc in cases:
        for n in (1, 2, 8, 20, 40):  # all cells are thicker than the bound: the KD-tree path
            atoms = Atoms(f"Li{n}", positions=rng.uniform(-2, 8, (n, 3)), cell=cell, pbc=pbc)
            d = neighbor_list("d", atoms, 1.2)
            if not len(d):
                check_frame(atoms, min_distance=1.2)
                continue
            with pytest.raises(FrameError) as info:
                check_frame(atoms, min_distance=1.2)
            reported = float(re.search(r"\(([0-9.]+) Å apart", str(info.value)).group(1))
            np.testing.assert_allclose(reported, d.min(), atol=5e-4)  # printed to 3 decimals
            checked += 1
    assert checked >= 15  # enough overlapping cases for the comparison to mean something


@pytest.mark.parametrize(
    "name", PHYSICAL + ["random_bytes", "truncated", "unknown_element", "broken_jsonl", "directory"]
)
def test_reader_refuses_each_bad_input(tmp_path, name):
    path, message = write_catalogue(tmp_path)[name]
    with pytest.raises(DataError) as info:
        read_frames(str(path))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_reader_without_check_yields_broken_frames_for_the_stream(tmp_path):
    frames = [atoms for atoms, _ in broken_frames().values()]
    path = tmp_path / "broken.extxyz"
    write_frames(frames, str(path))
    ids = [a.info["id"] for a in iter_frames(str(path), check=False)]
    assert ids == [a.info["id"] for a in frames]
    (tmp_path / "empty.extxyz").touch()
    assert read_frames(str(tmp_path / "empty.extxyz")) == []  # an empty file is no error for the reader


# ----------------------------------------------------------------------------- every command

# {BAD}: the bad input; {GOOD}: one good Li frame with an energy; {REFS}: Li and S references with
# energies; {OUT}: the output an earlier run left behind. `stream` commands fail a broken frame alone.
# Commands with a model read their input as they go: the broken line 2 of broken.jsonl is reached
# after the model loaded for line 1, so those three runs are in the slow test below.
COMMANDS = {
    "relax": dict(
        args=["relax", "{BAD}", "-o", "{OUT}", "--model", "7net-0", "--steps", "1", "-q"],
        stream=True,
        skip={"broken_jsonl"},
    ),
    "hull": dict(args=["hull", "{BAD}", "--refs", "{REFS}", "-o", "{OUT}", "-q"], stream=True),
    "hull --refs": dict(args=["hull", "{GOOD}", "--refs", "{BAD}", "-o", "{OUT}", "-q"]),
    "sun-filter": dict(args=["sun-filter", "{BAD}", "-o", "{OUT}", "-q"]),
    "sun-filter --refs": dict(args=["sun-filter", "{GOOD}", "--refs", "{BAD}", "-o", "{OUT}", "-q"]),
    "dft-select": dict(args=["dft-select", "{BAD}", "-o", "{OUT}", "-q"]),
    "perturb": dict(args=["perturb", "{BAD}", "-n", "1", "--seed", "0", "-o", "{OUT}", "-q"], stream=True),
    "label": dict(
        args=["label", "{BAD}", "-c", "model", "-m", "7net-0", "-o", "{OUT}", "-q"], stream=True, skip={"broken_jsonl"}
    ),
    "entropy-select": dict(args=["entropy-select", "{BAD}", "-n", "1", "-o", "{OUT}", "-q"]),
    # an empty or absent training set is allowed (nothing selected yet)
    "entropy-select --train": dict(
        args=["entropy-select", "{GOOD}", "--train", "{BAD}", "-n", "1", "-o", "{OUT}", "-q"], skip={"empty"}
    ),
    "evaluate": dict(args=["evaluate", "{BAD}", "-m", "chgnet", "-o", "{OUT}.json", "-q"], skip={"broken_jsonl"}),
    "finetune": dict(args=["finetune", "{BAD}", "-o", "{OUT}.dir", "-q"]),
    "finetune --valid": dict(args=["finetune", "{GOOD}", "--valid", "{BAD}", "-o", "{OUT}.dir", "-q"]),
    "motifs": dict(args=["motifs", "{BAD}", "-o", "{OUT}", "-q"], stream=True),
    "table": dict(args=["table", "{BAD}"]),
    "generate --refs": dict(
        args=[
            "generate",
            "--backend",
            "motifs",
            "-s",
            "Li-P-S",
            "-n",
            "1",
            "--seed",
            "0",
            "--refs",
            "{BAD}",
            "-o",
            "{OUT}",
            "-q",
        ],
    ),
}
EARLIER = frame_to_text(li_bcc("earlier-run"), "extxyz")
STREAMING = {"hull", "perturb", "motifs"}  # (without a model) read their input as they go


def _prepare(tmp_path: Path):
    """The catalogue, the good inputs and one case per (command, bad input)."""
    catalogue = write_catalogue(tmp_path / "bad")
    good, refs = tmp_path / "good.extxyz", tmp_path / "refs.extxyz"
    write_frames([li_bcc("good-li")], str(good))
    s = bulk("Li", "bcc", a=3.44, cubic=True)  # a stand-in S reference: the hull needs only energies
    s.set_chemical_symbols(["S", "S"])
    s.info.update(id="ref-S", energy=-4.1 * 2)
    write_frames([li_bcc("ref-Li"), s], str(refs))
    return catalogue, good, refs


def _case(tmp_path, command, bad, good, refs, k):
    out = tmp_path / "out" / f"{k}.extxyz"
    out.parent.mkdir(exist_ok=True)
    args = [a.format(BAD=bad, GOOD=good, REFS=refs, OUT=out) for a in COMMANDS[command]["args"]]
    # what an earlier run left: a frames file, a JSON report, a training folder
    out.write_text(EARLIER)
    Path(f"{out}.json").write_text('{"earlier": 1}\n')
    Path(f"{out}.dir").mkdir(exist_ok=True)
    (Path(f"{out}.dir") / "summary.json").write_text('{"earlier": 1}\n')
    return {"args": args, "cwd": str(tmp_path)}, out


def _assert_intact(out: Path):
    assert out.read_text() == EARLIER
    assert Path(f"{out}.json").read_text() == '{"earlier": 1}\n'
    assert [p.name for p in Path(f"{out}.dir").iterdir()] == ["summary.json"]


def _one_error_line(r, cmd: str) -> str:
    assert "Traceback" not in r.stderr, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(f"cscli {cmd}: error: ")]
    assert len(errors) == 1 and lines == errors, r.stderr
    return errors[0]


def test_every_command_refuses_every_bad_input(tmp_path, cli_batch):
    """The catalogue through every command: whole-input commands refuse every bad input; stream
    commands refuse every input whose text does not parse. One error line naming the file, exit 1,
    no model loaded, the earlier output intact."""
    catalogue, good, refs = _prepare(tmp_path)
    cases, expect = [], []
    for command, spec in COMMANDS.items():
        for name, (bad, message) in catalogue.items():
            if name in spec.get("skip", ()) or (spec.get("stream") and name in PHYSICAL):
                continue
            case, out = _case(tmp_path, command, bad, good, refs, len(cases))
            cases.append(case)
            expect.append((command, name, message, out))
    # standard input: random bytes and nothing at all
    for command in ("perturb", "table", "entropy-select"):
        case, out = _case(tmp_path, command, "-", good, refs, len(cases))
        for name in ("random_bytes", "empty"):
            cases.append({**case, "stdin": str(catalogue[name][0])})
            expect.append(
                (
                    command,
                    f"stdin {name}",
                    "<stdin>: not a structure file" if name == "random_bytes" else "no frames in input (stdin: empty)",
                    out,
                )
            )
    results = cli_batch(cases)
    problems = []
    for (command, name, message, out), r in zip(expect, results):
        cmd = command.split()[0]
        try:
            assert r.returncode == 1, f"exit {r.returncode}"
            if name == "broken_jsonl" and cmd in STREAMING:
                # a streamed input is read as it is used: the good first line was processed (its
                # result appended after the earlier output), then line 2 fails
                assert "Traceback" not in r.stderr
                errors = [line for line in r.stderr.splitlines() if line.startswith(f"cscli {cmd}: error: ")]
                assert len(errors) == 1 and message in errors[0], r.stderr
                assert out.read_text().startswith(EARLIER)
                continue
            line = _one_error_line(r, cmd)
            assert message in line, f"{message!r} not in {line!r}"
            assert not MODEL_PACKAGES & set(r.imported), f"imported {r.imported}"
            _assert_intact(out)
            if cmd == "table":
                assert r.stdout == ""
        except AssertionError as exc:
            problems.append(f"{command} <- {name}: {str(exc)[:300]}\n{r.stderr[-500:]}")
    assert not problems, "\n".join(problems)
    assert len(results) == len(cases) == 142


def test_stream_commands_fail_a_broken_frame_alone(tmp_path, cli_batch):
    """hull, perturb and motifs on a file of four broken frames and a good one: each broken frame
    fails alone, named with its file, the good frame is appended to the earlier output, exit 1
    (0 with --failed, which then holds the four)."""
    _, good, refs = _prepare(tmp_path)
    src = tmp_path / "mixed.extxyz"
    broken = broken_frames()
    write_frames([a for a, _ in broken.values()] + [li_bcc("good-li")], str(src))
    cases, outs = [], []
    for command in ("hull", "perturb", "motifs"):
        for with_failed in (False, True):
            case, out = _case(tmp_path, command, src, good, refs, len(cases))
            if with_failed:
                case["args"] += ["--failed", str(out) + ".failed.extxyz"]
            cases.append(case)
            outs.append((command, with_failed, out))
    for (command, with_failed, out), r in zip(outs, cli_batch(cases)):
        assert "Traceback" not in r.stderr, r.stderr
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        for atoms, message in broken.values():
            reason = message.split(": ", 1)[1]
            want = f"cscli {command}: warning: {src}: frame {atoms.info['id']} failed: {reason}"
            assert any(line.startswith(want) for line in lines), (want, r.stderr)
        frames = read_frames(str(out))
        assert frames[0].info["id"] == "earlier-run" and out.read_text().startswith(EARLIER)
        assert [a.info.get("parent_id", a.info["id"]) for a in frames[1:]] == ["good-li"]
        if with_failed:
            assert r.returncode == 0, r.stderr
            assert {a.info["id"] for a in read_frames(str(out) + ".failed.extxyz", check=False)} == {
                a.info["id"] for a, _ in broken.values()
            }
        else:
            assert r.returncode == 1
            assert [line for line in lines if ": error: " in line] == [
                f"cscli {command}: error: 4 of 5 frames failed (pass --failed FILE to keep them and exit 0)"
            ]


@pytest.mark.slow
def test_model_stream_commands_fail_a_broken_frame_alone(tmp_path, cli_batch):
    """relax and label -c model: the same per-frame failures; the good frame is labelled."""
    _, good, refs = _prepare(tmp_path)
    src = tmp_path / "mixed.extxyz"
    broken = broken_frames()
    write_frames([a for a, _ in broken.values()] + [li_bcc("good-li")], str(src))
    cases, outs = [], []
    for command in ("relax", "label"):
        case, out = _case(tmp_path, command, src, good, refs, len(cases))
        cases.append(case)
        outs.append((command, out))
    for (command, out), r in zip(outs, cli_batch(cases)):
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        for atoms, message in broken.values():
            assert f"{src}: frame {atoms.info['id']} failed: {message.split(': ', 1)[1]}" in r.stderr
        assert r.stderr.count(f"cscli {command}: error: ") == 1
        frames = read_frames(str(out))
        assert [a.info["id"] for a in frames] == ["earlier-run", "good-li"]
        assert np.isfinite(frames[1].info["energy"]) and frames[1].info["model"].startswith("7net-0")


@pytest.mark.slow
def test_model_commands_stop_at_a_broken_line(tmp_path, cli_batch):
    """relax, label and evaluate stream their input: line 1 of broken.jsonl is used, line 2 ends the
    run with one error line naming file and line; what was written stays after the earlier output."""
    catalogue, good, refs = _prepare(tmp_path)
    bad, message = catalogue["broken_jsonl"]
    cases, outs = [], []
    for command in ("relax", "label", "evaluate"):
        case, out = _case(tmp_path, command, bad, good, refs, len(cases))
        cases.append(case)
        outs.append((command, out))
    for (command, out), r in zip(outs, cli_batch(cases)):
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        errors = [line for line in r.stderr.splitlines() if line.startswith(f"cscli {command}: error: ")]
        assert errors == [f"cscli {command}: error: {message}: Expecting ',' delimiter (column 1)"], r.stderr
        if command == "evaluate":
            assert Path(f"{out}.json").read_text() == '{"earlier": 1}\n'  # the report is written at the end
        else:
            assert [a.info["id"] for a in read_frames(str(out))] == ["earlier-run", "j0"]


def test_collect_refuses_bad_run_folders(tmp_path, cli_batch):
    """collect reads VASP folders: an empty folder, binary vasprun.xml/OUTCAR, a missing path."""
    empty = tmp_path / "empty"
    empty.mkdir()
    run = tmp_path / "binary" / "run0"
    run.mkdir(parents=True)
    rng = np.random.default_rng(1)
    (run / "vasprun.xml").write_bytes(b"\xff" + rng.bytes(2000))
    (run / "OUTCAR").write_bytes(b"\xff" + rng.bytes(2000))
    out = tmp_path / "out.extxyz"
    out.write_text(EARLIER)
    cases = [{"args": ["collect", d, "-o", out, "-q"]} for d in (empty, tmp_path / "binary", tmp_path / "nope")]
    r_empty, r_binary, r_missing = cli_batch(cases)
    assert r_empty.returncode == 1
    assert f"{empty}: no VASP run folders in it" in _one_error_line(r_empty, "collect")
    assert r_missing.returncode == 1 and "no such directory" in _one_error_line(r_missing, "collect")
    # the per-run problem is reported (it names both files), then the one error line
    assert r_binary.returncode == 1 and "Traceback" not in r_binary.stderr
    assert "vasprun.xml: not a VASP output file (not UTF-8 text); OUTCAR: not a VASP output file" in r_binary.stderr
    assert [line for line in r_binary.stderr.splitlines() if ": error: " in line] == [
        "cscli collect: error: nothing could be read from 1 run folder(s)"
    ]
    assert out.read_text() == EARLIER


def test_a_real_process_fails_on_random_bytes(tmp_path, cli):
    """The same through `python -m cscli` itself (a fresh interpreter): one line, the file named."""
    bad = write_catalogue(tmp_path)["random_bytes"][0]
    for args in (["relax", bad, "--model", "7net-0"], ["evaluate", bad, "-m", "chgnet"]):
        r = cli(*args)
        assert r.returncode == 1, r.stderr
        assert (
            r.stderr.strip()
            == f"cscli {args[0]}: error: {bad}: not a structure file (extxyz/jsonl/cif/poscar): not UTF-8 text"
        )
