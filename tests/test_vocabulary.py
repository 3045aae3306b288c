"""The shared option vocabulary: --config FILE.yaml, the seed rule, KEY=VALUE, generate's grouped help."""

from __future__ import annotations

import re

import numpy as np
from ase.build import bulk

from cscli.core.frames import read_frames, write_frames


def _li(tmp_path):
    src = tmp_path / "li.extxyz"
    atoms = bulk("Li", "bcc", a=3.44, cubic=True)
    atoms.info["id"] = "li"
    write_frames([atoms], str(src))
    return src


def test_config_file_sets_options_and_flags_win(tmp_path, cli):
    src = _li(tmp_path)
    cfg = tmp_path / "perturb.yaml"
    cfg.write_text("copies: 2\nseed: 3\nsigma: 0.1,0.1\n")
    r = cli("perturb", src, "--config", cfg, "-o", tmp_path / "a.extxyz", "-q")
    assert r.returncode == 0, r.stderr
    frames = read_frames(str(tmp_path / "a.extxyz"))
    assert [a.info["id"] for a in frames] == ["li.p0", "li.p1"]
    assert {a.info["perturb_seed"] for a in frames} == {3}
    np.testing.assert_allclose([a.info["perturb_sigma_rel"] for a in frames], [0.1, 0.1])
    r = cli("perturb", src, "--config", cfg, "-n", "1", "-o", tmp_path / "b.extxyz", "-q")  # the flag wins
    assert r.returncode == 0, r.stderr
    assert [a.info["id"] for a in read_frames(str(tmp_path / "b.extxyz"))] == ["li.p0"]
    cfg.write_text("no-such-option: 1\n")
    r = cli("perturb", src, "--config", cfg, "-q")
    assert r.returncode == 2 and "unknown option 'no-such-option'" in r.stderr


def test_seed_is_drawn_recorded_and_reproduces(tmp_path, cli):
    src = _li(tmp_path)
    r = cli("perturb", src, "-n", "2", "-o", tmp_path / "drawn.extxyz")
    assert r.returncode == 0, r.stderr
    m = re.search(r"cscli perturb: --seed (\d+) drawn", r.stderr)
    assert m, r.stderr
    drawn = read_frames(str(tmp_path / "drawn.extxyz"))
    assert {a.info["perturb_seed"] for a in drawn} == {int(m.group(1))}
    r = cli("perturb", src, "-n", "2", "--seed", m.group(1), "-o", tmp_path / "again.extxyz", "-q")
    assert r.returncode == 0, r.stderr
    again = read_frames(str(tmp_path / "again.extxyz"))
    for a, b in zip(drawn, again):
        np.testing.assert_allclose(a.positions, b.positions, atol=1e-12)
        np.testing.assert_allclose(a.cell.array, b.cell.array, atol=1e-12)


def test_key_value_and_incar_settings():
    from cscli.cli.options import KeyValue
    from cscli.dft.vasp import incar_settings

    kv = KeyValue()
    pairs = [
        kv.convert(text, None, None)
        for text in ("ncore=4", "EDIFF=1e-6", "LREAL=.FALSE.", "ALGO=Fast", 'mixer={"beta": 0.05}')
    ]
    assert pairs[-1] == ("mixer", {"beta": 0.05})
    assert incar_settings(pairs[:4]) == {"NCORE": 4, "EDIFF": 1e-6, "LREAL": False, "ALGO": "Fast"}


def test_generate_help_is_grouped_by_backend(cli):
    r = cli("generate", "--help")
    assert r.returncode == 0, r.stderr
    text = r.stdout
    heads = [
        "random and motifs backends:",
        "motifs backend:",
        "mattergen backend:",
        "MatterGen fine-tuning data (--make-dataset):",
    ]
    where = [text.index(h) for h in heads]
    assert where == sorted(where)
    assert where[0] < text.index("--max-atoms") < where[1] < text.index("--anion-distance") < where[2]
    assert where[2] < text.index("--mattergen-command") < where[3] < text.index("--csv-to-dataset-command")


def test_every_command_has_config_once_and_unique_options():
    """Every implemented command takes --config exactly once, and no option string is defined twice
    (click only warns about duplicates, and the later one silently wins)."""
    import importlib

    from cscli.cli.main import COMMANDS, _module_exists

    def commands(cmd, prefix):
        yield prefix, cmd
        for name, sub in getattr(cmd, "commands", {}).items():  # click groups (density)
            yield from commands(sub, f"{prefix} {name}")

    checked = 0
    for name, (module_name, _) in COMMANDS.items():
        if not _module_exists(module_name):
            continue
        for label, cmd in commands(importlib.import_module(module_name).command, name):
            if getattr(cmd, "commands", None):
                continue
            opts = [o for p in cmd.params for o in getattr(p, "opts", [])]
            assert len(opts) == len(set(opts)), (label, sorted(o for o in opts if opts.count(o) > 1))
            assert opts.count("--config") == 1, label
            checked += 1
    assert checked >= 15
