"""ONNX conversion of the exported SavedModel (tf2onnx) checked in onnxruntime, the QDQ int8 variant (parity
and the embedder's ranking), session settings; TensorRT commands and the TF-TRT guard on a machine without GPU."""

import os

import numpy as np
import onnxruntime
import pytest
import tensorflow as tf

from bgshift_tf.export import onnx as onnx_lib
from bgshift_tf.export import ranking
from bgshift_tf.export import saved_model as saved_model_lib
from bgshift_tf.export.runtime import RuntimeOptions, machine_cores
from export_helpers import GENERATOR_SIZE, REID_SIZE, random_images, tiny_da2s, tiny_generator


# int8 bounds: images_float lies in [-1, 1]; the ranking may move by at most one query in ten.
INT8_SANITY_MAX_ABS = 0.6
RANKING_TOLERANCE = 0.1


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    import keras

    keras.utils.set_random_seed(3)
    export_dir = str(tmp_path_factory.mktemp("saved_models"))
    generator_dir = saved_model_lib.export_generator(tiny_generator(), export_dir, version=1)
    out = str(tmp_path_factory.mktemp("onnx"))
    paths = onnx_lib.convert(generator_dir, out, onnx_lib.VARIANTS, random_images(GENERATOR_SIZE, 8, seed=5))
    return {"generator": generator_dir, "paths": paths, "export_dir": export_dir}


def _saved_model_outputs(version_dir, signature, **inputs):
    loaded = tf.saved_model.load(version_dir)
    return {k: v.numpy() for k, v in loaded.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()}).items()}


@pytest.mark.slow
def test_generator_signatures_match_the_saved_model(converted):
    assert sorted(converted["paths"]) == ["soft_mask", "style_transfer"]
    assert sorted(converted["paths"]["soft_mask"]) == ["float32", "int8"]
    images, domains = random_images(GENERATOR_SIZE, 3, seed=1), np.array([0, 2, 1], np.int32)
    for signature, inputs in [("soft_mask", {"images": images}),
                              ("style_transfer", {"images": images, "target_domain": domains})]:
        runner = onnx_lib.load_runner(converted["paths"][signature]["float32"], RuntimeOptions())
        assert sorted(runner.input_names) == sorted(inputs)
        assert runner.session.get_inputs()[runner.input_names.index("images")].type == "tensor(uint8)"
        outputs = runner(**inputs)
        reference = _saved_model_outputs(converted["generator"], signature, **inputs)
        assert np.abs(outputs["images_float"] - reference["images_float"]).max() < 1e-4
        assert outputs["images_uint8"].dtype == np.uint8
        assert np.abs(outputs["images_uint8"].astype(int) - reference["images_uint8"]).max() <= 1


@pytest.mark.slow
def test_int8_generator_runs_with_loose_parity(converted):
    """QDQ int8 (calibrated on 8 images): close to float32, not identical, and actually quantised."""
    import onnx

    images = random_images(GENERATOR_SIZE, 3, seed=8)
    float32 = onnx_lib.load_runner(converted["paths"]["soft_mask"]["float32"], RuntimeOptions())(images=images)
    int8 = onnx_lib.load_runner(converted["paths"]["soft_mask"]["int8"], RuntimeOptions())(images=images)
    difference = np.abs(int8["images_float"] - float32["images_float"]).max()
    assert 0 < difference < INT8_SANITY_MAX_ABS, difference
    ops = {node.op_type for node in onnx.load(converted["paths"]["soft_mask"]["int8"]).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_session_options_reach_onnxruntime(converted):
    path = converted["paths"]["soft_mask"]["float32"]
    default = onnx_lib.load_runner(path, RuntimeOptions()).session.get_session_options()
    assert (default.intra_op_num_threads, default.inter_op_num_threads) == (machine_cores(), 1)
    assert default.graph_optimization_level == onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options = RuntimeOptions(num_threads=1, inter_op_threads=2, ort_optimization="basic")
    session_options = onnx_lib.load_runner(path, options).session.get_session_options()
    assert (session_options.intra_op_num_threads, session_options.inter_op_num_threads) == (1, 2)
    assert session_options.graph_optimization_level == onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert session_options.execution_mode == onnxruntime.ExecutionMode.ORT_PARALLEL


def test_int8_without_calibration_or_unknown_variant_fails(converted, tmp_path):
    with pytest.raises(ValueError, match="'int8' needs calibration images"):
        onnx_lib.convert(converted["generator"], str(tmp_path), ("int8",))
    with pytest.raises(ValueError, match=r"Unknown ONNX variants \['bf16'\]"):
        onnx_lib.convert(converted["generator"], str(tmp_path), ("bf16",))
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_int8_embedder_keeps_the_ranking(tmp_path):
    """The tiny embedder's ranking on a query/gallery set survives int8 within RANKING_TOLERANCE.

    Gallery: 12 identities x 2 cameras of random images; queries: a third camera's noisy copies of each
    identity's first image, so the float32 ranking is meaningful (rank-1 near 1).
    """
    import keras

    keras.utils.set_random_seed(4)
    version_dir = saved_model_lib.export_embedder(tiny_da2s(), str(tmp_path), generator=tiny_generator(), version=1)
    rng = np.random.default_rng(0)
    gallery = random_images(REID_SIZE, 24, seed=10)
    noise = rng.integers(-12, 13, size=(12, *REID_SIZE, 3))
    query = np.clip(gallery[::2].astype(int) + noise, 0, 255).astype(np.uint8)
    labels = {"query": {"pids": np.arange(12), "camids": np.full(12, 2)},
              "gallery": {"pids": np.repeat(np.arange(12), 2), "camids": np.tile([0, 1], 12)}}
    paths = onnx_lib.convert(version_dir, str(tmp_path / "onnx"), onnx_lib.VARIANTS, gallery)["embed"]
    features = {variant: tuple(onnx_lib.load_runner(path, RuntimeOptions())(images=images)["features"]
                               for images in (query, gallery)) for variant, path in paths.items()}
    report = ranking.ranking_effect(features["float32"], {"int8": features["int8"]}, labels["query"],
                                    labels["gallery"])
    assert report["keras"]["rank1"] >= 0.9, report
    assert abs(report["int8"]["rank1_change"]) <= RANKING_TOLERANCE, report
    assert abs(report["int8"]["mAP_change"]) <= RANKING_TOLERANCE, report
    assert report["int8"]["top1_agreement"] >= 1 - RANKING_TOLERANCE, report


@pytest.mark.slow
def test_da2s_embedder_with_folded_generator_matches(converted, tmp_path):
    version_dir = saved_model_lib.export_embedder(tiny_da2s(), converted["export_dir"], generator=tiny_generator(),
                                                  version=1)
    path = onnx_lib.convert_signature(version_dir, "embed", str(tmp_path / "embed.onnx"))
    images = random_images(REID_SIZE, 2, seed=6)
    reference = _saved_model_outputs(version_dir, "embed", images=images)["features"]
    features = onnx_lib.load_runner(path, RuntimeOptions())(images=images)["features"]
    assert features.shape == (2, 256)
    assert np.abs(features - reference).max() < 1e-4 * max(1.0, np.abs(reference).max())


def test_trtexec_command_builds_an_fp16_engine_from_onnx():
    command = onnx_lib.trtexec_command("m/soft_mask.onnx", "m/soft_mask.plan", (256, 128), max_batch=16)
    assert command == ("trtexec --onnx=m/soft_mask.onnx --saveEngine=m/soft_mask.plan "
                       "--minShapes=images:1x256x128x3 --optShapes=images:8x256x128x3 "
                       "--maxShapes=images:16x256x128x3 --fp16")
    assert not onnx_lib.trtexec_command("a.onnx", "a.plan", (32, 16), fp16=False).endswith("--fp16")


def test_tf_trt_stops_with_a_clear_message_without_gpu(converted, tmp_path):
    assert not tf.config.list_physical_devices("GPU")
    assert "GPU" in onnx_lib.tensorrt_unavailable_reason()
    with pytest.raises(RuntimeError, match="needs an NVIDIA GPU and TensorRT: no GPU visible"):
        onnx_lib.convert_tf_trt(converted["generator"], str(tmp_path / "trt"))
    assert not os.path.exists(tmp_path / "trt")


def test_failed_conversion_leaves_no_file(converted, tmp_path):
    with pytest.raises(ValueError, match="signature_name='soft_mask_jpeg'"):
        onnx_lib.convert_signature(converted["generator"], "soft_mask_jpeg", str(tmp_path / "x.onnx"))
    assert os.listdir(tmp_path) == []
