"""Tests of k-reciprocal re-ranking against a dense transcription of the paper, and on a toy problem."""

import numpy as np
import pytest

from bgshift_tf.evaluation import evaluate_rank
from bgshift_tf.evaluation.distance import pairwise_distance
from bgshift_tf.evaluation.rerank import k_reciprocal_rerank


@pytest.fixture(autouse=True)
def _reset_keras_state():
    """Overrides conftest's per-test Keras reset: these tests are pure numpy (saves ~0.5 s per test)."""
    yield


def _dense_rerank(q_g, q_q, g_g, k1, k2, lambda_value):
    """The paper's steps on the full N x N matrix, sets and loops (small N only)."""
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


@pytest.mark.parametrize("k1, k2", [(20, 6), (6, 3), (4, 1)])
def test_matches_dense_transcription_of_the_paper(k1, k2):
    distances, _ = _toy_problem(0)
    fast = k_reciprocal_rerank(*distances, k1=k1, k2=k2, lambda_value=0.3)
    np.testing.assert_allclose(fast, _dense_rerank(*distances, k1, k2, 0.3), rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reciprocal_structure_improves_or_preserves_map(seed):
    distances, labels = _toy_problem(seed)
    before = evaluate_rank(distances[0], *labels)
    reranked = k_reciprocal_rerank(*distances, k1=6, k2=3)
    after = evaluate_rank(reranked, *labels)
    assert reranked.shape == distances[0].shape == (30, 90)
    assert after["mAP"] >= before["mAP"]
    assert np.all((reranked >= 0) & (reranked <= 1))


def test_row_blocks_do_not_change_the_result():
    distances, _ = _toy_problem(3)
    np.testing.assert_array_equal(
        k_reciprocal_rerank(*distances, chunk_rows=7), k_reciprocal_rerank(*distances, chunk_rows=4096)
    )


def test_lambda_one_is_the_row_normalised_original_distance():
    distances, _ = _toy_problem(4)
    q_g, q_q, _ = distances
    row_max = np.maximum(q_q.max(axis=1), q_g.max(axis=1))
    np.testing.assert_allclose(
        k_reciprocal_rerank(*distances, lambda_value=1.0), q_g / row_max[:, None], atol=1e-15
    )


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(q_q_dist=np.zeros((3, 3))), "`q_q_dist` must have shape \\(30, 30\\)"),
        (dict(g_g_dist=np.zeros((90, 89))), "`g_g_dist` must have shape \\(90, 90\\)"),
        (dict(k1=0), "k1=0"),
        (dict(k2=30), "k2=30"),
        (dict(lambda_value=1.5), "lambda_value=1.5"),
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
