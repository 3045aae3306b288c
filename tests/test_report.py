"""cscli report: figures of iteration folders built here with known contents, against direct
computations (counts, QUESTS's own entropy functions, the motif catalogue, Matbench Discovery's
classification metrics written out by hand)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cscli.core.frames import write_frames
from cscli.report.completeness import Settings, build_report, classification

SMALL = ["Li2S", "Li3P", "Li2P2S6", "gamma-Li3PS4"]


def _rattled(atoms, seed, fid, stdev=0.02):
    a = atoms.copy()
    a.rattle(stdev=stdev, seed=seed)
    a.info = {"id": fid}
    return a


def _flagged(n, stable, unique, novel, it, e_hull):
    """n frames with the first `stable` stable, etc., and a given e_hull list."""
    from ase import Atoms

    out = []
    for i in range(n):
        a = Atoms("Li2S", positions=[[0, 0, 0], [1.5, 1.5, 0], [0, 1.5, 1.5]], cell=[4, 4, 4], pbc=True)
        s, u, v = i < stable, i < unique, (n - 1 - i) < novel
        a.info.update(
            id=f"it{it}-{i}", iteration=it, is_stable=s, is_unique=u, is_novel=v, is_sun=s and u and v, e_hull=e_hull[i]
        )
        out.append(a)
    return out


@pytest.fixture(scope="module")
def loop_dirs(tmp_path_factory, phase, reference_phases):
    """Two iteration folders (iter_000, iter_001) with known counts, labels, catalogues and evaluations."""
    from ase.calculators.lj import LennardJones

    from cscli.learn.evaluate import evaluate_model
    from cscli.screen.motifs import Catalogue, analyze

    root = tmp_path_factory.mktemp("loop")
    spec = {  # n assessed, stable, unique, novel, generated, failed
        0: dict(n=10, stable=4, unique=9, novel=7, generated=12, failed=2),
        1: dict(n=8, stable=5, unique=8, novel=3, generated=9, failed=1),
    }
    cat = Catalogue()
    for a in reference_phases:  # the references' motifs, first_iteration None
        cat.add(a.info["id"], analyze(a), None)
    dirs, expect = [], {}
    rng = np.random.default_rng(0)
    for it, s in spec.items():
        d = root / f"iter_{it:03d}"
        d.mkdir()
        e_hull = list(np.round(rng.uniform(-0.05, 0.4, s["n"]), 4))
        sun = _flagged(s["n"], s["stable"], s["unique"], s["novel"], it, e_hull)
        write_frames(sun, str(d / "sun.extxyz"))
        write_frames(sun, str(d / "hull.extxyz"))
        gen = [_rattled(phase(SMALL[i % 4]), i, f"g{it}-{i}") for i in range(s["generated"])]
        for a in gen:
            a.info["iteration"] = it
        write_frames(gen, str(d / "generated.extxyz"))
        names = SMALL if it == 0 else ["Li2S", "gamma-Li3PS4", "Li4P2S6"]
        relaxed = [_rattled(phase(n), 10 * it + k, f"r{it}-{k}") for k, n in enumerate(names)]
        for a in relaxed:
            a.info["iteration"] = it
        write_frames(relaxed, str(d / "relaxed.extxyz"))
        write_frames(gen[: s["failed"]], str(d / "relax_failed.extxyz"))
        labelled = [_rattled(phase(n), 100 + 10 * it + k, f"l{it}-{k}", 0.05) for k, n in enumerate(names)]
        for k, a in enumerate(labelled):  # labels: LJ energies/forces, marked DFT for all but the last
            calc = LennardJones(sigma=2.0, epsilon=0.01, rc=5.0)
            a.calc = calc
            a.info["energy"] = a.get_potential_energy() + 0.01 * k
            a.arrays["forces"] = a.get_forces() + 0.02
            a.calc = None
            a.info["label_method"] = "dft-gpaw" if k < len(labelled) - 1 else "mlff-oracle:7net-0"
        write_frames(labelled, str(d / "labelled.extxyz"))
        for name, eps in (("eval_before.json", 0.012), ("eval_after.json", 0.01)):
            rep = evaluate_model(LennardJones(sigma=2.0, epsilon=eps, rc=5.0), labelled)
            (d / name).write_text(json.dumps({"model": name, **rep}))
        for a in relaxed:
            cat.add(a.info["id"], analyze(a), it)
        cat.save(d / "motifs.jsonl")
        # E_hull from DFT and from the force field for the unperturbed labelled frames
        dft = list(np.round(rng.uniform(-0.05, 0.25, 7), 4))
        ff = list(np.round(np.array(dft) + rng.normal(0, 0.06, 7), 4))
        hd, hf = [], []
        for k in range(7):
            a = phase("Li2S")
            a.info = {"id": f"h{it}-{k}", "e_hull": dft[k]}
            hd.append(a)
            b = a.copy()
            b.info = {"id": f"h{it}-{k}", "e_hull": ff[k]}
            hf.append(b)
        write_frames(hd, str(d / "hull_dft.extxyz"))
        write_frames(hf[::-1], str(d / "hull_ff.extxyz"))  # paired by id, not by order
        expect[it] = dict(s, relaxed=relaxed, labelled=labelled, dft=dft, ff=ff, e_hull=e_hull)
        dirs.append(d)
    return dirs, expect


@pytest.fixture(scope="module")
def report(loop_dirs):
    dirs, _ = loop_dirs
    rep, _ = build_report(dirs, Settings(tsne=False))
    return rep


def test_counts_and_sun_ratios_equal_the_counts(report, loop_dirs):
    _, expect = loop_dirs
    for row in report["iterations"]:
        s = expect[row["iteration"]]
        assert (row["generated"], row["relaxed"], row["failed"]) == (s["generated"], len(s["relaxed"]), s["failed"])
        assert (row["assessed"], row["stable"], row["unique"], row["novel"]) == (
            s["n"],
            s["stable"],
            s["unique"],
            s["novel"],
        )
        sun = sum(1 for i in range(s["n"]) if i < s["stable"] and i < s["unique"] and (s["n"] - 1 - i) < s["novel"])
        assert row["sun"] == sun
        for key, count in (("stable", s["stable"]), ("unique", s["unique"]), ("novel", s["novel"]), ("sun", sun)):
            assert row["ratios"][key] == pytest.approx(count / s["n"], abs=1e-12)
        assert row["labelled_frames"] == len(s["labelled"]) and row["dft_frames"] == len(s["labelled"]) - 1
        np.testing.assert_allclose(row["e_hull"]["median"], np.median(s["e_hull"]), atol=1e-12)
        assert row["e_hull"]["below_0.1"] == pytest.approx(np.mean(np.array(s["e_hull"]) < 0.1))
    c = report["cumulative"]
    assert c["assessed"] == 18 and c["stable"] == 9 and c["generated"] == 21 and c["failed"] == 3
    assert c["ratios"]["stable"] == pytest.approx(9 / 18)


def test_entropy_and_delta_entropy_equal_quests(report, loop_dirs):
    from quests.descriptor import get_descriptors
    from quests.entropy import delta_entropy as q_delta
    from quests.entropy import entropy as q_entropy

    _, expect = loop_dirs
    r0, r1 = report["iterations"]
    x0 = get_descriptors(expect[0]["relaxed"])
    x1 = get_descriptors(expect[1]["relaxed"])
    d0 = get_descriptors(expect[0]["labelled"])
    d1 = get_descriptors(expect[1]["labelled"])
    # float32 descriptors in cscli, float64 in QUESTS: within 2e-3 nats (as tests/test_entropy.py)
    assert r0["entropy"]["H_generated"] == pytest.approx(q_entropy(x0), abs=2e-3)
    assert r1["entropy"]["H_generated"] == pytest.approx(q_entropy(x1), abs=2e-3)
    assert r0["entropy"]["H_dft"] == pytest.approx(q_entropy(d0), abs=2e-3)
    h_cum = q_entropy(np.concatenate([d0, d1]))
    assert r1["entropy"]["H_dft_cumulative"] == pytest.approx(h_cum, abs=2e-3)
    assert r1["entropy"]["dH_dN"] == pytest.approx((h_cum - q_entropy(d0)) / len(expect[1]["labelled"]), abs=1e-3)
    dh = q_delta(x1, x0)
    assert np.all(np.isfinite(dh))  # rattled copies of the same phases (plus Li4P2S6): no underflow
    g = r1["delta_entropy"]["generated"]
    assert g["n"] == len(x1)
    assert g["mean"] == pytest.approx(dh.mean(), abs=2e-3)
    assert g["median"] == pytest.approx(np.median(dh), abs=2e-3)
    assert g["overlap"] == pytest.approx(np.mean(dh < 0.0), abs=1.0 / len(dh) + 1e-12)
    assert 0 < g["overlap"] < 1  # the rattled Li2S/Li3PS4 environments are covered, Li4P2S6's are not
    assert r0["delta_entropy"]["generated"]["overlap"] is None  # nothing earlier to compare with


def test_new_motifs_equal_the_catalogue(report, loop_dirs, reference_phases):
    from cscli.screen.motifs import analyze

    _, expect = loop_dirs
    seen = {m.hash for a in reference_phases for m in analyze(a)}
    total = set(seen)
    found = 0
    for row in report["iterations"]:
        mine = {m.hash for a in expect[row["iteration"]]["relaxed"] for m in analyze(a)}
        new = mine - total
        total |= mine
        found += len(new)
        assert row["motifs"]["new"] == len(new)
        assert row["motifs"]["total"] == len(total)
        assert row["motifs"]["found"] == found
    assert report["iterations"][1]["motifs"]["new"] == 0  # Li4P2S6's P2S6^4- is among the references


def test_errors_before_after_read_from_evaluate(report, loop_dirs):
    from ase.calculators.lj import LennardJones

    _, expect = loop_dirs
    for row in report["iterations"]:
        for when, eps in (("before", 0.012), ("after", 0.01)):
            df, de = [], []
            for a in expect[row["iteration"]]["labelled"]:
                b = a.copy()
                b.calc = LennardJones(sigma=2.0, epsilon=eps, rc=5.0)
                df.append(b.get_forces() - a.arrays["forces"])
                de.append((b.get_potential_energy() - a.info["energy"]) / len(a))
            got = row["errors"][when]
            assert got["forces_rmse"] == pytest.approx(np.sqrt(np.mean(np.concatenate(df) ** 2)), rel=1e-9)
            assert got["energy_per_atom_rmse"] == pytest.approx(np.sqrt(np.mean(np.square(de))), rel=1e-9)


def _direct_metrics(ff, dft, thr):
    tp = sum(1 for f, d in zip(ff, dft) if f < thr and d < thr)
    fp = sum(1 for f, d in zip(ff, dft) if f < thr and not d < thr)
    fn = sum(1 for f, d in zip(ff, dft) if not f < thr and d < thr)
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    f1 = 2 * precision * recall / (precision + recall)
    daf = precision / ((tp + fn) / len(ff))
    rmse = math.sqrt(sum((f - d) ** 2 for f, d in zip(ff, dft)) / len(ff))
    return precision, recall, f1, daf, rmse


def test_prescreen_precision_recall_f1_daf_equal_a_direct_computation(report, loop_dirs):
    _, expect = loop_dirs
    for row in report["iterations"]:
        s = expect[row["iteration"]]
        p, r, f1, daf, rmse = _direct_metrics(s["ff"], s["dft"], 0.1)
        got = row["e_hull_dft_vs_ff"]
        assert got["n"] == 7
        np.testing.assert_allclose(
            [got["precision"], got["recall"], got["f1"], got["daf"], got["rmse"]], [p, r, f1, daf, rmse], rtol=1e-12
        )
    both_ff = expect[0]["ff"] + expect[1]["ff"]
    both_dft = expect[0]["dft"] + expect[1]["dft"]
    c = report["cumulative"]["e_hull_dft_vs_ff"]
    np.testing.assert_allclose(
        [c["precision"], c["recall"], c["f1"], c["daf"], c["rmse"]], _direct_metrics(both_ff, both_dft, 0.1), rtol=1e-12
    )


def test_classification_edge_cases():
    # Matbench Discovery's worked numbers: 3 true stable of 10, the model calls 4 stable, 2 right
    pred = [-0.1, -0.1, -0.1, -0.1, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2]
    true = [-0.1, -0.1, 0.2, 0.2, -0.1, 0.2, 0.2, 0.2, 0.2, 0.2]
    m = classification(pred, true, 0.0)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 2, 1, 5)
    assert m["precision"] == pytest.approx(0.5) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(4 / 7) and m["daf"] == pytest.approx(0.5 / 0.3)
    none = classification([0.3, 0.4], [0.3, 0.4], 0.0)  # nothing stable: precision/recall/DAF undefined
    assert none["precision"] is None and none["recall"] is None and none["daf"] is None


def test_converged_flag_follows_the_thresholds(loop_dirs):
    dirs, _ = loop_dirs
    rep, _ = build_report(dirs, Settings(tsne=False, max_dh_dn=1e9, force_rmse_target=1e9, energy_rmse_target=1e9))
    assert rep["converged"]["converged"] is True  # iteration 1 has no new motif
    rep, _ = build_report(
        dirs, Settings(tsne=False, entropy=False, max_dh_dn=1e9, force_rmse_target=1e9, energy_rmse_target=1e9)
    )
    assert rep["converged"]["converged"] is False  # no dH/dN without entropies: not met
    assert rep["converged"]["criteria"]["dH_dN"]["value"] is None
    before = rep["iterations"][1]["errors"]["before"]["forces_rmse"]
    rep, _ = build_report(
        dirs, Settings(tsne=False, max_dh_dn=1e9, force_rmse_target=before * 0.999, energy_rmse_target=1e9)
    )
    assert rep["converged"]["converged"] is False and not rep["converged"]["criteria"]["force_rmse"]["met"]


@pytest.mark.slow
def test_cli_writes_json_markdown_and_plots(cli, loop_dirs, tmp_path):
    dirs, _ = loop_dirs
    out = tmp_path / "rep"
    r = cli("report", *dirs, "-o", out)
    assert r.returncode == 0, r.stderr
    rep = json.loads((out / "report.json").read_text())
    assert [row["iteration"] for row in rep["iterations"]] == [0, 1]
    assert r.stdout == (out / "report.md").read_text().split("\n\n", 1)[1]
    assert r.stdout.splitlines()[0].startswith("| iter | generated |")
    assert "| 1 | 9 | 3 | 1 | 5 | 8 | 3 |" in r.stdout
    for png in ("ehull_density.png", "sun_ratios.png", "entropy.png", "errors.png", "ehull_parity.png", "tsne.png"):
        assert (out / png).stat().st_size > 1000, png
    assert rep["plots"] and (out / "tsne.csv").is_file()
    assert len((out / "tsne.csv").read_text().splitlines()) == 1 + 4 + 3


def test_cli_errors(cli, tmp_path):
    r = cli("report", tmp_path / "nope")
    assert r.returncode == 1 and "not a folder" in r.stderr
    (tmp_path / "empty").mkdir()
    r = cli("report", tmp_path / "empty", "-o", tmp_path / "o")
    assert r.returncode == 1 and "is this an iteration folder" in r.stderr
