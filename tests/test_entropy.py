"""entropy-select: QUESTS entropy numbers, duplicate handling, greedy bookkeeping, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cscli.learn import entropy as E

PETMAD = "lips_dft_frames/petmad_workshop_Li3PS4/petmad_workshop_Li3PS4_{}.extxyz"
LI2S = "lips_dft_frames/lips20_egraffbench/lips20_Li2S_3000K_every50.extxyz"


@pytest.fixture(scope="module")
def frames(shared_data):
    from cscli.core.frames import read_frames

    train = read_frames(str(shared_data / PETMAD.format("train")))[:8]
    test = read_frames(str(shared_data / PETMAD.format("test")))[:4]
    li2s = read_frames(str(shared_data / LI2S))[:3]
    return train, test, li2s


def test_entropy_and_delta_entropy_equal_quests(frames):
    from quests.descriptor import get_descriptors
    from quests.entropy import delta_entropy as q_delta
    from quests.entropy import entropy as q_entropy

    train, test, _ = frames
    x = get_descriptors(train)  # float64, QUESTS defaults k=32, cutoff=5
    y = get_descriptors(test)
    assert E.entropy(x) == pytest.approx(q_entropy(x), rel=1e-10)
    ref = q_delta(y, x)
    assert np.all(np.isfinite(ref))  # same phase: QUESTS's direct sum does not underflow here
    np.testing.assert_allclose(E.delta_entropy(y, x), ref, rtol=1e-9, atol=1e-9)
    # our descriptors (float32 storage) and float32 distances: within 2e-3 nats
    cx, owner = E.descriptors(test)
    tx, _ = E.descriptors(train)
    assert cx.dtype == np.float32 and np.array_equal(owner, np.repeat(np.arange(4), [len(a) for a in test]))
    np.testing.assert_allclose(E.delta_entropy(cx, tx), ref, atol=2e-3)
    assert E.entropy(tx) == pytest.approx(q_entropy(x), abs=2e-3)


def test_log_space_stays_finite_where_direct_sum_underflows():
    h = 0.015
    x = np.zeros((2, 5))
    x[1, 0] = 0.01
    y = np.array([[1.0, 0, 0, 0, 0]])  # ~66 h away: exp(-d²/2h²) underflows in float64
    d0, d1 = 1.0, 0.99
    # closed form: -log(exp(-d0²/2h²) + exp(-d1²/2h²)) = d1²/2h² - log(1 + exp(-(d0²-d1²)/2h²))
    expected = d1**2 / (2 * h * h) - np.log1p(np.exp(-(d0**2 - d1**2) / (2 * h * h)))
    assert E.delta_entropy(y, x, h)[0] == pytest.approx(expected, rel=1e-12)
    from quests.entropy import delta_entropy as q_delta

    with np.errstate(divide="ignore"):
        assert np.isinf(q_delta(y, x, h))[0]


def test_duplicate_frame_has_far_lower_delta_entropy_than_a_new_one(frames):
    train, test, li2s = frames
    tx, _ = E.descriptors(train)
    cands = [train[0].copy(), test[0], li2s[1]]
    cx, cf = E.descriptors(cands)
    dh = E.frame_means(E.delta_entropy(cx, tx), cf, 3)
    # a frame already in the training set: every environment has its twin, so δH <= 0
    assert dh[0] <= 0.0
    # an unseen Li3PS4 snapshot and (far more) a Li2S snapshot are new information
    assert dh[1] > dh[0] + 5.0
    assert dh[2] > dh[1] + 5.0


def test_greedy_never_picks_a_duplicate_and_its_bookkeeping_is_exact(frames):
    from quests.entropy import delta_entropy as q_delta
    from quests.entropy import entropy as q_entropy

    train, test, li2s = frames
    base = [train[5], test[0], test[1], li2s[0], li2s[1]]
    cands = base + [base[1].copy(), base[3].copy(), train[0].copy()]  # two twins + one frame of train
    cx, cf = E.descriptors(cands)
    tx = E.descriptors(train[:5])[0]
    res = E.select(cx, cf, len(cands), tx, strategy="greedy")
    picked = res.indices
    assert sorted(picked) == sorted(set(picked))
    # never both members of a twin pair, never the frame already in train; all distinct frames taken
    assert len(picked) == 5 and 7 not in picked
    assert not ({1, 5} <= set(picked)) and not ({3, 6} <= set(picked))
    assert res.stop_reason == "candidates exhausted"
    # each step's δH equals QUESTS's δH (float64) of that frame against train + frames picked before
    ref = E.descriptors(train[:5], dtype="float64")[0]
    h_prev = q_entropy(ref)
    assert res.entropy_before == pytest.approx(h_prev, abs=2e-3)
    for step in res.steps:
        y = E.descriptors([cands[step.index]], dtype="float64")[0]
        assert step.delta_entropy == pytest.approx(float(np.mean(q_delta(y, ref))), abs=5e-3)
        ref = np.concatenate([ref, y])
        assert step.entropy_after == pytest.approx(q_entropy(ref), abs=5e-3)
    assert res.entropy_after == pytest.approx(q_entropy(ref), abs=5e-3)
    # greedy picks in decreasing δH order here (each pick only lowers the others' δH)
    dhs = [s.delta_entropy for s in res.steps]
    assert dhs == sorted(dhs, reverse=True)


def test_empty_training_set_and_rank_and_min_dh(frames):
    train, test, li2s = frames
    cands = train[:3] + li2s[:2]
    cx, cf = E.descriptors(cands)
    res = E.select(cx, cf, 5, None, n=2, strategy="greedy")
    assert res.steps[0].delta_entropy == float("inf")  # nothing to compare against yet
    own = [E.entropy(cx[cf == i]) for i in range(5)]
    assert res.indices[0] == int(np.argmax(own))  # first pick: the most diverse frame
    assert np.isnan(res.entropy_before) and np.isfinite(res.entropy_after)

    tx, _ = E.descriptors(test)
    rank = E.select(cx, cf, 5, tx, n=3, strategy="rank")
    order = np.argsort(-rank.initial_delta_entropy)[:3]
    assert rank.indices == [int(i) for i in order]
    stop = E.select(cx, cf, 5, tx, strategy="greedy", min_dh=rank.initial_delta_entropy[order[1]] + 1e-6)
    assert stop.stop_reason == "min_dh" and len(stop.steps) == 1


@pytest.mark.slow  # PyNNDescent compiles its numba kernels on first use in a process (~1-2 min)
def test_approximate_neighbours_agree_with_exact(frames):
    train, test, li2s = frames
    tx, _ = E.descriptors(train)
    cx, _ = E.descriptors(test + li2s)
    exact = E.delta_entropy(cx, tx, method="exact")
    approx = E.delta_entropy(cx, tx, method="approx", n_neighbors=10)
    # only the n nearest enter the sum: approx >= exact up to float32 round-off, close where it matters
    assert np.all(approx >= exact - 1e-3)
    assert np.corrcoef(exact, approx)[0, 1] > 0.99
    novel = exact > 10
    assert novel.sum() > 100
    # ANN recall is not 100%: a missed nearest neighbour overestimates δH for a few environments
    assert np.mean(np.abs(approx[novel] - exact[novel]) < 0.05) > 0.95
    # selection with approximate initial δH picks the same frames as with exact δH
    cands = test + li2s
    cx, cf = E.descriptors(cands)
    a = E.select(cx, cf, len(cands), tx, n=4, method="approx")
    b = E.select(cx, cf, len(cands), tx, n=4, method="exact")
    assert a.method == "approx" and b.method == "exact"
    assert a.indices == b.indices
    assert a.entropy_before == pytest.approx(b.entropy_before, abs=0.05)


def test_cli_entropy_select(cli, shared_data, tmp_path):
    from cscli.core.frames import read_frames

    cand = [str(shared_data / PETMAD.format("test")), str(shared_data / LI2S)]
    train = shared_data / PETMAD.format("val")
    report, png = tmp_path / "sel.json", tmp_path / "sel.png"
    out = tmp_path / "picked.extxyz"
    r = cli("entropy-select", *cand, "--train", train, "-n", "6", "--report", report, "--plot", png, "-o", out)
    assert r.returncode == 0, r.stderr
    picked = read_frames(str(out))
    rep = json.loads(report.read_text())
    assert len(picked) == 6 == rep["n_selected"]
    assert [a.info["id"] for a in picked] == [s["id"] for s in rep["steps"]]
    assert [a.info["delta_entropy"] for a in picked] == pytest.approx([s["delta_entropy"] for s in rep["steps"]])
    assert all("entropy-select(greedy)" in a.info["history"] for a in picked)
    assert rep["entropy_before"] < rep["entropy_after"] and rep["n_candidates"] == 30
    assert png.stat().st_size > 10_000
    bad = cli("entropy-select", cand[0], "--strategy", "rank")
    assert bad.returncode == 2 and "needs -n" in bad.stderr
