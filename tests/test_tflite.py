"""TFLite models converted from the exported SavedModel, run with ai_edge_litert: parity per variant,
fixed trained size and static batch (XNNPACK takes the whole graph), calibration and argument errors,
thread / XNNPACK settings."""

import os

import numpy as np
import pytest
import tensorflow as tf

from bgshift_tf.export import saved_model as saved_model_lib
from bgshift_tf.export import tflite
from bgshift_tf.export.runtime import RuntimeOptions, machine_cores
from export_helpers import GENERATOR_SIZE, REID_SIZE, random_images, tiny_generator, tiny_ide

# Loose sanity bounds on images_float (range [-1, 1]) vs the SavedModel; measured values go to BUILD_NOTES.
SANITY_MAX_ABS = {"float32": 1e-4, "float16": 0.05, "dynamic_int8": 0.3, "int8": 0.6}


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    import keras

    keras.utils.set_random_seed(11)
    export_dir = str(tmp_path_factory.mktemp("saved_models"))
    return {
        "generator": saved_model_lib.export_generator(tiny_generator(), export_dir, version=1),
        "embedder": saved_model_lib.export_embedder(tiny_ide(), export_dir, model_name="ide_embedder", version=1),
        "out": str(tmp_path_factory.mktemp("tflite")),
    }


@pytest.fixture(scope="module")
def soft_mask_models(exports):
    """soft_mask in every variant (through convert), style_transfer in float32 only (to save time)."""
    calibration = random_images(GENERATOR_SIZE, 8, seed=5)
    paths = tflite.convert(exports["generator"], exports["out"], tflite.VARIANTS, calibration,
                           signatures=("soft_mask",))
    style_path = os.path.join(exports["out"], "style_transfer_float32.tflite")
    with open(style_path, "wb") as f:
        f.write(tflite.convert_signature(exports["generator"], "style_transfer", "float32"))
    return {**paths, "style_transfer": {"float32": style_path}}


def _saved_model_outputs(version_dir, signature, **inputs):
    loaded = tf.saved_model.load(version_dir)
    return {k: v.numpy() for k, v in loaded.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()}).items()}


@pytest.mark.slow
def test_every_variant_matches_the_saved_model(exports, soft_mask_models):
    images = random_images(GENERATOR_SIZE, 3, seed=9)  # batch 3: the runner feeds the static batch 3 times
    reference = _saved_model_outputs(exports["generator"], "soft_mask", images=images)
    measured = {}
    for variant, path in soft_mask_models["soft_mask"].items():
        outputs = tflite.load_runner(path, RuntimeOptions())(images=images)
        assert outputs["images_float"].shape == (3, *GENERATOR_SIZE, 3)
        measured[variant] = float(np.abs(outputs["images_float"] - reference["images_float"]).max())
        assert measured[variant] < SANITY_MAX_ABS[variant], (variant, measured)
    float32 = tflite.load_runner(soft_mask_models["soft_mask"]["float32"], RuntimeOptions())
    assert np.abs(float32(images=images)["images_uint8"].astype(int) - reference["images_uint8"]).max() <= 1
    # Quantised variants are smaller files and not bit-identical to float32.
    assert measured["float16"] > 0 and measured["int8"] > measured["float32"]


@pytest.mark.slow
def test_style_transfer_takes_domains_and_fixed_size(exports, soft_mask_models):
    path = soft_mask_models["style_transfer"]["float32"]
    runner = tflite.load_runner(path, RuntimeOptions())
    assert sorted(runner.input_names) == ["images", "target_domain"]
    shapes = {d["name"]: list(d["shape_signature"]) for d in runner.interpreter.get_input_details()}
    assert [tflite.BATCH_SIZE, *GENERATOR_SIZE, 3] in shapes.values() and [tflite.BATCH_SIZE] in shapes.values()
    images, domains = random_images(GENERATOR_SIZE, 2, seed=2), np.array([2, 1], np.int32)
    reference = _saved_model_outputs(exports["generator"], "style_transfer", images=images, target_domain=domains)
    outputs = runner(images=images, target_domain=domains)
    assert np.abs(outputs["images_float"] - reference["images_float"]).max() < 1e-4


@pytest.mark.slow
def test_embedder_float32_matches(exports, tmp_path):
    path = tmp_path / "embed.tflite"
    path.write_bytes(tflite.convert_signature(exports["embedder"], "embed", "float32"))
    images = random_images(REID_SIZE, 2, seed=4)
    reference = _saved_model_outputs(exports["embedder"], "embed", images=images)["features"]
    features = tflite.load_runner(str(path), RuntimeOptions())(images=images)["features"]
    assert features.shape == reference.shape == (2, 128)
    assert np.abs(features - reference).max() < 1e-4 * max(1.0, np.abs(reference).max())


def test_convert_skips_jpeg_signatures(exports, tmp_path, monkeypatch):
    monkeypatch.setattr(tflite, "convert_signature", lambda version_dir, signature, variant, calibration, batch: b"stub")
    paths = tflite.convert(exports["generator"], str(tmp_path), ("float32",))
    assert sorted(paths) == ["soft_mask", "style_transfer"]  # no *_jpeg: TFLite has no JPEG decoder
    assert sorted(os.listdir(tmp_path)) == ["soft_mask_float32.tflite", "style_transfer_float32.tflite"]


@pytest.mark.slow
def test_a_batched_model_pads_the_last_call_and_matches_batch_one(exports, soft_mask_models, tmp_path):
    """--tflite_batch_size=2: the file says so, every shape is [2, ...] (one XNNPACK partition), and 3 images
    (two calls, the second padded) give batch 1's outputs, 3 of them."""
    paths = tflite.convert(exports["generator"], str(tmp_path), ("float32",), signatures=("soft_mask",), batch_size=2)
    path = paths["soft_mask"]["float32"]
    assert os.path.basename(path) == "soft_mask_float32_batch2.tflite"
    batched = tflite.load_runner(path, RuntimeOptions())
    assert batched.batch_size == 2 and tflite.delegated_partitions(batched) == 1
    images = random_images(GENERATOR_SIZE, 3, seed=12)
    single = tflite.load_runner(soft_mask_models["soft_mask"]["float32"], RuntimeOptions())(images=images)
    outputs = batched(images=images)
    assert outputs["images_float"].shape == (3, *GENERATOR_SIZE, 3)
    assert np.abs(outputs["images_float"] - single["images_float"]).max() < 1e-5
    assert np.abs(batched(images=images[2:])["images_float"] - single["images_float"][2:]).max() < 1e-5
    with pytest.raises(ValueError, match=r"same, non-zero batch. Received: \{'images': 0\}"):
        batched(images=images[:0])
    # int8 calibrates on the batch-1 inputs regrouped to the static batch (3 images: one batch of 2).
    calibration = saved_model_lib.calibration_inputs(exports["generator"], "soft_mask",
                                                     random_images(GENERATOR_SIZE, 3, seed=5))
    path = tmp_path / "int8_batch2.tflite"
    path.write_bytes(tflite.convert_signature(exports["generator"], "soft_mask", "int8", calibration, batch_size=2))
    int8 = tflite.load_runner(str(path), RuntimeOptions())(images=images)["images_float"]
    assert 1e-4 < np.abs(int8 - single["images_float"]).max() < SANITY_MAX_ABS["int8"]


def test_conversion_argument_errors(exports):
    with pytest.raises(ValueError, match=r"--tflite_batch_size\) must be a positive integer. Received: batch_size=0"):
        tflite.convert_signature(exports["generator"], "soft_mask", "float32", batch_size=0)
    with pytest.raises(ValueError, match="variant='int4'"):
        tflite.convert_signature(exports["generator"], "soft_mask", "int4")
    with pytest.raises(ValueError, match="representative_inputs"):
        tflite.convert_signature(exports["generator"], "soft_mask", "int8")
    with pytest.raises(ValueError, match="signature_name='soft_mask_jpeg'"):
        tflite.convert_signature(exports["generator"], "soft_mask_jpeg", "float32")


def test_runner_rejects_wrong_inputs(soft_mask_models):
    runner = tflite.load_runner(soft_mask_models["soft_mask"]["float32"], RuntimeOptions())
    with pytest.raises(ValueError, match=r"takes inputs \['images'\]. Received: \['image'\]"):
        runner(image=random_images(GENERATOR_SIZE, 1))


@pytest.mark.parametrize("options, threads, resolver", [
    (RuntimeOptions(), machine_cores(), "BUILTIN"),
    (RuntimeOptions(num_threads=1, xnnpack=False), 1, "BUILTIN_WITHOUT_DEFAULT_DELEGATES"),
])
def test_runner_applies_threads_and_xnnpack(soft_mask_models, monkeypatch, options, threads, resolver):
    from ai_edge_litert import interpreter as litert

    created = []

    class RecordingInterpreter(litert.Interpreter):
        def __init__(self, **kwargs):
            created.append(kwargs)
            super().__init__(**kwargs)

    monkeypatch.setattr(litert, "Interpreter", RecordingInterpreter)
    runner = tflite.load_runner(soft_mask_models["soft_mask"]["float32"], options)
    assert isinstance(runner.interpreter, RecordingInterpreter)
    assert created[0]["num_threads"] == threads
    assert created[0]["experimental_op_resolver_type"] == litert.OpResolverType[resolver]
    assert runner(images=random_images(GENERATOR_SIZE, 2))["images_float"].shape == (2, *GENERATOR_SIZE, 3)


@pytest.mark.slow
@pytest.mark.parametrize("variant, partitions", [("float32", 1), ("int8", None)])
def test_static_batch_lets_xnnpack_take_the_graph(soft_mask_models, variant, partitions):
    """Every shape static: float32 is one XNNPACK partition (a resizable batch split the generator into one
    per norm); int8 is delegated too (its float norm statistics split it)."""
    runner = tflite.load_runner(soft_mask_models["soft_mask"][variant], RuntimeOptions())
    assert runner.batch_size == tflite.BATCH_SIZE
    assert tflite.delegated_partitions(runner) == partitions if partitions else tflite.delegated_partitions(runner) >= 1
    without = tflite.load_runner(soft_mask_models["soft_mask"][variant], RuntimeOptions(xnnpack=False))
    assert tflite.delegated_partitions(without) == 0
