"""Inference speed of the exported models next to Keras, with each format's parity, in one run.

`run(quick=False) -> dict`: for the generator (soft_mask) and the DA-2S embedder (embed, the generator
folded in) at the demo size (128x64) and the paper size (256x128), randomly initialised (speed does not
depend on training): images/second of Keras, the SavedModel and every
variant of every format of `export.job.FORMATS`, at batch 1 (latency, one serving request) and batches 8
and 32 (throughput), each with its ratio to Keras at the same batch and its max |difference| from Keras on
the batch-32 images. Models: demo = generator width 16, 2 residual blocks and small-DenseNet DA-2S (the demo
configs); paper = generator width 64, 6 residual blocks and DenseNet-121 DA-2S.
`quick=True`: the demo-size generator only, narrowed (width 8, 1 block), float32 + int8, a few batches.

Keras = the model called in a tf.function on already-preprocessed float inputs; the other formats take
uint8 images and preprocess inside (resize + scaling), as served. Runners use `RuntimeOptions()` (the fast
defaults: every core, XNNPACK, ONNX Runtime's full graph optimisation; recorded in the result). int8
variants are calibrated on the benchmark's random images, so their parity here is indicative only (the
export job calibrates on TFRecords).
"""

import dataclasses
import os
import tempfile
import time

import numpy as np
import tensorflow as tf

from bgshift_tf.data.images import to_model_range
from bgshift_tf.export import job
from bgshift_tf.export import saved_model as saved_model_lib
from bgshift_tf.export.runtime import RuntimeOptions, configure_tensorflow

SIZES = {"demo": (128, 64), "paper": (256, 128)}
MODEL_SETTINGS = {
    "demo": {"base_filters": 16, "num_res_blocks": 2, "backbone": "densenet_small"},
    "paper": {"base_filters": 64, "num_res_blocks": 6, "backbone": "densenet121"},
    "quick": {"base_filters": 8, "num_res_blocks": 1, "backbone": "densenet_small"},
}
BATCH_SIZES = (1, 8, 32)


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


def _measure(runner, images, reference, min_seconds):
    """{"batch_<b>": images/s for each of BATCH_SIZES, "parity_max_abs": vs `reference` on `images`}."""
    entry = {f"batch_{b}": images_per_second(lambda: runner(images=images[:b]), b, min_seconds)
             for b in BATCH_SIZES}
    outputs = runner(images=images)
    value = outputs["images_float"] if "images_float" in outputs else outputs["features"]
    entry["parity_max_abs"] = float(np.max(np.abs(np.asarray(value) - reference)))
    return entry


def _bench_one(kind, size, settings, variants, min_seconds, work_dir, runtime):
    # 1. Build the models and export the SavedModel; the Keras output on the batch is the parity reference.
    # 2. Keras speed at each batch size on preprocessed floats.
    # 3. The SavedModel, then each format's variants: speed and parity.
    # 4. Ratios to Keras at the same batch size.
    generator, reid_model = _build(kind, size, settings)
    images = np.random.default_rng(0).integers(0, 256, size=(max(BATCH_SIZES), *size, 3), dtype=np.uint8)
    signature = "soft_mask" if kind == "generator" else "embed"
    if kind == "generator":
        keras_fn = tf.function(lambda x: generator.soft_mask(x, training=False))
        version_dir = saved_model_lib.export_generator(generator, work_dir, version=1)
    else:
        keras_fn = tf.function(lambda x: reid_model.embed((generator.soft_mask(x, training=False), x)))
        version_dir = saved_model_lib.export_embedder(reid_model, work_dir, generator=generator, version=1)
    reference = job.keras_reference(signature, images, generator, reid_model if kind == "embedder" else None)
    floats = tf.constant(to_model_range(images.astype(np.float32)))
    rates = {"keras": {f"batch_{b}": images_per_second(lambda: keras_fn(floats[:b]), b, min_seconds)
                       for b in BATCH_SIZES}}
    rates["saved_model"] = _measure(saved_model_lib.SavedModelRunner(version_dir, signature, runtime), images,
                                    reference, min_seconds)
    for module in job.FORMATS:
        wanted = [v for v in module.VARIANTS if v in variants]
        paths = module.convert(version_dir, os.path.join(work_dir, module.NAME), wanted, images,
                               signatures=(signature,))[signature]
        for variant, path in paths.items():
            rates[f"{module.NAME}_{variant}"] = _measure(module.load_runner(path, runtime), images, reference,
                                                         min_seconds)
    for name, entry in rates.items():
        for b in BATCH_SIZES:
            entry[f"ratio_to_keras_batch_{b}"] = entry[f"batch_{b}"] / rates["keras"][f"batch_{b}"]
    return {name: {k: round(v, 6 if k == "parity_max_abs" else 2) for k, v in entry.items()}
            for name, entry in rates.items()}


def run(quick=False, sizes=None, kinds=("generator", "embedder"), runtime=None):
    """Images/second, ratio to Keras and parity per format; {"<size>/<kind>": {"<format>": {...}}}.

    Args:
        quick: the fast smoke version (see the module docstring).
        sizes: subset of SIZES to run (default: both; quick: demo only).
        kinds: "generator" and/or "embedder" (quick: generator only).
        runtime: `RuntimeOptions` of every runner (default: the fast defaults).
    """
    runtime = runtime or RuntimeOptions()
    configure_tensorflow(runtime)
    results = {"batch_sizes": list(BATCH_SIZES), "unit": "images/second", "cpus": os.cpu_count(),
               "runtime": dataclasses.asdict(runtime)}
    all_variants = {v for module in job.FORMATS for v in module.VARIANTS}
    if quick:
        plan = [("demo", "generator", MODEL_SETTINGS["quick"], {"float32", "int8"}, 0.2)]
    else:
        plan = [(name, kind, MODEL_SETTINGS[name], all_variants, 2.0) for name in (sizes or SIZES) for kind in kinds]
    for size_name, kind, settings, variants, min_seconds in plan:
        print(f"[bench export] {size_name}/{kind} ...", flush=True)
        with tempfile.TemporaryDirectory(prefix="bench_export_") as work_dir:
            results[f"{size_name}/{kind}"] = _bench_one(kind, SIZES[size_name], settings, variants, min_seconds,
                                                        work_dir, runtime)
    return results
