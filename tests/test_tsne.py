"""Tests for bgshift_tf.evaluation.domain_distance and report.tsne: domain distances on synthetic clusters."""

import json

import numpy as np
import pytest

from bgshift_tf.evaluation import domain_distance
from bgshift_tf.report import tsne


def _clusters(gap, n=20, dims=8, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "a": rng.normal(0.0, 1.0, (n, dims)),
        "b": rng.normal(gap, 1.0, (n, dims)),
    }


@pytest.fixture(scope="module")
def result():
    return domain_distance.domain_distance(
        {"separated": _clusters(6.0), "overlapping": _clusters(0.0, seed=1)}, seed=0, max_iter=250
    )


def test_separated_clusters_are_farther_apart_than_overlapping(result):
    key = domain_distance.pair_name("a", "b")
    separated, overlapping = result["variants"]["separated"], result["variants"]["overlapping"]
    assert separated["l1_2d"][key] > 2 * overlapping["l1_2d"][key]
    # Feature space: centre gap per dimension ~6 vs ~0; separation ratio large vs small.
    assert separated["l1_feature"][key] == pytest.approx(6.0, abs=0.6)
    assert overlapping["l1_feature"][key] < 0.5
    assert separated["separation"][key] > 4 * overlapping["separation"][key]
    assert separated["num_points"] == {"a": 20, "b": 20}
    assert separated["embedding"]["a"].shape == (20, 2)


def test_feature_distance_matches_hand_computation():
    features = {"v": {"a": np.array([[0.0, 0.0], [2.0, 0.0]]), "b": np.array([[1.0, 4.0], [1.0, 2.0]])}}
    out = domain_distance.domain_distance(features, seed=0, max_iter=250)["variants"]["v"]
    # Centres (1, 0) and (1, 3): L1 = 3, per dimension 1.5; spreads 1 and 1 -> separation 3.
    assert out["l1_feature"]["a vs b"] == pytest.approx(1.5)
    assert out["separation"]["a vs b"] == pytest.approx(3.0)


def test_seeded_reproducible(result):
    again = domain_distance.domain_distance({"separated": _clusters(6.0)}, seed=0, max_iter=250)
    np.testing.assert_array_equal(
        again["variants"]["separated"]["embedding"]["a"], result["variants"]["separated"]["embedding"]["a"]
    )


def test_to_json_and_plot(result, tmp_path):
    text = json.dumps(domain_distance.to_json(result))
    assert "embedding" not in text and "separation" in text
    fig = tsne.plot_domain_distance(result)
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles[0].startswith("separated\n2-D L1")
    assert any(t.get_text() == "C-a" for t in fig.axes[0].texts)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"features\['v'\]\['b'\].*\(3,\)"):
        domain_distance.domain_distance({"v": {"a": np.zeros((4, 3)), "b": np.zeros(3)}})
    with pytest.raises(ValueError, match="at least 2 domains"):
        domain_distance.domain_distance({"v": {"a": np.zeros((4, 3))}})


def test_image_features_downsample_to_range():
    images = np.zeros((2, 8, 4, 3), dtype=np.uint8)
    images[1] = 255
    features = domain_distance.image_features(images, size=(4, 2))
    assert features.shape == (2, 24)
    np.testing.assert_allclose(features[0], -1.0)
    np.testing.assert_allclose(features[1], 1.0)


def _write_domain(folder, background, seed, count=12):
    """TFRecords of `count` 32x16 images: a random-colour body (with mask) on a domain background."""
    import io

    from PIL import Image

    from bgshift_tf.data import shards

    rng = np.random.default_rng(seed)
    examples = []
    for i in range(count):
        image = np.empty((32, 16, 3), np.uint8)
        image[:] = background
        image[4:28, 4:12] = rng.integers(0, 256, 3)
        mask = np.zeros((32, 16), np.uint8)
        mask[4:28, 4:12] = 255
        jpeg, png = io.BytesIO(), io.BytesIO()
        Image.fromarray(image).save(jpeg, format="JPEG", quality=95)
        Image.fromarray(mask).save(png, format="PNG")
        examples.append({
            "image": jpeg.getvalue(), "mask": png.getvalue(), "has_mask": 1, "pid": i, "label": i,
            "camera": 1, "domain": 0, "domain_name": "x", "split": "train",
            "filename": f"{i:04d}_c1s1_000001_01.jpg", "height": 32, "width": 16,
        })
    shards.write_shards(examples, folder, "x", "train", num_shards=2)


def test_visualize_entry_point_on_tfrecords(tmp_path):
    from absl import flags

    from bgshift_tf import visualize

    _write_domain(tmp_path / "dark", (20, 30, 90), seed=0)
    _write_domain(tmp_path / "bright", (230, 220, 40), seed=1)
    out_dir = tmp_path / "out"
    flags.FLAGS.unparse_flags()
    flags.FLAGS([
        "visualize", f"--tfrecord_dirs={tmp_path / 'dark'},{tmp_path / 'bright'}",
        "--variants=original,hard_mask", f"--out_dir={out_dir}", "--num_per_domain=10",
        "--image_size=32,16", "--feature_size=16,8",
    ])
    try:
        visualize.main([])
    finally:
        flags.FLAGS.unparse_flags()
    summary = json.loads((out_dir / "domain_distance.json").read_text())
    assert summary["domains"] == ["dark", "bright"]
    original, hard = summary["variants"]["original"], summary["variants"]["hard_mask"]
    assert original["num_points"] == {"dark": 10, "bright": 10}
    # Backgrounds are the only domain difference: the hard mask removes most of the gap.
    key = "dark vs bright"
    assert original["l1_feature"][key] > 3 * hard["l1_feature"][key]
    assert (out_dir / "domain_distance.png").stat().st_size > 1000


def test_domain_analysis_errors_name_the_problem(tmp_path):
    from bgshift_tf.report import domain_analysis

    with pytest.raises(ValueError, match="gan_run_dir"):
        domain_distance.variant_images({"image": np.zeros((1, 4, 2, 3))}, "soft_mask", domain=0,
                                       domain_name="a")
    with pytest.raises(ValueError, match="'a'.*mask_dir"):
        domain_distance.variant_images(
            {"image": np.zeros((2, 4, 2, 3)), "mask": np.zeros((2, 4, 2, 1)), "has_mask": np.array([1, 0])},
            "hard_mask", domain=0, domain_name="a",
        )
    with pytest.raises(ValueError, match="blur"):
        domain_analysis.analyze_tfrecord_dirs(["a", "b"], variants=["blur"], out_dir=tmp_path)


class _FakeGenerator:
    """Duck-typed generator: soft mask -> all -0.5, style transfer -> the target index / 10."""

    def soft_mask(self, images, training=False):
        return np.full_like(images, -0.5)

    def style_transfer(self, images, targets, training=False):
        return np.broadcast_to(np.asarray(targets, np.float32)[:, None, None, None] / 10, images.shape)


def test_variant_images_generator_variants_and_style_target():
    sample = {"image": np.zeros((3, 4, 2, 3), np.float32)}
    soft = domain_distance.variant_images(sample, "soft_mask", domain=0, domain_name="a",
                                          generator=_FakeGenerator())
    np.testing.assert_array_equal(soft, -0.5)
    moved = domain_distance.variant_images(sample, "style_transfer", domain=0, domain_name="a",
                                           generator=_FakeGenerator(), style_target=2)
    np.testing.assert_allclose(moved, 0.2)
    kept = domain_distance.variant_images(sample, "style_transfer", domain=2, domain_name="c",
                                          generator=_FakeGenerator(), style_target=2)
    np.testing.assert_array_equal(kept, sample["image"])  # the target domain stays original
