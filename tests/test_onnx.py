"""ONNX conversion of the exported SavedModel (tf2onnx) checked in onnxruntime; TensorRT commands and the
TF-TRT guard on a machine without GPU."""

import os

import numpy as np
import pytest
import tensorflow as tf

from bgshift_tf.export import onnx as onnx_lib
from bgshift_tf.export import saved_model as saved_model_lib
from export_helpers import GENERATOR_SIZE, REID_SIZE, random_images, tiny_da2s, tiny_generator


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    import keras

    keras.utils.set_random_seed(3)
    export_dir = str(tmp_path_factory.mktemp("saved_models"))
    generator_dir = saved_model_lib.export_generator(tiny_generator(), export_dir, version=1)
    out = str(tmp_path_factory.mktemp("onnx"))
    return {"generator": generator_dir, "paths": onnx_lib.convert_all(generator_dir, out), "export_dir": export_dir}


def _saved_model_outputs(version_dir, signature, **inputs):
    loaded = tf.saved_model.load(version_dir)
    return {k: v.numpy() for k, v in loaded.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()}).items()}


@pytest.mark.slow
def test_generator_signatures_match_the_saved_model(converted):
    assert sorted(converted["paths"]) == ["soft_mask", "style_transfer"]
    images, domains = random_images(GENERATOR_SIZE, 3, seed=1), np.array([0, 2, 1], np.int32)
    for signature, inputs in [("soft_mask", {"images": images}),
                              ("style_transfer", {"images": images, "target_domain": domains})]:
        runner = onnx_lib.OnnxRunner(converted["paths"][signature])
        assert sorted(runner.input_names) == sorted(inputs)
        assert runner.session.get_inputs()[runner.input_names.index("images")].type == "tensor(uint8)"
        outputs = runner(**inputs)
        reference = _saved_model_outputs(converted["generator"], signature, **inputs)
        assert np.abs(outputs["images_float"] - reference["images_float"]).max() < 1e-4
        assert outputs["images_uint8"].dtype == np.uint8
        assert np.abs(outputs["images_uint8"].astype(int) - reference["images_uint8"]).max() <= 1


@pytest.mark.slow
def test_da2s_embedder_with_folded_generator_matches(converted, tmp_path):
    version_dir = saved_model_lib.export_embedder(tiny_da2s(), converted["export_dir"], generator=tiny_generator(),
                                                  version=1)
    path = onnx_lib.convert(version_dir, "embed", str(tmp_path / "embed.onnx"))
    images = random_images(REID_SIZE, 2, seed=6)
    reference = _saved_model_outputs(version_dir, "embed", images=images)["features"]
    features = onnx_lib.OnnxRunner(path)(images=images)["features"]
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
        onnx_lib.convert(converted["generator"], "soft_mask_jpeg", str(tmp_path / "x.onnx"))
    assert os.listdir(tmp_path) == []
