"""Tests of k-reciprocal re-ranking against our transcription of the authors' function ("zhong2017"), a
dense transcription of the paper's steps ("bgshift_v1"), and on a toy problem."""

import numpy as np
import pytest

from bgshift_tf.benchmarks.rank import transcribed_rerank
from bgshift_tf.core.distance import pairwise_distance
from bgshift_tf.core.rank import evaluate_rank
from bgshift_tf.evaluation.rerank import k_reciprocal_rerank


@pytest.fixture(autouse=True)
def _reset_keras_state():
    """Overrides conftest's per-test Keras reset: these tests are pure numpy (saves ~0.5 s per test)."""
    yield


def _dense_rerank(q_g, q_q, g_g, k1, k2, lambda_value):
    """The paper's steps on the full N x N matrix, sets and loops (small N only), "bgshift_v1" rules."""
    full = np.block([[q_q, q_g], [q_g.T, g_g]])
    d = full / full.max(axis=1, keepdims=True)
    num_n, num_q = len(d), len(q_q)
    ranking = np.argsort(d, axis=1, kind="stable")

    def reciprocal(p, k):
        return {g for g in ranking[p, :k + 1] if p in ranking[g, :k + 1]}

    v = np.zeros((num_n, num_n))
    for p in range(num_n):
        members = reciprocal(p, k1)
        expanded = set(members)
        for q in members:
            half = reciprocal(q, int(np.around(k1 / 2)))
            if len(half & members) >= 2 / 3 * len(half):
                expanded |= half
        expanded = sorted(expanded)
        weights = np.exp(-d[p, expanded])
        v[p, expanded] = weights / weights.sum()
    v = np.stack([v[ranking[p, :k2]].mean(axis=0) for p in range(num_n)])
    a, b = v[:num_q, None, :], v[None, num_q:, :]
    jaccard = 1 - np.minimum(a, b).sum(-1) / np.maximum(a, b).sum(-1)
    return (1 - lambda_value) * jaccard + lambda_value * d[:num_q, num_q:]


def _toy_problem(seed, num_ids=15, per_id=8, dim=8, noise=0.6):
    """Gaussian identity clusters (2 cameras); every 4th image is a query, the rest the gallery."""
    rng = np.random.default_rng(seed)
    pids = np.repeat(np.arange(num_ids), per_id)
    cams = np.tile(np.arange(per_id) % 2, num_ids)
    features = rng.normal(size=(num_ids, dim))[pids] + noise * rng.normal(size=(len(pids), dim))
    query = np.arange(len(pids)) % 4 == 0
    qf, gf = features[query], features[~query]
    distances = (pairwise_distance(qf, gf), pairwise_distance(qf, qf), pairwise_distance(gf, gf))
    return distances, (pids[query], pids[~query], cams[query], cams[~query])


def _features(kind, seed, num_items=240):
    """random: Gaussian; tie_heavy: integer points of a small cube (many equal distances); near_duplicate:
    triplets of one point each, 1e-9 apart (ties once the squared distances are float32)."""
    rng = np.random.default_rng(seed)
    if kind == "random":
        return rng.normal(size=(num_items, 8))
    if kind == "tie_heavy":
        return rng.integers(0, 3, size=(num_items, 3)).astype(np.float64)
    centres = np.repeat(rng.normal(size=(num_items // 3, 8)), 3, axis=0)
    return centres + 1e-9 * rng.normal(size=centres.shape)


def _split_distances(features, num_query):
    qf, gf = features[:num_query], features[num_query:]
    return pairwise_distance(qf, gf), pairwise_distance(qf, qf), pairwise_distance(gf, gf)


@pytest.mark.parametrize("kind", ["random", "tie_heavy", "near_duplicate"])
@pytest.mark.parametrize("k1, k2, lambda_value", [(20, 6, 0.3), (7, 3, 0.5), (5, 1, 0.3)])
def test_matches_transcription_of_the_authors_function(kind, k1, k2, lambda_value):
    distances = _split_distances(_features(kind, seed=k1), num_query=50)
    fast = k_reciprocal_rerank(*distances, k1=k1, k2=k2, lambda_value=lambda_value)
    transcribed = transcribed_rerank(*distances, k1=k1, k2=k2, lambda_value=lambda_value)
    np.testing.assert_allclose(fast, transcribed, rtol=0, atol=1e-6)
    if kind == "random":  # tie-free: the same gallery order for every query
        np.testing.assert_array_equal(np.argsort(fast, axis=1), np.argsort(transcribed, axis=1))


def test_conventions_differ_by_the_squaring_and_the_rule():
    distances = _split_distances(_features("random", seed=3), num_query=50)
    zhong = k_reciprocal_rerank(*distances)
    assert np.abs(zhong - k_reciprocal_rerank(*distances, convention="bgshift_v1")).max() > 0.01
    np.testing.assert_array_equal(zhong, k_reciprocal_rerank(*distances, convention="zhong2017"))


@pytest.mark.parametrize("k1, k2", [(20, 6), (6, 3), (4, 1)])
def test_bgshift_v1_matches_dense_transcription_of_the_paper(k1, k2):
    distances, _ = _toy_problem(0)
    fast = k_reciprocal_rerank(*distances, k1=k1, k2=k2, lambda_value=0.3, convention="bgshift_v1")
    np.testing.assert_allclose(fast, _dense_rerank(*distances, k1, k2, 0.3), rtol=0, atol=1e-12)


@pytest.mark.parametrize("convention", ["zhong2017", "bgshift_v1"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reciprocal_structure_improves_or_preserves_map(seed, convention):
    distances, labels = _toy_problem(seed)
    before = evaluate_rank(distances[0], *labels)
    reranked = k_reciprocal_rerank(*distances, k1=6, k2=3, convention=convention)
    after = evaluate_rank(reranked, *labels)
    assert reranked.shape == distances[0].shape == (30, 90)
    assert after["mAP"] >= before["mAP"]
    assert np.all((reranked >= 0) & (reranked <= 1))


def test_row_blocks_do_not_change_the_result():
    distances = _split_distances(_features("tie_heavy", seed=3), num_query=50)
    np.testing.assert_array_equal(
        k_reciprocal_rerank(*distances, chunk_rows=7), k_reciprocal_rerank(*distances, chunk_rows=4096)
    )


@pytest.mark.parametrize("convention, power, atol", [("bgshift_v1", 1, 1e-15), ("zhong2017", 2, 1e-7)])
def test_lambda_one_is_the_normalised_original_distance(convention, power, atol):
    distances, _ = _toy_problem(4)
    q_g, q_q, _ = distances
    row_max = np.maximum(q_q.max(axis=1), q_g.max(axis=1))
    np.testing.assert_allclose(
        k_reciprocal_rerank(*distances, lambda_value=1.0, convention=convention),
        (q_g / row_max[:, None]) ** power, rtol=0, atol=atol,
    )


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(q_q_dist=np.zeros((3, 3))), "`q_q_dist` must have shape \\(30, 30\\)"),
        (dict(g_g_dist=np.zeros((90, 89))), "`g_g_dist` must have shape \\(90, 90\\)"),
        (dict(k1=0), "k1=0"),
        (dict(k2=30), "k2=30"),
        (dict(lambda_value=1.5), "lambda_value=1.5"),
        (dict(convention="torchreid"), "convention='torchreid'"),
    ],
)
def test_bad_input_raises(change, message):
    q_g, q_q, g_g = _toy_problem(5)[0]
    kwargs = dict(q_g_dist=q_g, q_q_dist=q_q, g_g_dist=g_g)
    kwargs.update(change)
    with pytest.raises(ValueError, match=message):
        k_reciprocal_rerank(**kwargs)


def test_nan_distances_raise():
    q_g, q_q, g_g = _toy_problem(6)[0]
    q_g[0, 0] = np.nan
    with pytest.raises(ValueError, match="`q_g_dist` holds NaN/Inf"):
        k_reciprocal_rerank(q_g, q_q, g_g)
