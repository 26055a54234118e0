"""Tests for bgshift_tf.report.tsne: domain distances on synthetic clusters."""

import json

import numpy as np
import pytest

from bgshift_tf.report import tsne


def _clusters(gap, n=30, dims=8, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "a": rng.normal(0.0, 1.0, (n, dims)),
        "b": rng.normal(gap, 1.0, (n, dims)),
    }


@pytest.fixture(scope="module")
def result():
    return tsne.domain_distance(
        {"separated": _clusters(6.0), "overlapping": _clusters(0.0, seed=1)}, seed=0, max_iter=250
    )


def test_separated_clusters_are_farther_apart_than_overlapping(result):
    key = tsne.pair_name("a", "b")
    separated, overlapping = result["variants"]["separated"], result["variants"]["overlapping"]
    assert separated["l1_2d"][key] > 2 * overlapping["l1_2d"][key]
    # Feature space: centre gap per dimension ~6 vs ~0; separation ratio large vs small.
    assert separated["l1_feature"][key] == pytest.approx(6.0, abs=0.6)
    assert overlapping["l1_feature"][key] < 0.5
    assert separated["separation"][key] > 4 * overlapping["separation"][key]
    assert separated["num_points"] == {"a": 30, "b": 30}
    assert separated["embedding"]["a"].shape == (30, 2)


def test_feature_distance_matches_hand_computation():
    features = {"v": {"a": np.array([[0.0, 0.0], [2.0, 0.0]]), "b": np.array([[1.0, 4.0], [1.0, 2.0]])}}
    out = tsne.domain_distance(features, seed=0, max_iter=250)["variants"]["v"]
    # Centres (1, 0) and (1, 3): L1 = 3, per dimension 1.5; spreads 1 and 1 -> separation 3.
    assert out["l1_feature"]["a vs b"] == pytest.approx(1.5)
    assert out["separation"]["a vs b"] == pytest.approx(3.0)


def test_seeded_reproducible(result):
    again = tsne.domain_distance({"separated": _clusters(6.0)}, seed=0, max_iter=250)
    np.testing.assert_array_equal(
        again["variants"]["separated"]["embedding"]["a"], result["variants"]["separated"]["embedding"]["a"]
    )


def test_to_json_and_plot(result, tmp_path):
    text = json.dumps(tsne.to_json(result))
    assert "embedding" not in text and "separation" in text
    fig = tsne.plot_domain_distance(result)
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles[0].startswith("separated\n2-D L1")
    assert any(t.get_text() == "C-a" for t in fig.axes[0].texts)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"features\['v'\]\['b'\].*\(3,\)"):
        tsne.domain_distance({"v": {"a": np.zeros((4, 3)), "b": np.zeros(3)}})
    with pytest.raises(ValueError, match="at least 2 domains"):
        tsne.domain_distance({"v": {"a": np.zeros((4, 3))}})


def test_image_features_downsample_to_range():
    images = np.zeros((2, 8, 4, 3), dtype=np.uint8)
    images[1] = 255
    features = tsne.image_features(images, size=(4, 2))
    assert features.shape == (2, 24)
    np.testing.assert_allclose(features[0], -1.0)
    np.testing.assert_allclose(features[1], 1.0)
