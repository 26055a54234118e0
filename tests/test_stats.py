"""Tests of evaluation.stats: t intervals, the identity bootstrap and the paired-difference verdict."""

import numpy as np
import pytest

from bgshift_tf.evaluation import stats


@pytest.fixture(autouse=True)
def _reset_keras_state():
    """Overrides conftest's per-test Keras reset: these tests are pure numpy."""
    yield


# Student t quantiles from the table (two-sided 95%: t_{0.975, df}; 90%: t_{0.95, df}).
T_975_DF2 = 4.3027
T_95_DF4 = 2.1318


def test_t_interval_on_one_two_three():
    # mean 2, sample std 1, half-width t_{0.975,2} * 1 / sqrt(3) = 4.3027 / 1.7321 = 2.4841.
    result = stats.t_interval([1.0, 2.0, 3.0])
    assert result["n"] == 3 and result["mean"] == 2.0 and result["std"] == pytest.approx(1.0)
    assert result["lo"] == pytest.approx(2 - T_975_DF2 / np.sqrt(3), abs=1e-4)
    assert result["hi"] == pytest.approx(2 + T_975_DF2 / np.sqrt(3), abs=1e-4)


def test_t_interval_other_confidence_and_no_spread():
    # [1, 2, 3, 4, 5]: mean 3, std sqrt(2.5) = 1.5811; 90%: 3 +- 2.1318 * 1.5811 / sqrt(5) = 3 +- 1.5074.
    result = stats.t_interval([1, 2, 3, 4, 5], confidence=0.9)
    assert [result["lo"], result["hi"]] == pytest.approx([3 - 1.5074, 3 + 1.5074], abs=1e-3)
    assert stats.t_interval([2.5, 2.5]) == {"n": 2, "mean": 2.5, "std": 0.0, "lo": 2.5, "hi": 2.5}


def test_t_interval_fewer_than_two_values():
    assert stats.t_interval([0.4]) == {"n": 1, "mean": 0.4, "std": None, "lo": None, "hi": None}
    assert stats.t_interval([])["mean"] is None


def test_t_interval_rejects_bad_input():
    with pytest.raises(ValueError, match="confidence=1.5"):
        stats.t_interval([1, 2], confidence=1.5)
    with pytest.raises(ValueError, match="nan"):
        stats.t_interval([1.0, float("nan")])


def _per_query(pids, rank1, ap=None, valid=None):
    rank1 = np.asarray(rank1, dtype=np.float64)
    return {"pid": np.asarray(pids), "rank1": rank1, "ap": rank1 if ap is None else np.asarray(ap, np.float64),
            "valid": np.ones(len(rank1), bool) if valid is None else np.asarray(valid)}


def test_bootstrap_all_hits_is_degenerate():
    ci = stats.bootstrap_ci(_per_query([1, 1, 2, 3, 4], [1, 1, 1, 1, 1]), num_samples=200)
    assert ci["R-1"] == [1.0, 1.0] and ci["mAP"] == [1.0, 1.0]
    assert ci["unit"] == "query identity" and ci["num_identities"] == 4 and ci["num_samples"] == 200


def test_bootstrap_moves_the_queries_of_one_identity_together():
    # Identity 7: three queries, all hits; identity 9: one query, a miss. Two identities drawn with
    # replacement: {7, 7} -> 3/3 = 1 (p 1/4), {7, 9} -> 3/4 (p 1/2), {9, 9} -> 0 (p 1/4). Resampling
    # queries one by one would also give 1/4 and 2/4.
    per_query = _per_query([7, 7, 9, 7], [1, 1, 0, 1])
    samples = stats.bootstrap_samples(per_query, num_samples=2000, seed=3)["R-1"]
    assert set(np.unique(samples)) == {0.0, 0.75, 1.0}
    assert np.mean(samples == 0.75) == pytest.approx(0.5, abs=0.05)
    assert stats.bootstrap_ci(per_query, num_samples=2000, seed=3)["R-1"] == [0.0, 1.0]


def test_bootstrap_map_uses_valid_queries_only_and_is_seeded():
    # market_official-style: identity 2's query is invalid (AP NaN, a rank-1 miss). mAP resamples
    # average the valid APs of the drawn identities; a resample of identity 2 only has no mAP (NaN).
    per_query = _per_query([1, 2, 3], [1, 0, 0], ap=[1.0, np.nan, 0.5], valid=[True, False, True])
    samples = stats.bootstrap_samples(per_query, num_samples=500, seed=0)
    assert set(np.unique(samples["mAP"][np.isfinite(samples["mAP"])])) <= {0.5, 0.75, 1.0, 2 / 3, 5 / 6}
    assert np.isnan(samples["mAP"]).any() and np.isfinite(samples["R-1"]).all()
    np.testing.assert_array_equal(samples["R-1"], stats.bootstrap_samples(per_query, 500, seed=0)["R-1"])
    assert not np.array_equal(samples["R-1"], stats.bootstrap_samples(per_query, 500, seed=1)["R-1"])


def test_bootstrap_interval_narrows_with_more_identities():
    rng = np.random.default_rng(0)
    widths = []
    for num_ids in (20, 500):
        hits = (rng.random(num_ids) < 0.5).astype(float)
        ci = stats.bootstrap_ci(_per_query(np.arange(num_ids), hits), num_samples=500)
        assert ci["R-1"][0] <= hits.mean() <= ci["R-1"][1]
        widths.append(ci["R-1"][1] - ci["R-1"][0])
    # Binomial standard error sqrt(p(1-p)/n): 0.11 at n=20, 0.022 at n=500 (95% widths ~0.44, ~0.09).
    assert widths[0] > 0.3 and widths[1] < 0.12


def test_bootstrap_rejects_bad_input():
    with pytest.raises(ValueError, match="no valid query"):
        stats.bootstrap_ci(_per_query([1], [0], valid=[False]))
    with pytest.raises(ValueError, match="shapes"):
        stats.bootstrap_ci({"pid": np.array([1, 2]), "rank1": np.array([1.0]), "ap": np.array([1.0]),
                            "valid": np.array([True])})
    with pytest.raises(ValueError, match="num_samples=0"):
        stats.bootstrap_ci(_per_query([1], [1]), num_samples=0)


def test_paired_difference_holds():
    # Differences [2, 2.5, 2]: mean 2.1667, std 0.2887, half-width 4.3027 * 0.2887 / sqrt(3) = 0.7171.
    result = stats.paired_difference([10, 11, 12], [12, 13.5, 14])
    assert result["per_seed"] == [2.0, 2.5, 2.0] and result["n"] == 3
    assert [result["lo"], result["hi"]] == pytest.approx([2.1667 - 0.7171, 2.1667 + 0.7171], abs=1e-3)
    assert result["verdict"] == "holds" and result["reason"] is None


def test_paired_difference_reversed_and_inconclusive():
    assert stats.paired_difference([12, 13.5, 14], [10, 11, 12])["verdict"] == "reversed"
    # Differences [1, -1, 2]: mean 0.667, std 1.528, half-width 3.795: the interval spans 0.
    mixed = stats.paired_difference([0, 1, 0], [1, 0, 2])
    assert mixed["verdict"] == "inconclusive" and mixed["lo"] < 0 < mixed["hi"]


def test_paired_difference_one_seed_is_inconclusive_with_reason():
    result = stats.paired_difference([30.0], [40.0])
    assert result["per_seed"] == [10.0] and result["mean"] == 10.0 and result["lo"] is None
    assert result["verdict"] == "inconclusive" and "1 seed" in result["reason"]


def test_verdict_boundaries_and_pairing_errors():
    assert stats.verdict(0.0, 1.0) == "inconclusive" and stats.verdict(-1.0, 0.0) == "inconclusive"
    assert stats.verdict(1e-9, 1.0) == "holds" and stats.verdict(-1.0, -1e-9) == "reversed"
    with pytest.raises(ValueError, match="2 vs 3 values"):
        stats.paired_difference([1, 2], [1, 2, 3])
