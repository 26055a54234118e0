"""make_masks on the tiny synthetic world, through keras-hub's real loading path.

The segmenter is the default architecture (DeepLabV3+ on a ResNet bottleneck encoder) made tiny and randomly
initialised, saved with keras-hub's own `save_to_preset` and loaded back by `make_masks` with
`ImageSegmenter.from_preset(folder)`. Nothing is downloaded. A random segmenter predicts arbitrary classes,
so the tests check what must hold for any segmenter (layout, sizes, values, complementary class sets,
resume, bad images, the files build_tfrecords reads), not what a trained one would find.
"""

import json
import os
import re
import shutil

import keras_hub
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from bgshift_tf.data import schema, shards, synthetic
from bgshift_tf.data.build import build_dataset_tfrecords
from bgshift_tf.data.segment import CONTACT_SHEET_FILE, SUMMARY_FILE, BadImageError, make_masks
from bgshift_tf.report import grids

pytestmark = pytest.mark.slow  # each make_masks run loads and traces a segmenter (~5 s, more under load)

NUM_CLASSES = 21  # Pascal VOC's label set, as the default preset
MODEL_SIZE = (64, 32)  # the preset's image converter size; stride 32 needs multiples of 32
FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
ODD_IMAGE = "0001_c1s9_000009_09.jpg"  # added to the train folder at a size unlike the world's


@pytest.fixture(scope="module")
def preset_dir(tmp_path_factory):
    """A tiny random DeepLabV3+ segmenter saved as a keras-hub preset folder."""
    import keras

    keras.utils.set_random_seed(7)
    encoder = keras_hub.models.ResNetBackbone(
        input_conv_filters=[8], input_conv_kernel_sizes=[7], stackwise_num_filters=[64, 8, 8, 8],
        stackwise_num_blocks=[1, 1, 1, 1], stackwise_num_strides=[1, 2, 2, 2], block_type="bottleneck_block",
    )
    backbone = keras_hub.models.DeepLabV3Backbone(
        image_encoder=encoder, spatial_pyramid_pooling_key="P5", upsampling_size=8, dilation_rates=[6, 12, 18],
        low_level_feature_key="P2", projection_filters=8,
    )
    converter = keras_hub.layers.DeepLabV3ImageConverter(image_size=MODEL_SIZE, scale=1 / 127.5, offset=-1.0)
    segmenter = keras_hub.models.DeepLabV3ImageSegmenter(
        backbone=backbone, num_classes=NUM_CLASSES,
        preprocessor=keras_hub.models.DeepLabV3ImageSegmenterPreprocessor(image_converter=converter),
    )
    folder = str(tmp_path_factory.mktemp("segmenter") / "tiny_deeplab_v3_plus")
    segmenter.save_to_preset(folder)
    return folder


@pytest.fixture(scope="module")
def world_domain(tmp_path_factory):
    world = tmp_path_factory.mktemp("world") / "tiny"
    synthetic.make_world(world, preset="tiny", seed=0, domains=["synmarket"])
    return synthetic.domain_paths(world, "synmarket")["data_dir"]


@pytest.fixture
def data_dir(world_domain, tmp_path):
    """A private copy of the synmarket domain (tests damage it) with one train image of another size."""
    root = str(tmp_path / "synmarket")
    shutil.copytree(world_domain, root, ignore=shutil.ignore_patterns("masks", "masks_exact"))
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (50, 23, 3), dtype=np.uint8)).save(
        os.path.join(root, FOLDERS["train"], ODD_IMAGE)
    )
    return root


def _run(data_dir, out_dir, preset_dir, **kwargs):
    kwargs = {"person_classes": range(NUM_CLASSES), "progress": False, "batch_size": 4,
              "contact_sheet": grids.mask_contact_sheet, **kwargs}
    return make_masks(data_dir, "market1501", out_dir, segmenter=preset_dir, **kwargs)


def _images(data_dir, split):
    folder = os.path.join(data_dir, FOLDERS[split])
    return sorted(name for name in os.listdir(folder) if not name.startswith("-1_"))  # junk is never listed


def _mask(out_dir, split, image_name):
    return np.asarray(Image.open(os.path.join(out_dir, FOLDERS[split], image_name[:-4] + ".png")))


def _stamps(out_dir):
    return {
        os.path.join(folder, name): os.stat(os.path.join(folder, name)).st_mtime_ns
        for folder, _, names in os.walk(out_dir) for name in names if name.endswith(".png") and folder != out_dir
    }


def test_masks_mirror_the_images_and_build_tfrecords_reads_them(data_dir, preset_dir, tmp_path):
    out = str(tmp_path / "masks")
    summary = _run(data_dir, out, preset_dir, person_classes=range(0, 11), splits=["train", "query"],
                   min_coverage=0.3, max_coverage=0.7)
    for split in ("train", "query"):
        names = _images(data_dir, split)
        assert sorted(os.listdir(os.path.join(out, FOLDERS[split]))) == [n[:-4] + ".png" for n in names]
        coverages = {}
        for name in names:
            mask = _mask(out, split, name)
            with Image.open(os.path.join(data_dir, FOLDERS[split], name)) as image:
                assert mask.shape == (image.height, image.width) and mask.dtype == np.uint8
            assert set(np.unique(mask)) <= {0, 255}
            coverages[os.path.join(data_dir, FOLDERS[split], name)] = np.mean(mask == 255)
        info = summary["splits"][split]
        assert (info["images"], info["written"], info["kept"], info["bad_images"]) == (len(names), len(names), 0, [])
        assert info["low_coverage"] == sorted(p for p, c in coverages.items() if c < 0.3)
        assert info["high_coverage"] == sorted(p for p, c in coverages.items() if c > 0.7)
        assert info["low_coverage_fraction"] == pytest.approx(len(info["low_coverage"]) / len(names))
        assert info["mean_coverage"] == pytest.approx(np.mean(list(coverages.values())))
    assert not os.path.exists(os.path.join(out, FOLDERS["gallery"]))  # --splits=train,query only
    assert _mask(out, "train", ODD_IMAGE).shape == (50, 23)
    with open(os.path.join(out, SUMMARY_FILE)) as f:
        assert json.load(f) == json.loads(json.dumps(summary))
    with Image.open(summary["contact_sheet"]) as sheet:
        assert summary["contact_sheet"] == os.path.join(out, CONTACT_SHEET_FILE)
        assert sheet.height >= 2 * 8 * 128  # 8 sampled images per split, 128 px cells

    tf_dir = str(tmp_path / "tf")
    manifest = build_dataset_tfrecords("market1501", data_dir, tf_dir, mask_dir=out, num_shards=1, progress=False)
    assert manifest["splits"]["train"]["num_with_mask"] == len(_images(data_dir, "train"))
    assert manifest["splits"]["query"]["num_with_mask"] == len(_images(data_dir, "query"))
    for raw in tf.data.TFRecordDataset(shards.shard_files(tf_dir, "train")):
        example = schema.parse_example(raw)
        assert int(example["has_mask"]) == 1
        decoded = tf.io.decode_png(example["mask"]).numpy()[..., 0]
        np.testing.assert_array_equal(decoded, _mask(out, "train", example["filename"].numpy().decode()))


def test_complementary_person_classes_give_complementary_masks(data_dir, preset_dir, tmp_path):
    first = _run(data_dir, str(tmp_path / "a"), preset_dir, person_classes=[0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20])
    second = _run(data_dir, str(tmp_path / "b"), preset_dir, person_classes=range(1, NUM_CLASSES, 2))
    for name in _images(data_dir, "train"):
        np.testing.assert_array_equal(
            _mask(str(tmp_path / "a"), "train", name).astype(int) + _mask(str(tmp_path / "b"), "train", name), 255
        )
    assert first["splits"]["train"]["mean_coverage"] + second["splits"]["train"]["mean_coverage"] == pytest.approx(1)
    assert first["settings"]["person_classes"] == list(range(0, NUM_CLASSES, 2))
    with pytest.raises(ValueError, match=r"person_classes.*0\.\.20.*Received: \[15, 21\]"):
        _run(data_dir, str(tmp_path / "c"), preset_dir, person_classes=[15, 21])


def test_rerun_resumes_and_other_settings_need_overwrite(data_dir, preset_dir, tmp_path, capsys):
    from absl import flags

    from bgshift_tf import make_masks as entry_point

    out = str(tmp_path / "masks")
    _run(data_dir, out, preset_dir, person_classes=[15])
    stamps = _stamps(out)
    argv = ["make_masks", "--dataset=market1501", f"--data_dir={data_dir}", f"--out_dir={out}",
            f"--segmenter={preset_dir}", "--person_classes=15"]
    try:
        entry_point.main(flags.FLAGS(argv))
    finally:
        flags.FLAGS.unparse_flags()
    assert f"train: 0 masks written, {len(stamps)} kept" in capsys.readouterr().out
    assert _stamps(out) == stamps  # the second run wrote no mask

    removed = os.path.join(out, FOLDERS["train"], _images(data_dir, "train")[3][:-4] + ".png")
    os.remove(removed)
    again = _run(data_dir, out, preset_dir, person_classes=[15])
    assert (again["splits"]["train"]["written"], again["splits"]["train"]["kept"]) == (1, len(stamps) - 1)
    assert {p: t for p, t in _stamps(out).items() if p != removed} == {p: t for p, t in stamps.items() if p != removed}

    with pytest.raises(ValueError, match=r"made with .*\[15\].*make_masks.json.*--overwrite"):
        _run(data_dir, out, preset_dir, person_classes=[3])
    redone = _run(data_dir, out, preset_dir, person_classes=[3], overwrite=True)
    assert redone["splits"]["train"]["written"] == len(stamps) and redone["settings"]["person_classes"] == [3]
    assert all(_stamps(out)[p] != t for p, t in stamps.items() if p != removed)


def test_a_corrupt_image_is_named_or_skipped_and_counted(data_dir, preset_dir, tmp_path):
    names = _images(data_dir, "train")
    bad = os.path.join(data_dir, FOLDERS["train"], names[5])
    with open(bad, "rb") as f:
        head = f.read(300)
    with open(bad, "wb") as f:
        f.write(head)  # a truncated JPEG: the header reads, the pixels do not
    out = str(tmp_path / "masks")
    with pytest.raises(BadImageError, match=rf"{names[5]}.*--skip_bad_images"):
        _run(data_dir, out, preset_dir)
    summary = _run(data_dir, out, preset_dir, skip_bad_images=True)
    assert summary["skipped"]["train_bad_image"] == 1 and summary["splits"]["train"]["bad_images"] == [bad]
    assert sorted(os.listdir(os.path.join(out, FOLDERS["train"]))) == [n[:-4] + ".png" for n in names if n != names[5]]
    assert summary["splits"]["train"]["written"] + summary["splits"]["train"]["kept"] == len(names) - 1
    # Every class is body here (the tests' default), so every mask is all body and listed as too large.
    assert all(np.all(_mask(out, "train", n) == 255) for n in names if n != names[5])
    assert summary["splits"]["train"]["high_coverage_fraction"] == 1.0


def test_a_preset_that_cannot_be_loaded_says_how_to_pass_a_folder(data_dir, tmp_path):
    out = str(tmp_path / "masks")
    os.makedirs(str(tmp_path / "empty_folder"))
    for preset in ("no_such_segmenter_preset", str(tmp_path / "empty_folder")):
        how = r"(.|\n)*--segmenter=/path/to/preset_folder"
        with pytest.raises(ValueError, match=rf"{re.escape(preset)}.*--segmenter{how}"):
            make_masks(data_dir, "market1501", out, segmenter=preset, progress=False)
    assert os.listdir(out) == []  # no settings recorded: the next run, with a good preset, is not refused


def test_pipeline_makes_the_masks_of_auto_domains_before_the_tfrecords(tmp_path, preset_dir):
    from bgshift_tf.workflow import main_job
    from bgshift_tf.workflow import stages as stages_lib

    world = str(tmp_path / "world")
    synthetic.make_world(world, preset="tiny", seed=0)
    domains = [d for d, _ in synthetic.DOMAINS]
    paths = {d: synthetic.domain_paths(world, d) for d in domains}
    config = {
        "name": "auto_masks", "runs_root": str(tmp_path / "runs"), "data": "real", "num_shards": 1,
        "domain_names": domains, "domain_datasets": ["market1501"] * 3,
        "domain_data_dirs": [paths[d]["data_dir"] for d in domains],
        "domain_mask_dirs": ["auto", paths["synduke"]["mask_dir"], ""],
        "mask_segmenter": preset_dir, "mask_person_classes": [str(c) for c in range(NUM_CLASSES)],
        "gan_flagfile": "", "reid_flagfile": "", "verbose": 0,
    }
    ctx = main_job.layout(config)
    stages = [s for s in main_job.main_job_stages(ctx) if s.name in ("world", "masks", "tfrecords")]
    assert [s.name for s in stages] == ["world", "masks", "tfrecords"]
    results = stages_lib.run_stages(ctx.run_dir, stages, log=lambda line: None)
    assert results["masks"]["outputs"]["dirs"] == {"synmarket": ctx.masks("synmarket")}
    train_images = _images(paths["synmarket"]["data_dir"], "train")
    assert sorted(os.listdir(os.path.join(ctx.masks("synmarket"), FOLDERS["train"]))) == [
        n[:-4] + ".png" for n in train_images]
    counts = {d: shards.read_manifest(ctx.tfrecords(d))["splits"]["train"]["num_with_mask"] for d in domains}
    assert counts["synmarket"] == len(train_images) and counts["synduke"] > 0 and counts["syncuhk"] == 0
    again = stages_lib.run_stages(ctx.run_dir, stages, log=lambda line: None)
    assert again["masks"]["status"] == "skipped"
    with pytest.raises(ValueError, match="mask_person_classes"):
        main_job.layout({**config, "mask_person_classes": ["person"]})
