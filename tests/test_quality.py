"""Tests for the image-quality metrics (generation.quality: SSIM, checkerboard; generation.quality_style:
background-domain classifier, identity kept) on constructed images whose answers are known, and the
report's quality tables."""

import numpy as np
import pytest
from scipy import ndimage

from bgshift_tf.data import schema, shards
from bgshift_tf.generation import quality, quality_style
from bgshift_tf.workflow import report_data
from tiny_records import encode

H, W = 32, 16


def _smooth_images(num=4, seed=0):
    """Random images in [-1, 1] [num, H, W, 3]: smooth shapes (blurred noise) plus a faint fine-grained
    texture (white noise, some power at every frequency as in real images), and a body mask [num, H, W, 1]
    (a box in the middle)."""
    rng = np.random.default_rng(seed)
    pixels = ndimage.gaussian_filter(rng.normal(size=(num, H, W, 3)), (0, 2, 2, 0))
    pixels = np.clip(pixels / np.abs(pixels).max() * 0.8 + rng.normal(0, 0.03, pixels.shape), -1, 1)
    masks = np.zeros((num, H, W, 1))
    masks[:, 6:26, 4:12] = 1
    return pixels, masks


def _checker(height=H, width=W):
    rows, cols = np.indices((height, width))
    return ((-1.0) ** (rows + cols))[None, :, :, None]


# === SSIM inside the body ===


def test_perfect_copy_has_infinite_psnr_ssim_one_and_checkerboard_one():
    pixels, masks = _smooth_images()
    metrics = quality.suppression_metrics(pixels, pixels, masks)
    assert metrics["fg_psnr"] == float("inf") and metrics["fg_l1"] == 0
    assert metrics["fg_ssim"] == pytest.approx(1.0, abs=1e-12)
    assert metrics["checkerboard"] == pytest.approx(1.0, abs=1e-12)


def test_ssim_sees_the_body_only():
    pixels, masks = _smooth_images()
    # The body copied exactly, the background black (an ideal soft-mask image): SSIM stays exactly 1.
    ideal = np.where(masks > 0, pixels, -1.0)
    assert quality.suppression_metrics(pixels, ideal, masks)["fg_ssim"] == pytest.approx(1.0, abs=1e-12)
    # Anything changed inside the body lowers it.
    noisy = np.clip(pixels + np.random.default_rng(1).normal(0, 0.3, pixels.shape) * masks, -1, 1)
    assert quality.suppression_metrics(pixels, noisy, masks)["fg_ssim"] < 0.8


def test_ssim_of_flat_bodies_is_the_luminance_term():
    # Constant bodies a and b: no variance, so SSIM = (2ab + C1) / (a^2 + b^2 + C1) at every body pixel.
    masks = np.zeros((1, H, W, 1))
    masks[:, 8:24, 4:12] = 1
    a, b = 0.6, 0.3
    x = np.full((1, H, W, 3), 2 * a - 1)
    y = np.broadcast_to(np.where(masks > 0, 2 * b - 1, 0.9), x.shape)  # another background must not matter
    want = (2 * a * b + quality.SSIM_C1) / (a * a + b * b + quality.SSIM_C1)
    assert quality.suppression_metrics(x, y, masks)["fg_ssim"] == pytest.approx(want, rel=1e-9)
    with pytest.raises(ValueError, match="mask must be"):
        quality.masked_ssim_map(x, y, masks[..., 0])


# === Checkerboard score ===


def test_period2_band_holds_the_three_nyquist_windows():
    band = quality.period2_band(64, 32)  # reach: 64 // 32 = 2 rows, 1 column to either side
    assert band[32, 0] and band[0, 16] and band[32, 16] and band[34, 17] and band[62, 15]
    assert not band[0, 0] and not band[16, 8] and not band[35, 16] and not band[32, 18]
    assert band.sum() == 3 * 5 * 3
    with pytest.raises(ValueError, match="even image size"):
        quality.period2_band(63, 32)


def test_checkerboard_scores_high_for_an_added_pattern_and_low_for_a_blur():
    pixels, masks = _smooth_images()
    checkered = np.clip(pixels + 0.1 * _checker(), -1, 1)
    striped = np.clip(pixels + 0.1 * ((-1.0) ** np.arange(H))[None, :, None, None], -1, 1)  # rows alternate
    inside_body = np.clip(pixels + 0.1 * _checker() * masks, -1, 1)
    blurred = ndimage.gaussian_filter(pixels, (0, 1, 1, 0))
    score = {name: quality.suppression_metrics(pixels, out, masks)["checkerboard"]
             for name, out in {"checkered": checkered, "striped": striped, "inside_body": inside_body,
                               "blurred": blurred}.items()}
    assert score["checkered"] > 10 and score["striped"] > 10
    assert score["inside_body"] > 3  # a pattern whose strength varies over the image is still caught
    assert score["blurred"] < 0.5


# === Background-domain classifier ===


def _domain_images(domain, num, rng):
    """Images of constructed domain 0/1/2 (its own background colour and stripe texture), with bodies of
    random colours in random places: [num, H, W, 3] in [-1, 1] and masks [num, H, W, 1]."""
    colours = np.array([[0.7, 0.2, 0.2], [0.2, 0.6, 0.3], [0.3, 0.3, 0.7]])
    period = (2, 4, 8)[domain]
    stripes = 0.15 * np.sign(np.sin(np.pi * np.arange(W) / period))[None, :, None]
    pixels, masks = np.empty((num, H, W, 3)), np.zeros((num, H, W, 1))
    for i in range(num):
        background = colours[domain] + stripes + rng.normal(0, 0.05, (H, W, 3))
        top, left = rng.integers(2, 10), rng.integers(1, 6)
        masks[i, top:top + 20, left:left + 8] = 1
        pixels[i] = np.where(masks[i] > 0, rng.uniform(0, 1, 3), background)
    return np.clip(pixels, 0, 1) * 2 - 1, masks


def test_background_features_ignore_the_body():
    pixels, masks = _domain_images(0, 3, np.random.default_rng(0))
    other_body = np.where(masks > 0, -pixels, pixels)
    np.testing.assert_allclose(quality_style.background_features(pixels, masks),
                               quality_style.background_features(other_body, masks))
    with pytest.raises(ValueError, match="pixels and masks"):
        quality_style.background_features(pixels, masks[..., 0])


def test_classifier_on_separable_domains_gives_the_target_share():
    rng = np.random.default_rng(0)
    fit = [_domain_images(d, 20, rng) for d in range(3)]
    held = [_domain_images(d, 10, rng) for d in range(3)]
    classifier = quality_style.fit_domain_classifier(
        np.concatenate([quality_style.background_features(*f) for f in fit]), np.repeat(np.arange(3), 20))
    for domain, (pixels, masks) in enumerate(held):
        assert np.all(classifier.predict(quality_style.background_features(pixels, masks)) == domain)
    # "Transfers" 0 -> 2: domain 0's bodies on domain 2's backgrounds: all classified as domain 2.
    (source, source_masks), (target, _) = held[0], held[2]
    target_backgrounds, _ = _domain_images(2, 10, rng)
    transfers = np.where(source_masks > 0, source, target_backgrounds)
    assert np.mean(classifier.predict(quality_style.background_features(transfers, source_masks)) == 2) == 1.0
    assert np.mean(classifier.predict(quality_style.background_features(source, source_masks)) == 2) == 0.0
    with pytest.raises(ValueError, match="at least two domains"):
        quality_style.fit_domain_classifier(np.zeros((4, 3)), np.zeros(4))


# === Identity kept ===


def test_identity_similarity_on_constructed_features():
    eye = np.eye(6)
    pids = np.array([1, 1, 2, 2, 3, 3])
    kept = quality_style.identity_similarity(eye, 2 * eye, pids, chunk_rows=4)  # scale must not matter
    assert kept == {"same_person_cosine": 1.0, "different_person_cosine": 0.0, "margin": 1.0, "num_images": 6}
    # Transfers that swap people: each original meets another person's feature; its own transfer is orthogonal.
    swapped = eye[[2, 3, 4, 5, 0, 1]]
    lost = quality_style.identity_similarity(eye, swapped, pids)
    assert lost["same_person_cosine"] == 0.0 and lost["different_person_cosine"] == pytest.approx(1 / 4)
    assert lost["margin"] < 0
    assert np.isnan(quality_style.identity_similarity(eye, eye, np.ones(6))["different_person_cosine"])
    with pytest.raises(ValueError, match="must both be"):
        quality_style.identity_similarity(eye, eye[:5], pids)


# === On the tiny synthetic world: the readers, the classifier on originals, one folder of transfers ===


def _write_transfers(world, source_dir, target_dir, out_dir, image_size):
    """Writes `out_dir`: the source's train images with the target's train backgrounds (exact masks), same
    order and metadata as `source_dir` (what a perfect style transfer would give)."""
    targets = [t["pixels"].numpy() for t, _, _ in quality.paired_batches(world, target_dir, {}, split="train",
                                                                         image_size=image_size)]
    targets = np.concatenate(targets)
    examples = []
    for originals, _, masks in quality.paired_batches(world, source_dir, {}, split="train", image_size=image_size):
        pixels = originals["pixels"].numpy()
        backgrounds = targets[np.arange(len(examples), len(examples) + len(pixels)) % len(targets)]
        composed = np.round((np.where(masks > 0, pixels, backgrounds) + 1) * 127.5).astype(np.uint8)
        for i, image in enumerate(composed):
            fields = {name: originals[name][i].numpy() for name in schema.FIELDS if name not in ("image", "mask")}
            examples.append({**fields, "image": encode(image, "JPEG"), "mask": b"", "has_mask": 0})
    shards.write_shards(examples, out_dir, "transfer", "train", 1)
    return out_dir


def test_style_transfer_figures_on_the_tiny_world(tmp_path):
    from bgshift_tf.data.build import build_dataset_tfrecords
    from bgshift_tf.data.synthetic import domain_paths, make_world

    world = str(tmp_path / "world")
    names = [d["name"] for d in make_world(world, preset="tiny", seed=0, verbose=False)["domains"]]
    dirs = {}
    for index, name in enumerate(names):
        paths = domain_paths(world, name)
        dirs[name] = str(tmp_path / name)
        build_dataset_tfrecords("market1501", paths["data_dir"], dirs[name], mask_dir=paths["mask_dir"], num_shards=1,
                                domain_index=index, domain_name=name, progress=False)
    size = (64, 32)
    classifier, info = quality_style.domain_classifier_on_originals(world, dirs, size, batch_size=16)
    assert info["heldout_accuracy"] >= 0.9 and set(info["per_domain"]) == set(names)
    source, target = names[0], names[1]
    transfers = _write_transfers(world, dirs[source], dirs[target], str(tmp_path / "transfer"), size)

    def embed_fn(batch):  # "re-ID features" of the body: the middle of the image, centred
        middle = np.asarray(batch, np.float64)[:, 16:48, 10:22].reshape(len(batch), -1)  # [-1, 1] images
        return middle - middle.mean(axis=1, keepdims=True)

    result = quality_style.evaluate_style_transfer(world, dirs[source], transfers, classifier=classifier,
                                                   domains=names, target=target, embed_fn=embed_fn, batch_size=8)
    assert result["target_share"] >= 0.8 and sum(result["predicted_share"].values()) == pytest.approx(1.0)
    assert result["identity"]["margin"] > 0.3 and result["identity"]["num_images"] == result["num_images"]
    # The originals as their own "transfers": classified as the source, identical features.
    same = quality_style.evaluate_style_transfer(world, dirs[source], dirs[source], classifier=classifier,
                                                 domains=names, target=source, embed_fn=embed_fn, max_images=8,
                                                 batch_size=8)
    assert same["target_share"] == 1.0 and same["checkerboard"] == pytest.approx(1.0)
    assert same["num_images"] == 8 and same["identity"]["same_person_cosine"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="not in the order"):
        quality_style.evaluate_style_transfer(world, dirs[target], transfers, classifier=classifier,
                                              domains=names, target=target)


# === The report's tables ===


def test_report_quality_tables_from_a_quality_json():
    metrics = {"num_images": 4, "fg_psnr": 20.0, "fg_ssim": 0.8, "fg_l1": 0.05, "bg_energy": 0.1,
               "checkerboard": 1.5}
    classifier = {"heldout_accuracy": 0.95, "heldout_accuracy_all_domains": 0.97}
    quality_json = {
        "a": {"split": "train", "metrics": {"soft_mask": metrics}, "domain_classifier": classifier},
        "b": {"split": "query", "metrics": {"soft_mask": metrics}, "domain_classifier": classifier,
              "style_transfer": {"from": "a", "num_images": 4, "target_share": 0.75, "checkerboard": 2.0,
                                 "identity_model": "ide_original",
                                 "identity": {"same_person_cosine": 0.9, "different_person_cosine": 0.2,
                                              "margin": 0.7}}}}
    suppression = report_data._suppression_table(quality_json)
    assert suppression["rows"][0][-3:] == [0.05, 0.1, 1.5] and len(suppression["rows"]) == 2
    style = report_data._style_table(quality_json)
    assert style["rows"] == [["a → b", 4, 75.0, 95.0, 0.9, 0.2, 0.7, 2.0]]
    assert "97.0%" in style["caption"] and "ide_original" in style["caption"]
    del quality_json["b"]["style_transfer"]
    assert report_data._style_table(quality_json) is None
