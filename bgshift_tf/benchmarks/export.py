"""Inference speed of the exported models next to Keras, with each format's parity, in one run.

`run(quick=False) -> dict`: for the generator (soft_mask) and the DA-2S embedder (embed, the generator
folded in) at the demo size (128x64) and the paper size (256x128), randomly initialised (speed does not
depend on training): images/second of Keras, the SavedModel and every variant of every format of
`export.job.FORMATS` (TFLite float32 and int8 also as batch-8 models: `tflite_<variant>_batch8`), at
batch 1 (latency, one serving request) and batches 8 and 32 (throughput), each with its ratio to Keras at
the same batch and its max |difference| from Keras on the batch-32 images. Models: demo = generator width 16, 2 residual blocks and small-DenseNet DA-2S (the demo
configs); paper = generator width 64, 6 residual blocks and DenseNet-121 DA-2S.
`quick=True`: the demo-size generator only, narrowed (width 8, 1 block), float32 + int8, one round.

Timing: Keras and every format are timed interleaved, round-robin, best of `repeats` rounds per batch size,
each round at least `min_seconds` of repeated calls (`interleaved_rates`), so on a shared machine each
ratio compares calls made under the same load.

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
from bgshift_tf.export import tflite
from bgshift_tf.export.runtime import RuntimeOptions, configure_tensorflow
from bgshift_tf.models.generator import Generator
from bgshift_tf.models.reid import DA2S

SIZES = {"demo": (128, 64), "paper": (256, 128)}
MODEL_SETTINGS = {
    "demo": {"base_filters": 16, "num_res_blocks": 2, "backbone": "densenet_small"},
    "paper": {"base_filters": 64, "num_res_blocks": 6, "backbone": "densenet121"},
    "quick": {"base_filters": 8, "num_res_blocks": 1, "backbone": "densenet_small"},
}
BATCH_SIZES = (1, 8, 32)
# TFLite models are converted with a static batch (`export/tflite.py`): besides the default batch-1 models,
# these variants are also timed as batch-8 models (`--tflite_batch_size=8`), the throughput setting.
TFLITE_THROUGHPUT_BATCH = 8
TFLITE_BATCHED_VARIANTS = ("float32", "int8")


def interleaved_rates(calls, batch_sizes, repeats, min_seconds=0.0):
    """{name: {"batch_<b>": images/s}}: each call timed `repeats` rounds per batch size, round-robin, best kept.

    Args:
        calls: {name: call(b) running one batch of b images}; each is warmed up once per batch size first.
        repeats: timed rounds; on a shared machine the round-robin keeps the ratios fair (every format sees
            the same load) and the best round is the least disturbed one.
        min_seconds: a round calls the same batch again until this much time has passed (at least once) and
            counts images / elapsed; single calls of a small model (~10 ms) vary by 2x on this VM.
    """
    rates = {name: {} for name in calls}
    for b in batch_sizes:
        best = {}
        for name, call in calls.items():
            call(b)
        for _ in range(repeats):
            for name, call in calls.items():
                start, count = time.perf_counter(), 0
                while True:
                    call(b)
                    count += 1
                    elapsed = time.perf_counter() - start
                    if elapsed >= min_seconds:
                        break
                best[name] = max(best.get(name, 0.0), b * count / elapsed)
        for name in calls:
            rates[name][f"batch_{b}"] = best[name]
    return rates


def _build(kind, size, settings):
    generator = Generator(num_domains=3, image_size=size, base_filters=settings["base_filters"],
                          num_res_blocks=settings["num_res_blocks"])
    if kind == "generator":
        return generator, None
    return generator, DA2S(num_classes=16, backbone=settings["backbone"], input_shape=(*size, 3))


def _parity(runner, images, reference):
    outputs = runner(images=images)
    value = outputs["images_float"] if "images_float" in outputs else outputs["features"]
    return float(np.max(np.abs(np.asarray(value) - reference)))


def _bench_one(kind, size, settings, variants, repeats, min_seconds, work_dir, runtime):
    # 1. Build the models and export the SavedModel; the Keras output on the batch is the parity reference.
    # 2. Convert every format's variants and load each runner (the SavedModel's too) with `runtime`.
    # 3. Time Keras (on preprocessed floats) and every runner interleaved, best of `repeats`, per batch size.
    # 4. Parity of each runner on the batch-32 images, and ratios to Keras at the same batch size.
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
    runners = {"saved_model": saved_model_lib.SavedModelRunner(version_dir, signature, runtime)}
    for module in job.FORMATS:
        wanted = [v for v in module.VARIANTS if v in variants]
        paths = module.convert(version_dir, os.path.join(work_dir, module.NAME), wanted, images,
                               signatures=(signature,))[signature]
        runners.update({f"{module.NAME}_{variant}": module.load_runner(path, runtime)
                        for variant, path in paths.items()})
    batched = [v for v in TFLITE_BATCHED_VARIANTS if v in variants]
    paths = tflite.convert(version_dir, os.path.join(work_dir, "tflite"), batched, images, signatures=(signature,),
                           batch_size=TFLITE_THROUGHPUT_BATCH).get(signature, {})
    runners.update({f"tflite_{variant}_batch{TFLITE_THROUGHPUT_BATCH}": tflite.load_runner(path, runtime)
                    for variant, path in paths.items()})
    calls = {"keras": lambda b: keras_fn(floats[:b]).numpy(),
             **{name: (lambda runner: lambda b: runner(images=images[:b]))(runner) for name, runner in runners.items()}}
    rates = interleaved_rates(calls, BATCH_SIZES, repeats, min_seconds)
    for name, runner in runners.items():
        rates[name]["parity_max_abs"] = _parity(runner, images, reference)
    for name, entry in rates.items():
        for b in BATCH_SIZES:
            entry[f"ratio_to_keras_batch_{b}"] = entry[f"batch_{b}"] / rates["keras"][f"batch_{b}"]
    return {name: {k: round(v, 6 if k == "parity_max_abs" else 2) for k, v in entry.items()}
            for name, entry in rates.items()}


def run(quick=False, sizes=None, kinds=("generator", "embedder"), runtime=None, repeats=3, min_seconds=1.0):
    """Images/second, ratio to Keras and parity per format; {"<size>/<kind>": {"<format>": {...}}}.

    Args:
        quick: the fast smoke version (see the module docstring).
        sizes: subset of SIZES to run (default: both; quick: demo only).
        kinds: "generator" and/or "embedder" (quick: generator only).
        runtime: `RuntimeOptions` of every runner (default: the fast defaults).
        repeats: timed rounds per format and batch size, best kept (quick: 1); fewer = a shorter run.
        min_seconds: least duration of one timed round (quick: 0, one call); see `interleaved_rates`.
    """
    runtime = runtime or RuntimeOptions()
    configure_tensorflow(runtime)
    repeats, min_seconds = (1, 0.0) if quick else (repeats, min_seconds)
    results = {"batch_sizes": list(BATCH_SIZES), "unit": "images/second", "cpus": os.cpu_count(),
               "runtime": dataclasses.asdict(runtime), "repeats": repeats, "min_seconds_per_round": min_seconds,
               "timing": ("Keras and every format interleaved round-robin, best of `repeats` rounds per batch size, "
                          "each round >= `min_seconds_per_round` of repeated calls")}
    all_variants = {v for module in job.FORMATS for v in module.VARIANTS}
    if quick:
        plan = [("demo", "generator", MODEL_SETTINGS["quick"], {"float32", "int8"})]
    else:
        plan = [(name, kind, MODEL_SETTINGS[name], all_variants) for name in (sizes or SIZES) for kind in kinds]
    for size_name, kind, settings, variants in plan:
        print(f"[bench export] {size_name}/{kind} ...", flush=True)
        with tempfile.TemporaryDirectory(prefix="bench_export_") as work_dir:
            results[f"{size_name}/{kind}"] = _bench_one(kind, SIZES[size_name], settings, variants, repeats,
                                                        min_seconds, work_dir, runtime)
    return results
