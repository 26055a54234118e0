"""Inference speed of the exported models: Keras vs SavedModel vs TFLite (each variant) vs onnxruntime.

`run(quick=False) -> dict`: images/second of the generator (soft_mask) and the DA-2S embedder (embed, the
generator folded in) at the demo size (128x64) and the paper size (256x128), randomly initialised
(speed does not depend on training). Models: demo = generator width 16, 2 residual blocks and small-DenseNet
DA-2S (the demo configs); paper = generator width 64, 6 residual blocks and DenseNet-121 DA-2S.
`quick=True`: the demo-size generator only, narrowed (width 8, 1 block), float32 formats, a few batches.

Keras = the model called in a tf.function on already-preprocessed float inputs; the other formats take
uint8 images and preprocess inside (resize + scaling), as served. Batch 8 everywhere (TFLite resizes its
batch dimension); CPU threads as the runtime chooses.
"""

import os
import tempfile
import time

import numpy as np
import tensorflow as tf

from bgshift_tf.data.images import to_model_range
from bgshift_tf.export import onnx as onnx_lib
from bgshift_tf.export import saved_model as saved_model_lib
from bgshift_tf.export import tflite as tflite_lib

SIZES = {"demo": (128, 64), "paper": (256, 128)}
MODEL_SETTINGS = {
    "demo": {"base_filters": 16, "num_res_blocks": 2, "backbone": "densenet_small"},
    "paper": {"base_filters": 64, "num_res_blocks": 6, "backbone": "densenet121"},
    "quick": {"base_filters": 8, "num_res_blocks": 1, "backbone": "densenet_small"},
}


def images_per_second(call, batch_size, min_seconds=1.0, max_batches=50):
    """Throughput of `call()` (one batch of `batch_size` images) after one warm-up call."""
    call()
    start, batches = time.perf_counter(), 0
    while batches < max_batches and (batches < 2 or time.perf_counter() - start < min_seconds):
        call()
        batches += 1
    return batch_size * batches / (time.perf_counter() - start)


def _build(kind, size, settings):
    from bgshift_tf.models.generator import Generator
    from bgshift_tf.models.reid import DA2S

    generator = Generator(num_domains=3, image_size=size, base_filters=settings["base_filters"],
                          num_res_blocks=settings["num_res_blocks"])
    if kind == "generator":
        return generator, None
    return generator, DA2S(num_classes=16, backbone=settings["backbone"], input_shape=(*size, 3))


def _bench_one(kind, size, settings, variants, use_onnx, batch_size, min_seconds, work_dir):
    generator, reid_model = _build(kind, size, settings)
    images = np.random.default_rng(0).integers(0, 256, size=(batch_size, *size, 3), dtype=np.uint8)
    floats = tf.constant(to_model_range(images.astype(np.float32)))
    if kind == "generator":
        keras_call = tf.function(lambda x: generator.soft_mask(x, training=False))
        version_dir = saved_model_lib.export_generator(generator, work_dir, version=1)
        signature = "soft_mask"
    else:
        keras_call = tf.function(lambda x: reid_model.embed((generator.soft_mask(x, training=False), x)))
        version_dir = saved_model_lib.export_embedder(reid_model, work_dir, generator=generator, version=1)
        signature = "embed"
    rates = {"keras": images_per_second(lambda: keras_call(floats), batch_size, min_seconds)}
    served = tf.saved_model.load(version_dir).signatures[signature]
    uint8 = tf.constant(images)
    rates["saved_model"] = images_per_second(lambda: served(images=uint8), batch_size, min_seconds)
    calibration = np.concatenate([images] * 2)
    for variant in variants:
        path = os.path.join(work_dir, f"{kind}_{variant}.tflite")
        with open(path, "wb") as f:
            f.write(tflite_lib.convert(version_dir, signature, variant,
                                       [{"images": image[None]} for image in calibration]))
        runner = tflite_lib.TFLiteRunner(path)
        rates[f"tflite_{variant}"] = images_per_second(lambda: runner(images=images), batch_size, min_seconds)
    if use_onnx:
        runner = onnx_lib.OnnxRunner(onnx_lib.convert(version_dir, signature, os.path.join(work_dir, f"{kind}.onnx")))
        rates["onnxruntime"] = images_per_second(lambda: runner(images=images), batch_size, min_seconds)
    return {key: round(value, 2) for key, value in rates.items()}


def run(quick=False, sizes=None, kinds=("generator", "embedder")):
    """Images/second per format; returns {"<size>/<kind>": {"keras": ..., "saved_model": ..., ...}}.

    Args:
        quick: the fast smoke version (see the module docstring).
        sizes: subset of SIZES to run (default: both; quick: demo only).
        kinds: "generator" and/or "embedder" (quick: generator only).
    """
    results = {"batch_size": 8, "unit": "images/second", "cpus": os.cpu_count()}
    if quick:
        plan = [("demo", "generator", MODEL_SETTINGS["quick"], ("float32",), True, 0.2)]
    else:
        plan = [(name, kind, MODEL_SETTINGS[name], tflite_lib.VARIANTS, True, 2.0)
                for name in (sizes or SIZES) for kind in kinds]
    for size_name, kind, settings, variants, use_onnx, min_seconds in plan:
        with tempfile.TemporaryDirectory(prefix="bench_export_") as work_dir:
            results[f"{size_name}/{kind}"] = _bench_one(kind, SIZES[size_name], settings, variants, use_onnx,
                                                        results["batch_size"], min_seconds, work_dir)
    return results
