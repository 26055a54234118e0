"""Tests of evaluate_rank: hand-worked cases, the per-query reference, the three conventions, bad input."""

import numpy as np
import pytest

from bgshift_tf.benchmarks import rank as rank_benchmark
from bgshift_tf.benchmarks.rank import reference_evaluate_rank
from bgshift_tf.core import rank as rank_module
from bgshift_tf.core.rank import evaluate_rank


@pytest.fixture(autouse=True)
def _reset_keras_state():
    """Overrides conftest's per-test Keras reset: these tests are pure numpy (saves ~0.5 s per test)."""
    yield

# Hand case. Gallery (index: pid, camera):
#   0: (2, c2)  1: (1, c1)  2: (1, c2)  3: (3, c1)  4: (1, c3)  5: (2, c2)  6: (4, c1)
G_PIDS = np.array([2, 1, 1, 3, 1, 2, 4])
G_CAMS = np.array([2, 1, 2, 1, 3, 2, 1])
Q_PIDS = np.array([1, 4, 2])
Q_CAMS = np.array([1, 1, 1])
DISTMAT = np.array(
    [
        # q0 (pid 1, c1): stable order 1, 3, 0, 2, 5, 4, 6 (items 0 and 2 tie at 0.5: 0 first by gallery
        # order). Item 1 is junk (pid 1, c1) -> 3, 0, 2, 5, 4, 6: true matches 2 and 4 at ranks 3 and 5.
        #   AP = (1/3 + 2/5) / 2 = 11/30; mINP = 2/5; first hit at rank 3.
        [0.5, 0.1, 0.5, 0.2, 0.9, 0.7, 1.0],
        # q1 (pid 4, c1): its only gallery image (6) has the same camera -> junk -> invalid query.
        [0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.0],
        # q2 (pid 2, c1): order 6, 3, 1, 0, 2, 4, 5; no junk; true matches 0 and 5 at ranks 4 and 7.
        #   AP = (1/4 + 2/7) / 2 = 15/56; mINP = 2/7; first hit at rank 4.
        [0.3, 0.2, 0.4, 0.1, 0.6, 0.8, 0.0],
    ]
)


def _random_problem(seed, num_q=40, num_g=120, num_ids=12, num_cams=3, integer_distances=True):
    rng = np.random.default_rng(seed)
    g_pids, g_cams = rng.integers(0, num_ids, num_g), rng.integers(0, num_cams, num_g)
    q_pids, q_cams = rng.integers(0, num_ids, num_q), rng.integers(0, num_cams, num_q)
    # Few distinct values -> many exact ties, which only a stable order breaks the same way.
    distmat = rng.integers(0, 6, (num_q, num_g)).astype(np.float64) if integer_distances else rng.random(
        (num_q, num_g)
    )
    return distmat, q_pids, g_pids, q_cams, g_cams


def test_hand_case_standard():
    result = evaluate_rank(DISTMAT, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, max_rank=10)
    assert result["num_valid_queries"] == 2 and result["num_queries"] == 3
    # Valid queries q0 (first hit rank 3) and q2 (rank 4); CMC beyond the 7-image gallery stays at 1.
    np.testing.assert_allclose(result["cmc"], [0, 0, 0.5, 1, 1, 1, 1, 1, 1, 1])
    assert result["mAP"] == pytest.approx((11 / 30 + 15 / 56) / 2, abs=1e-12)
    assert result["mINP"] == pytest.approx((2 / 5 + 2 / 7) / 2, abs=1e-12)
    assert result["convention"].startswith("standard")


def test_ties_follow_gallery_order():
    # Swapping gallery items 0 and 2 (and their columns) puts the true match first among the tie:
    # q0's matches move to ranks 2 and 5 -> AP = (1/2 + 2/5) / 2 = 0.45 instead of 11/30.
    swap = [2, 1, 0, 3, 4, 5, 6]
    result = evaluate_rank(DISTMAT[:1, swap], Q_PIDS[:1], G_PIDS[swap], Q_CAMS[:1], G_CAMS[swap])
    assert result["mAP"] == pytest.approx(0.45, abs=1e-12)
    assert result["cmc"][1] == 1.0 and result["cmc"][0] == 0.0


def test_same_camera_removal_only_removes_same_pid_and_camera():
    # Giving the junk item (1) another camera makes it a true match at rank 1: ranks 1, 4, 6 over
    # 1, 3, 0, 2, 5, 4 -> AP = (1/1 + 2/4 + 3/6) / 3 = 2/3, mINP = 3/6.
    cams = G_CAMS.copy()
    cams[1] = 3
    result = evaluate_rank(DISTMAT[:1], Q_PIDS[:1], G_PIDS, Q_CAMS[:1], cams)
    assert result["mAP"] == pytest.approx(2 / 3, abs=1e-12)
    assert result["mINP"] == pytest.approx(0.5, abs=1e-12)
    assert result["cmc"][0] == 1.0


def test_market_official_hand_case():
    # Trapezoid AP: (1/n) sum_i (p_before_i + i/r_i) / 2, p_before_i = (i-1)/(r_i-1).
    #   q0, ranks 3, 5: ((0/2 + 1/3)/2 + (1/4 + 2/5)/2) / 2 = 59/240
    #   q2, ranks 4, 7: ((0/3 + 1/4)/2 + (1/6 + 2/7)/2) / 2 = 59/336
    # CMC is divided by all 3 queries (q1 counts as a miss); mAP over the 2 valid ones.
    result = evaluate_rank(DISTMAT, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, max_rank=5, mode="market_official")
    np.testing.assert_allclose(result["cmc"], [0, 0, 1 / 3, 2 / 3, 2 / 3], atol=1e-12)
    assert result["mAP"] == pytest.approx((59 / 240 + 59 / 336) / 2, abs=1e-12)
    assert result["num_valid_queries"] == 2
    standard = evaluate_rank(DISTMAT, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, max_rank=5)
    assert result["mINP"] == pytest.approx(standard["mINP"], abs=1e-12)
    assert result["mAP"] < standard["mAP"] and "market_official" in result["convention"]


def test_market_official_drops_junk_pid_minus_one():
    # A pid -1 image ranked first: a negative in "standard" (q0's matches move to ranks 4, 6), junk
    # (ignored) in "market_official" (ranks stay 3, 5).
    distmat = np.concatenate([DISTMAT[:1], [[0.0]]], axis=1)
    g_pids, g_cams = np.append(G_PIDS, -1), np.append(G_CAMS, 2)
    standard = evaluate_rank(distmat, Q_PIDS[:1], g_pids, Q_CAMS[:1], g_cams)
    official = evaluate_rank(distmat, Q_PIDS[:1], g_pids, Q_CAMS[:1], g_cams, mode="market_official")
    assert standard["mAP"] == pytest.approx((1 / 4 + 2 / 6) / 2, abs=1e-12)
    assert official["mAP"] == pytest.approx(59 / 240, abs=1e-12)


def _matlab_compute_ap(good, junk, index):
    """Line-by-line transcription of Market-1501's compute_AP.m (the official loop)."""
    cmc = np.zeros(len(index))
    ngood = len(good)
    old_recall, old_precision, ap, intersect_size, j, good_now, njunk = 0.0, 1.0, 0.0, 0, 0, 0, 0
    for n, item in enumerate(index):
        flag = False
        if item in good:
            cmc[n - njunk:] = 1
            flag = True
            good_now += 1
        if item in junk:
            njunk += 1
            continue
        if flag:
            intersect_size += 1
        recall = intersect_size / ngood
        precision = intersect_size / (j + 1)
        ap += (recall - old_recall) * (old_precision + precision) / 2
        old_recall, old_precision = recall, precision
        j += 1
        if good_now == ngood:
            break
    return ap, cmc


def test_market_official_matches_matlab_loop_on_random_input():
    distmat, q_pids, g_pids, q_cams, g_cams = _random_problem(3, integer_distances=False)
    g_pids[::17] = -1
    aps, cmcs = [], []
    for i in range(len(q_pids)):
        good = set(np.flatnonzero((g_pids == q_pids[i]) & (g_cams != q_cams[i])).tolist())
        junk = set(np.flatnonzero(((g_pids == q_pids[i]) & (g_cams == q_cams[i])) | (g_pids == -1)).tolist())
        ap, cmc = _matlab_compute_ap(good, junk, np.argsort(distmat[i], kind="stable"))
        cmcs.append(cmc[:20])
        if good:
            aps.append(ap)
    result = evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=20, mode="market_official")
    np.testing.assert_allclose(result["cmc"], np.mean(cmcs, axis=0), atol=1e-12)
    assert result["mAP"] == pytest.approx(np.mean(aps), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("sort_threshold", [0, 128])  # 0 = locate matches by argsort, 128 = by counting
def test_random_inputs_match_per_query_reference(seed, sort_threshold, monkeypatch):
    monkeypatch.setattr(rank_module, "_SORT_THRESHOLD", sort_threshold)
    problem = _random_problem(seed, integer_distances=seed != 2)
    fast = evaluate_rank(*problem, max_rank=30)
    reference = reference_evaluate_rank(*problem, max_rank=30)
    np.testing.assert_allclose(fast["cmc"], reference["cmc"], rtol=0, atol=1e-12)
    assert fast["mAP"] == pytest.approx(reference["mAP"], abs=1e-12)
    assert fast["mINP"] == pytest.approx(reference["mINP"], abs=1e-12)
    assert fast["num_valid_queries"] == reference["num_valid_queries"]


def test_float32_distances_rank_as_given():
    distmat, q_pids, g_pids, q_cams, g_cams = _random_problem(4, integer_distances=False)
    distmat = distmat.astype(np.float32)
    fast = evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams)
    reference = reference_evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams)
    assert fast["mAP"] == pytest.approx(reference["mAP"], abs=1e-12)


def test_all_queries_invalid_raises():
    with pytest.raises(ValueError, match="No valid query"):
        evaluate_rank(DISTMAT[1:2], Q_PIDS[1:2], G_PIDS, Q_CAMS[1:2], G_CAMS)


def _sgs_problem():
    # One query (pid 1, c1). Gallery: pid 1 at c2 with distances 0.3 (A) and 0.6 (B); pid 2 at 0.5 (C)
    # and 0.9 (D); plus the query's own image (pid 1, c1, distance 0) which is junk.
    # Drawing one image per id: A drawn (p=1/2) -> rank 1; B drawn -> rank 1 only if D drawn (p=1/4).
    # So E[rank-1] = 3/4 and rank-2 = 1. AP on the full list: ranks 1 (A), 3 (B) -> (1 + 2/3)/2 = 5/6.
    distmat = np.array([[0.3, 0.6, 0.5, 0.9, 0.0]])
    return distmat, np.array([1]), np.array([1, 1, 2, 2, 1]), np.array([1]), np.array([2, 2, 1, 1, 1])


def test_cuhk03_sgs_expected_value_and_full_list_ap():
    result = evaluate_rank(*_sgs_problem(), max_rank=3, mode="cuhk03_sgs", num_repeats=4000, seed=7)
    assert result["cmc"][0] == pytest.approx(0.75, abs=0.03)
    np.testing.assert_allclose(result["cmc"][1:], [1.0, 1.0])
    assert result["mAP"] == pytest.approx(5 / 6, abs=1e-12)
    assert "seed 7" in result["convention"]


def test_cuhk03_sgs_seeded_and_reproducible():
    problem = _random_problem(5, integer_distances=False)
    first = evaluate_rank(*problem, mode="cuhk03_sgs", seed=3)
    again = evaluate_rank(*problem, mode="cuhk03_sgs", seed=3)
    np.testing.assert_array_equal(first["cmc"], again["cmc"])
    others = [evaluate_rank(*problem, mode="cuhk03_sgs", seed=s)["cmc"] for s in (4, 5, 6)]
    assert any(not np.array_equal(first["cmc"], other) for other in others)
    standard = evaluate_rank(*problem)
    assert first["mAP"] == standard["mAP"] and first["mINP"] == standard["mINP"]


def test_cuhk03_sgs_perfect_distances_give_rank1_one():
    _, q_pids, g_pids, q_cams, g_cams = _random_problem(6)
    distmat = np.where(q_pids[:, None] == g_pids[None, :], 0.0, 1.0)
    result = evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, mode="cuhk03_sgs")
    assert result["cmc"][0] == 1.0 and result["mAP"] == 1.0


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(distmat=np.zeros(7)), "`distmat` must be 2-D"),
        (dict(q_pids=np.array([1, 4])), "`q_pids` must have shape \\(3,\\)"),
        (dict(g_pids=np.array([1, 2])), "`g_pids` must have shape \\(7,\\)"),
        (dict(q_camids=np.ones((3, 1))), "`q_camids` must have shape \\(3,\\)"),
        (dict(g_camids=np.ones(8)), "`g_camids` must have shape \\(7,\\)"),
        (dict(max_rank=0), "`max_rank` must be an integer >= 1. Received: max_rank=0"),
        (dict(max_rank=2.5), "max_rank=2.5"),
        (dict(mode="cuhk03"), "`mode` must be one of"),
        (dict(mode="cuhk03_sgs", num_repeats=0), "num_repeats=0"),
        (dict(distmat=np.array([["a"] * 7] * 3)), "`distmat` must hold real numbers"),
    ],
)
def test_bad_input_raises_naming_the_argument(change, message):
    kwargs = dict(distmat=DISTMAT, q_pids=Q_PIDS, g_pids=G_PIDS, q_camids=Q_CAMS, g_camids=G_CAMS)
    kwargs.update(change)
    with pytest.raises(ValueError, match=message):
        evaluate_rank(**kwargs)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_distances_raise(bad):
    distmat = DISTMAT.copy()
    distmat[2, 4] = bad
    with pytest.raises(ValueError, match=r"`distmat` holds 1 NaN/Inf value\(s\), first at \[2, 4\]"):
        evaluate_rank(distmat, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS)


def test_inputs_not_modified():
    distmat = DISTMAT.copy()
    evaluate_rank(distmat, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, mode="cuhk03_sgs")
    np.testing.assert_array_equal(distmat, DISTMAT)


def test_benchmark_quick_agrees_with_reference():
    result = rank_benchmark.run(quick=True)
    assert result["subset_max_abs_difference"] <= 1e-12
    assert result["subset_num_valid_queries_equal"]
    assert result["num_query"] == 300 and result["evaluate_rank_seconds"] > 0
    assert result["rerank_max_abs_difference_to_transcription"] <= 1e-6
    assert result["rerank_share_of_queries_same_top10"] == 1.0
    if "torchreid_seconds" in result:  # torchreid installed (optional bench dependency)
        assert result["torchreid_cmc_equal_in_float32"] and result["torchreid_mAP_abs_difference"] < 1e-12
    else:
        assert result["torchreid"].startswith("skipped: ")


def test_benchmark_skips_torchreid_with_a_reason_when_missing(monkeypatch):
    monkeypatch.setattr(rank_benchmark.importlib.util, "find_spec", lambda name: None)
    distmat = np.zeros((1, 1))
    skipped = rank_benchmark._compare_with_torchreid(distmat, [1], [1], [1], [2], ours=None)
    assert skipped == {"torchreid": "skipped: torchreid is not installed (optional bench dependency)"}


def test_top_k_matches_removes_same_camera_and_keeps_order():
    distmat = np.array([[0.1, 0.2, 0.2, 0.5, 0.9]])
    indices, correct = rank_module.top_k_matches(
        distmat, q_pids=[1], g_pids=[1, 2, 1, 3, 1], q_camids=[0], g_camids=[0, 1, 1, 1, 2], k=5
    )
    # Gallery 0 (same pid and camera) is removed; the 0.2 tie keeps gallery order (1 before 2).
    np.testing.assert_array_equal(indices[0], [1, 2, 3, 4, -1])
    np.testing.assert_array_equal(correct[0], [False, True, False, True, False])


def test_top_k_matches_ranks_as_evaluate_rank_does():
    distmat, q_pids, g_pids, q_cams, g_cams = _random_problem(3)
    _, correct = rank_module.top_k_matches(distmat, q_pids, g_pids, q_cams, g_cams, k=len(g_pids))
    # The rank-1 hits and the CMC curve read off the top-k lists are evaluate_rank's, tie for tie.
    valid = correct.any(axis=1)
    first_hit = np.argmax(correct[valid], axis=1)
    cmc = np.array([np.mean(first_hit < k) for k in range(1, 11)])
    np.testing.assert_allclose(cmc, evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=10)["cmc"])
    with pytest.raises(ValueError, match="k=0"):
        rank_module.top_k_matches(distmat, q_pids, g_pids, q_cams, g_cams, k=0)
    with pytest.raises(ValueError, match="g_camids"):
        rank_module.top_k_matches(distmat, q_pids, g_pids, q_cams, g_cams[:-1])


def test_hand_case_per_query():
    per_query = evaluate_rank(DISTMAT, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS)["per_query"]
    # The invalid q1 counts nowhere in "standard"; q0 first hit at rank 3, q2 at rank 4 (see DISTMAT).
    np.testing.assert_array_equal(per_query["pid"], [1, 2])
    np.testing.assert_array_equal(per_query["first_match_rank"], [3, 4])
    np.testing.assert_array_equal(per_query["rank1"], [0.0, 0.0])
    np.testing.assert_allclose(per_query["ap"], [11 / 30, 15 / 56], atol=1e-12)
    official = evaluate_rank(DISTMAT, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, mode="market_official")["per_query"]
    # market_official counts q1 in the CMC (a miss): kept, invalid, AP NaN, first-match rank 0.
    np.testing.assert_array_equal(official["pid"], Q_PIDS)
    np.testing.assert_array_equal(official["valid"], [True, False, True])
    np.testing.assert_array_equal(official["first_match_rank"], [3, 0, 4])
    assert np.isnan(official["ap"][1])


@pytest.mark.parametrize("mode", ["standard", "market_official"])
def test_per_query_reproduces_the_aggregates_exactly(mode):
    for seed in range(4):
        distmat, q_pids, g_pids, q_cams, g_cams = _random_problem(seed, integer_distances=seed % 2 == 0)
        g_pids = np.where(np.arange(len(g_pids)) % 17 == 0, -1, g_pids) if mode == "market_official" else g_pids
        result = evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, mode=mode)
        per_query = result["per_query"]
        assert np.mean(per_query["rank1"]) == result["cmc"][0]
        assert np.mean(per_query["ap"][per_query["valid"]]) == result["mAP"]
        assert np.count_nonzero(per_query["valid"]) == result["num_valid_queries"]
        # The first-match ranks give the whole CMC.
        first = per_query["first_match_rank"]
        cmc = [np.mean(per_query["valid"] & (first <= k)) for k in range(1, 51)]
        np.testing.assert_array_equal(cmc, result["cmc"])


def test_per_query_single_gallery_shot_rank1_is_the_share_of_repeats():
    result = evaluate_rank(*_sgs_problem(), max_rank=3, mode="cuhk03_sgs", num_repeats=4000, seed=7)
    per_query = result["per_query"]
    # One query: its rank1 is the share of the 4000 draws that hit at rank 1 (expected 3/4, see above).
    assert per_query["rank1"][0] == result["cmc"][0] == pytest.approx(0.75, abs=0.03)
    problem = _random_problem(2, integer_distances=False)
    result = evaluate_rank(*problem, mode="cuhk03_sgs", num_repeats=7, seed=1)
    assert np.mean(result["per_query"]["rank1"]) == pytest.approx(result["cmc"][0], abs=1e-12)
    assert np.all(result["per_query"]["rank1"] * 7 == np.round(result["per_query"]["rank1"] * 7))
    assert np.mean(result["per_query"]["ap"]) == result["mAP"]
