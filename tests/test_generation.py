"""Tests for bgshift_tf.generation (translate, quality) and the generate entry point (tiny sizes)."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from bgshift_tf.core import atomic_io
from bgshift_tf.data import images, schema, shards
from bgshift_tf.generation import quality, translate
from bgshift_tf.models.generator import Generator
from bgshift_tf.report import domain_analysis
from bgshift_tf.training import loop
from bgshift_tf.training.gan_checkpoint import load_generator
from tiny_records import SPLIT_SIZES, make_domain_records

GEN_SIZE = (16, 8)  # the generator's size; the records are 32x16, so generation also resizes


def _make_run(run_dir, domains=("dom0", "dom1")):
    """A run directory as train_gan leaves it (config.json + one checkpoint), without training."""
    generator = Generator(num_domains=len(domains), image_size=GEN_SIZE, base_filters=4, num_res_blocks=1)
    atomic_io.write_json(os.path.join(run_dir, "config.json"),
                           {"generator": generator.get_config(), "domains": list(domains)})
    checkpoint = tf.train.Checkpoint(step=tf.Variable(1, dtype=tf.int64), generator=generator)
    tf.train.CheckpointManager(checkpoint, loop.checkpoint_dir(run_dir), max_to_keep=1).save()
    return generator


def _records(folder, split):
    return [schema.parse_example(r) for r in tf.data.TFRecordDataset(shards.shard_files(folder, split))]


def _pixels(encoded):
    return tf.cast(schema.decode_image(encoded), tf.float32).numpy() / 127.5 - 1.0


def test_translate_writes_same_metadata_counts_and_generator_outputs(tmp_path):
    in_dir = make_domain_records(tmp_path / "in", "dom0", 0, splits=("train", "query", "gallery"))
    generator = _make_run(str(tmp_path / "run"))
    result = translate.translate_dataset(str(tmp_path / "run"), in_dir, str(tmp_path / "out"),
                                         target_domain="dom1", batch_size=3, jpeg_dirs=True, verbose=0)
    assert result["outputs"] == {"soft_mask": str(tmp_path / "out" / "dom0_soft_mask"),
                                 "style_transfer": str(tmp_path / "out" / "dom0_style_transfer_to_dom1"),
                                 "hard_mask": str(tmp_path / "out" / "dom0_hard_mask")}
    in_manifest = shards.read_manifest(in_dir)
    for kind, folder in result["outputs"].items():
        manifest = shards.read_manifest(folder)
        assert manifest["generated"]["variant"] == kind
        for split, size in SPLIT_SIZES.items():
            assert result["written"][kind][split] == size
            assert manifest["splits"][split]["num_shards"] == in_manifest["splits"][split]["num_shards"]
            originals, outputs = _records(in_dir, split), _records(folder, split)
            assert len(outputs) == size
            for original, output in zip(originals, outputs):
                for field in schema.FIELDS:
                    if field not in ("image", "mask", "height", "width"):
                        assert output[field].numpy() == original[field].numpy(), (kind, split, field)
                assert (int(output["height"]), int(output["width"])) == GEN_SIZE
                assert schema.decode_image(output["image"]).shape == (*GEN_SIZE, 3)
                assert schema.decode_mask(output["mask"], 16, 8).shape == (*GEN_SIZE, 1)
            jpegs = os.listdir(os.path.join(folder, "images", images.SPLIT_FOLDERS[split]))
            assert sorted(jpegs) == sorted(r["filename"].numpy().decode() for r in originals)
    # The pixels are the generator's outputs (up to JPEG error) on the resized inputs.
    original = _records(in_dir, "train")[0]
    resized = tf.image.resize(tf.cast(schema.decode_image(original["image"]), tf.float32), GEN_SIZE)[None] / 127.5 - 1
    expected = {"soft_mask": generator.soft_mask(resized)[0].numpy(),
                "style_transfer": generator.style_transfer(resized, tf.constant([1]))[0].numpy()}
    mask = tf.image.resize(schema.decode_mask(original["mask"], 32, 16), GEN_SIZE, method="nearest").numpy()
    expected["hard_mask"] = (resized[0].numpy() + 1) * mask - 1
    for kind, value in expected.items():
        got = _pixels(_records(result["outputs"][kind], "train")[0]["image"])
        # Compare with the same JPEG round trip (chroma subsampling is lossy on 16x8 noise-like images).
        pixels = tf.cast(tf.round(tf.clip_by_value((value + 1) * 127.5, 0, 255)), tf.uint8)
        want = _pixels(tf.io.encode_jpeg(pixels, quality=95))
        assert np.max(np.abs(got - want)) <= 3 / 127.5, kind
    hard = _pixels(_records(result["outputs"]["hard_mask"], "train")[0]["image"])
    assert np.mean((hard[mask[..., 0] == 0] + 1) / 2) < 0.03  # background black


def test_translate_skips_complete_outputs_and_checks_arguments(tmp_path):
    in_dir = make_domain_records(tmp_path / "in", "dom0", 0)
    _make_run(str(tmp_path / "run"))
    run, out = str(tmp_path / "run"), str(tmp_path / "out")
    first = translate.translate_dataset(run, in_dir, out, variants=["soft_mask"], verbose=0)
    shard = shards.shard_files(first["outputs"]["soft_mask"], "train")[0]
    stamp = os.stat(shard).st_mtime_ns
    again = translate.translate_dataset(run, in_dir, out, variants=["soft_mask"], verbose=0)
    assert again["written"]["soft_mask"] == {} and again["skipped"]["soft_mask"] == {"train": "already complete"}
    assert os.stat(shard).st_mtime_ns == stamp
    with pytest.raises(ValueError, match=r"domains \['dom0', 'dom1'\].*target_domain='synduke'"):
        translate.translate_dataset(run, in_dir, out, variants=["style_transfer"], target_domain="synduke", verbose=0)
    with pytest.raises(ValueError, match="target_domain"):
        translate.translate_dataset(run, in_dir, out, variants=["style_transfer"], verbose=0)
    with pytest.raises(ValueError, match=r"variants.*Received: \['blur'\]"):
        translate.translate_dataset(run, in_dir, out, variants=["blur"], verbose=0)


def test_hard_mask_split_without_masks_is_not_written(tmp_path):
    in_dir = str(tmp_path / "in")
    examples = [dict(image=tf.io.encode_jpeg(tf.zeros([32, 16, 3], tf.uint8)).numpy(), mask=b"", has_mask=0,
                     pid=1, label=-1, camera=1, domain=0, domain_name="dom0", split="query",
                     filename=f"0001_c1s1_00000{i}_00.jpg", height=32, width=16) for i in range(2)]
    shards.write_shards(examples, in_dir, "dom0", "query", 1)
    _make_run(str(tmp_path / "run"))
    result = translate.translate_dataset(str(tmp_path / "run"), in_dir, str(tmp_path / "out"), variants=["hard_mask"],
                                         verbose=0)
    assert result["skipped"]["hard_mask"] == {"query": "2 of 2 records have no mask"}


def test_bf16_generation_is_float32_and_close_to_float32_generation_of_the_same_checkpoint(tmp_path):
    """Tolerances (measured 0.03-0.04 max, 0.005 mean; 9-14 max, 2.0 mean grey levels): generator outputs in
    [-1, 1] within 0.08 max / 0.015 mean of float32's; the written JPEGs within 24 max / 4 mean grey levels."""
    in_dir = make_domain_records(tmp_path / "in", "dom0", 0)
    run = str(tmp_path / "run")
    _make_run(run)
    x = tf.random.stateless_uniform([4, *GEN_SIZE, 3], seed=[0, 1], minval=-1.0, maxval=1.0)
    reference, bf16 = load_generator(run, "float32"), load_generator(run, "mixed_bfloat16")
    assert bf16.dtype_policy.name == "mixed_bfloat16"
    for make in (lambda g: g.soft_mask(x), lambda g: g.style_transfer(x, tf.fill([4], 1))):
        got, want = make(bf16), make(reference).numpy()
        assert got.dtype == tf.float32
        difference = np.abs(got.numpy() - want)
        assert 0 < difference.max() <= 0.08 and difference.mean() <= 0.015  # > 0: it really computed in bf16
    pixels = {}
    for precision in ("float32", "mixed_bfloat16"):
        outputs = translate.translate_dataset(run, in_dir, str(tmp_path / precision), target_domain="dom1",
                                              variants=["soft_mask", "style_transfer"], precision=precision,
                                              verbose=0)["outputs"]
        pixels[precision] = {variant: np.stack([schema.decode_image(r["image"]).numpy()
                                                for r in _records(folder, "train")])
                             for variant, folder in outputs.items()}
    for variant, want in pixels["float32"].items():
        got = pixels["mixed_bfloat16"][variant]
        assert got.dtype == np.uint8 and got.shape == want.shape == (SPLIT_SIZES["train"], *GEN_SIZE, 3)
        difference = np.abs(got.astype(int) - want.astype(int))
        assert difference.max() <= 24 and difference.mean() <= 4, variant


def test_domain_analysis_runs_the_generator_in_the_given_precision(tmp_path):
    folders = [make_domain_records(tmp_path / name, name, index) for index, name in enumerate(("dom0", "dom1"))]
    run = str(tmp_path / "run")
    _make_run(run)
    distances = {}
    for precision in ("float32", "mixed_bfloat16"):
        summary = domain_analysis.analyze_tfrecord_dirs(
            folders, variants=["soft_mask", "style_transfer"], out_dir=str(tmp_path / precision), num_per_domain=8,
            feature_size=(8, 4), gan_run_dir=run, style_target=1, precision=precision)
        distances[precision] = np.array([summary["variants"][v]["l1_feature"]["dom0 vs dom1"]
                                         for v in ("soft_mask", "style_transfer")])
    # bf16 moves the centres' L1 distance per feature a little (measured <= 0.0003; 0 would mean float32).
    difference = np.abs(distances["mixed_bfloat16"] - distances["float32"])
    assert np.all(difference > 0) and np.all(difference <= 0.01), distances


# === Quality ===


def _hand_made(seed=0):
    rng = np.random.default_rng(seed)
    inputs = rng.uniform(-1, 1, (2, 8, 4, 3)).astype("float32")
    masks = np.zeros((2, 8, 4, 1), np.float32)
    masks[:, 2:6, 1:3] = 1
    return inputs, masks


def test_quality_perfect_suppression_and_identity():
    inputs, masks = _hand_made()
    perfect = quality.suppression_metrics(inputs, np.where(masks > 0, inputs, -1.0), masks)
    assert perfect["bg_energy"] == 0 and perfect["fg_psnr"] == float("inf") and perfect["fg_l1"] == 0
    identity = quality.suppression_metrics(inputs, inputs, masks)
    background = np.broadcast_to(masks, inputs.shape) == 0
    assert identity["fg_psnr"] == float("inf") and identity["fg_l1"] == 0
    np.testing.assert_allclose(identity["bg_energy"], np.mean((inputs[background] + 1) / 2), rtol=1e-6)
    assert identity["fg_values"] == 2 * 4 * 2 * 3 and identity["bg_values"] == 2 * 8 * 4 * 3 - 48


def test_quality_known_offset():
    inputs, masks = _hand_made()
    inputs = np.clip(inputs, -1, 0.7)
    shifted = quality.suppression_metrics(inputs, inputs + 0.2, masks)  # 0.1 in [0, 1] units
    np.testing.assert_allclose(shifted["fg_l1"], 0.1, rtol=1e-5)
    np.testing.assert_allclose(shifted["fg_psnr"], 20.0, rtol=1e-5)
    with pytest.raises(ValueError, match="differ in shape"):
        quality.suppression_metrics(inputs, inputs[:1], masks)


def test_blurred_keeps_smooth_images_and_erases_period2_detail():
    ramp = np.broadcast_to(np.linspace(-1, 1, 4)[None, None, :, None], (1, 8, 4, 3)).astype(np.float32)
    constant = np.full((1, 8, 4, 3), 0.3, np.float32)
    np.testing.assert_allclose(quality.blurred(constant), constant, atol=1e-6)
    checker = np.where((np.indices((8, 4)).sum(0) % 2)[None, ..., None] > 0, 1.0, -1.0) * np.ones((1, 8, 4, 3))
    np.testing.assert_allclose(quality.blurred(checker), 0.0, atol=1e-6)  # the period-2 pattern is gone
    masks = np.ones((1, 8, 4, 1), np.float32)
    # A smooth ramp loses little to the blur, a checkerboard everything: PSNR orders them.
    assert (quality.suppression_metrics(ramp, quality.blurred(ramp), masks)["fg_psnr"]
            > 15 > quality.suppression_metrics(checker, quality.blurred(checker), masks)["fg_psnr"])
    with pytest.raises(ValueError, match="not a multiple of factor=3"):
        quality.blurred(constant, 3)


def test_quality_missed_region_hand_made():
    inputs, masks = _hand_made()  # exact body: rows 2-5, columns 1-2 of an 8x4 image
    inputs = np.clip(inputs, -1, 0.5)
    parser = masks.copy()
    parser[:, 4:6] = 0  # the parser misses rows 4-5 of the body (a "bag"): 2 images x 2 x 2 pixels
    # Hard mask from the parser: the missed pixels turn black (-1).
    hard = quality.suppression_metrics(inputs, (inputs + 1) * parser - 1, masks, parser)
    missed = (masks > 0) & (parser == 0)
    assert hard["missed_values"] == 2 * 2 * 2 * 3
    np.testing.assert_allclose(hard["missed_l1"], np.mean((np.broadcast_to(inputs, inputs.shape)[
        np.broadcast_to(missed, inputs.shape)] + 1) / 2), rtol=1e-6)
    # Whole foreground: half of it (the missed half) is wrong, the other half exact.
    np.testing.assert_allclose(hard["fg_l1"], hard["missed_l1"] / 2, rtol=1e-6)
    # A "soft" output: keeps the missed region up to a 0.1 offset (0.2 in [-1,1]), dims nothing else there.
    soft_out = np.where(np.broadcast_to(missed, inputs.shape), inputs + 0.2, inputs)
    soft = quality.suppression_metrics(inputs, soft_out, masks, parser)
    np.testing.assert_allclose(soft["missed_l1"], 0.1, rtol=1e-5)
    np.testing.assert_allclose(soft["missed_psnr"], 20.0, rtol=1e-5)
    np.testing.assert_allclose(soft["fg_psnr"], 10 * np.log10(1 / (0.01 / 2)), rtol=1e-5)
    # No parser mask given, or a parser that finds the whole body: no missed region.
    assert np.isnan(quality.suppression_metrics(inputs, soft_out, masks)["missed_psnr"])
    everything = quality.suppression_metrics(inputs, soft_out, masks, np.ones_like(masks))
    assert everything["missed_values"] == 0 and np.isnan(everything["missed_l1"])
    with pytest.raises(ValueError, match="parser_masks and exact_masks differ"):
        quality.suppression_metrics(inputs, soft_out, masks, parser[:1])


@pytest.mark.slow
def test_evaluate_suppression_on_the_tiny_world(tmp_path):
    from bgshift_tf.data.build import build_dataset_tfrecords
    from bgshift_tf.data.synthetic import domain_paths, make_world

    world = str(tmp_path / "world")
    make_world(world, preset="tiny", seed=0, domains=["synmarket"])
    paths = domain_paths(world, "synmarket")
    in_dir = str(tmp_path / "tf")
    build_dataset_tfrecords("market1501", paths["data_dir"], in_dir, mask_dir=paths["mask_dir"], num_shards=1,
                            domain_name="synmarket", progress=False)
    run = str(tmp_path / "run")
    os.makedirs(run)
    with open(os.path.join(run, "config.json"), "w") as f:
        json.dump({"generator": {"image_size": [64, 32]}}, f)  # hard masks need no generator
    out = translate.translate_dataset(run, in_dir, str(tmp_path / "out"), variants=["hard_mask"], splits=["train"],
                                      verbose=0)
    metrics = quality.evaluate_suppression(world, in_dir, {"hard_mask": out["outputs"]["hard_mask"]})
    original, hard = metrics["original"], metrics["hard_mask"]
    assert original["fg_psnr"] == float("inf") and original["bg_energy"] > 0.2
    # Parser masks are close to the exact ones: most background is black, the body mostly kept.
    assert hard["bg_energy"] < 0.2 * original["bg_energy"]
    assert hard["fg_psnr"] > 15 and hard["num_images"] == original["num_images"] > 0
    # The parser misses part of the body, which the hard mask blackens; the input keeps it exactly.
    assert hard["missed_values"] > 0 and original["missed_psnr"] == float("inf")
    assert hard["missed_l1"] > hard["fg_l1"] and hard["missed_psnr"] < hard["fg_psnr"]
