"""The export job: SavedModels (TF Serving layout) + models.config + TFLite + ONNX, and a parity report.

`export_all(...)` is what `python -m bgshift_tf.export` runs; `export_models(...)` does the same from
in-memory Keras models (tests, notebooks). Output under `export_dir`:

    <model>/<version>/                       serving SavedModel (+ assets.extra: warm-up requests, export_info.json)
    models.config                            TF Serving model_config_list (every model folder in export_dir)
    tflite/<model>/<version>/<signature>_<variant>[_batch<B>].tflite
    onnx/<model>/<version>/<signature>_<variant>.onnx
    parity_<model>_v<version>.json           max |difference| per format and signature vs the Keras model

The converted formats are the modules of `FORMATS`, each with the same interface (checked at import):
`NAME`, `VARIANTS`, `convert(version_dir, out_dir, variants, calibration_images, signatures=None,
**options) -> {signature: {variant: path}}` (options: the format's own conversion settings, e.g. TFLite's
`batch_size`, passed from `format_options`) and `load_runner(path, runtime) -> callable(**named numpy
inputs) -> named outputs`. A new format is
its module plus one entry in `FORMATS`.

Parity is measured on `num_parity_images` uint8 images at each model's trained size (the first ones of
--representative_tfrecords when given, else seeded random pixels): float outputs (images_float in [-1, 1],
features) as max and mean abs difference, uint8 images as max level difference.

Compute precision (`--precision`, `core.precision`): the exported models may compute in bf16/fp16;
the signatures keep their interfaces (uint8 / string / int32 in, uint8 / float32 out) whatever it is. A
low-precision export is also compared with the float32 Keras model of the same weights
("saved_model_vs_float32"), against `LOW_PRECISION_TOLERANCE`: bf16 keeps 8 mantissa bits (relative
rounding 2^-8 per op), which compounds through a network's layers.
"""

import glob
import os

import numpy as np
import tensorflow as tf

from bgshift_tf.core import atomic_io
from bgshift_tf.core import precision as precision_lib
from bgshift_tf.data.images import resize, to_model_range, to_uint8
from bgshift_tf.data.input import make_eval_dataset
from bgshift_tf.data.shards import shard_files
from bgshift_tf.export import onnx as onnx_lib
from bgshift_tf.export import ranking as ranking_lib
from bgshift_tf.export import saved_model as saved_model_lib
from bgshift_tf.export import tflite as tflite_lib
from bgshift_tf.export.runtime import RuntimeOptions
from bgshift_tf.export.serving_inputs import signature_inputs
from bgshift_tf.models.reid import DA2S
from bgshift_tf.training.gan_checkpoint import load_generator
from bgshift_tf.training.reid import load_reid_model

_RANKING_BATCH = 64
# A low-precision export vs the float32 Keras model, relative to the reference's max |value| (images in
# [-1, 1], features): a loose bound on the largest difference and a tighter one on the mean.
LOW_PRECISION_TOLERANCE = {"max_rel": 0.1, "mean_rel": 0.01}
FORMAT_INTERFACE = ("NAME", "VARIANTS", "convert", "load_runner")


def check_format(module):
    """Raises TypeError naming the module and what it lacks when it does not have the format interface."""
    missing = [name for name in FORMAT_INTERFACE if not hasattr(module, name)]
    missing += [name for name in ("convert", "load_runner") if name not in missing and not callable(getattr(module, name))]
    if missing:
        raise TypeError(f"Export format module {getattr(module, '__name__', module)!r} lacks {missing} "
                        f"(every entry of FORMATS needs {list(FORMAT_INTERFACE)}).")
    return module


FORMATS = tuple(check_format(module) for module in (tflite_lib, onnx_lib))


# === Keras references (independent of the serving modules) ===


def _keras_inputs(images, image_size):
    """uint8 [N, H, W, 3] -> float32 [N, h, w, 3] in [-1, 1], as the serving signatures preprocess."""
    return to_model_range(resize(images, image_size))


def _size(generator):
    return tuple(generator.get_config()["image_size"])


def keras_reference(signature, images, generator=None, reid_model=None, target_domain=None):
    """The Keras model's float output for one signature: images_float [N, h, w, 3] or features [N, D]."""
    if signature in ("soft_mask", "soft_mask_jpeg"):
        return generator.soft_mask(_keras_inputs(images, _size(generator)), training=False).numpy()
    if signature == "style_transfer":
        return generator.style_transfer(_keras_inputs(images, _size(generator)), target_domain,
                                        training=False).numpy()
    size = tuple(reid_model.get_config()["input_shape"][:2])
    stream2 = _keras_inputs(images, size)
    if generator is None:
        return reid_model.embed(stream2, training=False).numpy()
    soft_mask = generator.soft_mask(_keras_inputs(images, _size(generator)), training=False)
    return reid_model.embed((tf.image.resize(soft_mask, size, method="bilinear"), stream2), training=False).numpy()


def _float_output(outputs):
    return np.asarray(outputs["images_float"] if "images_float" in outputs else outputs["features"])


def _differences(outputs, reference_float, reference_uint8=None):
    """{"max_abs", "max_rel", "mean_abs", "mean_rel": float (rel: vs the reference's max |value|),
    ["max_uint8_levels": int]}."""
    value = _float_output(outputs)
    if value.shape != reference_float.shape:
        raise ValueError(f"Output shape {value.shape} differs from the Keras reference {reference_float.shape}")
    scale = max(float(np.max(np.abs(reference_float))), 1e-12)
    max_abs, mean_abs = float(np.max(np.abs(value - reference_float))), float(np.mean(np.abs(value - reference_float)))
    result = {"max_abs": max_abs, "max_rel": max_abs / scale, "mean_abs": mean_abs, "mean_rel": mean_abs / scale}
    if reference_uint8 is not None and "images_uint8" in outputs:
        levels = np.abs(np.asarray(outputs["images_uint8"]).astype(np.int32) - reference_uint8.astype(np.int32))
        result["max_uint8_levels"] = int(levels.max())
    return result


def _reference_uint8(reference_float):
    return np.asarray(to_uint8(reference_float))


def _reference_pixels(signature, inputs):
    """What the signature sees: for *_jpeg the TF-decoded pixels (JPEG is lossy), else the images."""
    if "image_bytes" in inputs:
        return np.stack([tf.io.decode_jpeg(b, channels=3).numpy() for b in inputs["image_bytes"]])
    return inputs["images"]


def measure_parity(version_dir, images, generator=None, reid_model=None, converted=None, runtime=None,
                   float32_models=None):
    """Max differences of the SavedModel and every converted model's outputs vs the Keras model, per signature.

    Args:
        version_dir: the exported version folder.
        images: uint8 [N, h, w, 3] at the model's trained size.
        generator, reid_model: the Keras models that were exported.
        converted: {format NAME: {signature: {variant: path}}} (each format's `convert` result) or None.
        runtime: `RuntimeOptions` for the runners (default: the fast defaults).
        float32_models: (generator, reid_model), float32 Keras models with the same weights, for an export
            computing in another precision; None when the exported models compute in float32.

    Returns:
        {signature: {"saved_model": {...}, "<format>_<variant>": {...}}}, each entry with max_abs, max_rel and
        (generator) max_uint8_levels; converted formats also `vs_saved_model_max_abs`. With `float32_models`,
        also "saved_model_vs_float32": the same differences, `tolerance` (LOW_PRECISION_TOLERANCE) and
        `within_tolerance`.
    """
    runtime = runtime or RuntimeOptions()
    info = saved_model_lib.read_export_info(version_dir)
    modules = {module.NAME: module for module in FORMATS}
    report = {}
    for signature in info["signatures"]:
        inputs = signature_inputs(signature, images, info.get("num_domains"))
        pixels = _reference_pixels(signature, inputs)
        reference = keras_reference(signature, pixels, generator, reid_model, inputs.get("target_domain"))
        reference_uint8 = _reference_uint8(reference) if info["kind"] == "generator" else None
        served = saved_model_lib.SavedModelRunner(version_dir, signature, runtime)(**inputs)
        entry = {"saved_model": _differences(served, reference, reference_uint8)}
        if float32_models is not None:
            float32 = keras_reference(signature, pixels, *float32_models, inputs.get("target_domain"))
            vs_float32 = _differences(served, float32, _reference_uint8(float32) if info["kind"] == "generator" else None)
            entry["saved_model_vs_float32"] = {
                **vs_float32, "tolerance": LOW_PRECISION_TOLERANCE,
                "within_tolerance": all(vs_float32[k] <= v for k, v in LOW_PRECISION_TOLERANCE.items())}
        for name, per_signature in (converted or {}).items():
            for variant, path in per_signature.get(signature, {}).items():
                outputs = modules[name].load_runner(path, runtime)(**inputs)
                entry[f"{name}_{variant}"] = {
                    **_differences(outputs, reference, reference_uint8),
                    "vs_saved_model_max_abs": float(np.max(np.abs(_float_output(outputs) - _float_output(served))))}
        report[signature] = entry
    return report


def measure_ranking(version_dir, ranking_set, generator, reid_model, converted, runtime=None):
    """Rank-1 / mAP of every converted `embed` variant vs the Keras model (`ranking.ranking_effect`).

    Args:
        ranking_set: {"query": (uint8 images, pids, camids), "gallery": (...)} at the embedder's size.
        converted: {format NAME: {signature: {variant: path}}}.
    """
    runtime = runtime or RuntimeOptions()
    modules = {module.NAME: module for module in FORMATS}
    labels = {split: {"pids": ranking_set[split][1], "camids": ranking_set[split][2]} for split in ranking_set}
    generator = generator if saved_model_lib.read_export_info(version_dir)["two_stream"] else None

    def features(embed_fn):
        return tuple(np.concatenate([embed_fn(images[i:i + _RANKING_BATCH])
                                     for i in range(0, len(images), _RANKING_BATCH)])
                     for images in (ranking_set["query"][0], ranking_set["gallery"][0]))

    reference = features(lambda images: keras_reference("embed", images, generator, reid_model))
    variants = {}
    for name, per_signature in converted.items():
        for variant, path in per_signature.get("embed", {}).items():
            runner = modules[name].load_runner(path, runtime)
            variants[f"{name}_{variant}"] = features(lambda images: runner(images=images)["features"])
    return ranking_lib.ranking_effect(reference, variants, labels["query"], labels["gallery"])


# === Representative images ===


def load_representative_images(source, image_size, count=32):
    """uint8 [<=count, h, w, 3] images from TFRecords, via `bgshift_tf.data.input.make_eval_dataset`.

    Args:
        source: a TFRecord folder with manifest.json (its "train" split), or files/globs (comma-separated).
        image_size: (h, w) to resize to.
        count: images to take (in stored order).
    """
    if os.path.isdir(source):
        files = shard_files(source, "train")
    else:
        files = sorted({f for pattern in source.split(",") if pattern for f in glob.glob(pattern)})
        if not files:
            raise ValueError(f"--representative_tfrecords={source!r} matches no TFRecord file or folder.")
    batches = make_eval_dataset(files, image_size=tuple(image_size), batch_size=count).take(1)
    return _reference_uint8(next(iter(batches))["image"].numpy())


def _random_images(image_size, count, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(count, *image_size, 3), dtype=np.uint8)


# === The job ===


def _measured_models(kind, info, generator, reid_model):
    """(generator, reid_model) an export of `kind` is compared with: the generator also for a DA-2S embedder."""
    return (generator if kind == "generator" or info["two_stream"] else None,
            reid_model if kind == "embedder" else None)


def _convert_and_measure(kind, version_dir, export_dir, model_name, version, images, generator, reid_model,
                         variants, calibration_images, runtime, ranking_set, float32_models, format_options):
    converted = {}
    for module in FORMATS:
        if variants.get(module.NAME):
            converted[module.NAME] = module.convert(
                version_dir, os.path.join(export_dir, module.NAME, model_name, str(version)),
                variants[module.NAME], calibration_images, **format_options.get(module.NAME, {}))
    info = saved_model_lib.read_export_info(version_dir)
    parity = measure_parity(version_dir, images, *_measured_models(kind, info, generator, reid_model), converted,
                            runtime, float32_models and _measured_models(kind, info, *float32_models))
    exported = generator if kind == "generator" else reid_model
    summary = {"model_name": model_name, "version": version, "saved_model": version_dir,
               "precision": exported.dtype_policy.name,
               **{module.NAME: converted.get(module.NAME, {}) for module in FORMATS}, "parity": parity,
               "num_parity_images": int(len(images))}
    if kind == "embedder" and ranking_set is not None:
        summary["ranking"] = measure_ranking(version_dir, ranking_set, generator, reid_model, converted, runtime)
    onnx_float32 = {signature: paths["float32"] for signature, paths in converted.get(onnx_lib.NAME, {}).items()
                    if "float32" in paths}
    if onnx_float32:
        summary["trtexec"] = {
            signature: onnx_lib.trtexec_command(path, os.path.splitext(path)[0] + ".plan", info["image_size"])
            for signature, path in onnx_float32.items()
        }
    parity_path = os.path.join(export_dir, f"parity_{model_name}_v{version}.json")
    atomic_io.write_json(parity_path, summary)
    return {**summary, "parity_json": parity_path}


def check_variants(variants):
    """Raises ValueError for a format or variant name that FORMATS does not have (names the bad value)."""
    modules = {module.NAME: module for module in FORMATS}
    for name, wanted in variants.items():
        if name not in modules:
            raise ValueError(f"Unknown export format {name!r}; choose from {sorted(modules)}")
        unknown = sorted(set(wanted) - set(modules[name].VARIANTS))
        if unknown:
            raise ValueError(f"Unknown {name} variants {unknown} (--{name}); choose from {list(modules[name].VARIANTS)}")


def export_models(export_dir, generator=None, reid_model=None, *, version=None, overwrite=False,
                  variants=None, representative_images=None, num_parity_images=4,
                  generator_name="sbsgan_generator", embedder_name=None, runtime=None, ranking_images=None,
                  float32_models=None, format_options=None):
    """Exports in-memory models and measures parity; see the module docstring for the layout.

    Args:
        export_dir: TF Serving base folder.
        generator: trained Generator or None.
        reid_model: trained IDE / DA2S or None (DA-2S needs `generator`: it makes stream 1).
        version: positive int for every exported model; None = each model's next free version.
        overwrite: replace an existing version (atomically).
        variants: {format NAME: variants} for the modules of FORMATS, e.g. {"tflite": ("float32", "int8"),
            "onnx": ("float32",)}; None or {} = the SavedModel only.
        representative_images: callable (h, w) -> uint8 [M, h, w, 3] (calibration and parity images), or None
            for seeded random pixels (not enough for "int8": its calibration needs real images).
        runtime: `RuntimeOptions` of the parity runners (default: the fast defaults).
        ranking_images: callable (h, w) -> {"query": (uint8 images, pids, camids), "gallery": (...)}: the
            embedder's summary then has "ranking" (`measure_ranking`); None = no ranking check.
        num_parity_images: images used for parity.
        generator_name, embedder_name: served model names (embedder default: "da2s_embedder" for DA-2S,
            "ide_embedder" for IDE).
        float32_models: (generator, reid_model) in float32 with the same weights, when the exported models
            compute in another precision: each parity entry then has "saved_model_vs_float32".
        format_options: {format NAME: {option: value}} passed to that format's `convert`, e.g.
            {"tflite": {"batch_size": 8}}.

    Returns:
        {"generator": summary, "embedder": summary, "models_config": path} (present keys only); each
        summary names the exported model's compute `precision` (its Keras dtype policy).
    """
    variants = {name: tuple(wanted) for name, wanted in (variants or {}).items() if wanted}
    check_variants(variants)
    if generator is None and reid_model is None:
        raise ValueError("Nothing to export: give a generator (--gan_run_dir) and/or a re-ID model (--reid_run_dir).")
    if isinstance(reid_model, DA2S) and generator is None:
        raise ValueError("A DA-2S embedder needs the generator (stream 1 is its soft-mask image): pass --gan_run_dir.")
    needs_calibration = [name for name, wanted in variants.items() if "int8" in wanted]
    if needs_calibration and representative_images is None:
        raise ValueError(f"The 'int8' variant of {needs_calibration} needs calibration images: pass "
                         "--representative_tfrecords.")

    def images_for(size):
        if representative_images is None:
            return _random_images(size, num_parity_images), None
        calibration = representative_images(tuple(size))
        return calibration[:num_parity_images], calibration

    jobs = []
    if generator is not None:
        jobs.append(("generator", generator_name,
                     lambda v: saved_model_lib.export_generator(generator, export_dir, generator_name, v, overwrite),
                     tuple(generator.get_config()["image_size"])))
    if reid_model is not None:
        embedder_name = embedder_name or ("da2s_embedder" if isinstance(reid_model, DA2S) else "ide_embedder")
        jobs.append(("embedder", embedder_name,
                     lambda v: saved_model_lib.export_embedder(
                         reid_model, export_dir, generator if isinstance(reid_model, DA2S) else None,
                         embedder_name, v, overwrite),
                     tuple(reid_model.get_config()["input_shape"][:2])))
    results = {}
    for kind, model_name, export_fn, size in jobs:
        model_version = version or saved_model_lib.next_version(os.path.join(export_dir, model_name))
        version_dir = export_fn(model_version)
        parity_images, calibration = images_for(size)
        results[kind] = _convert_and_measure(kind, version_dir, export_dir, model_name, model_version,
                                             parity_images, generator, reid_model, variants, calibration,
                                             runtime, ranking_images(size) if ranking_images else None,
                                             float32_models, format_options or {})
    # Every folder holding numeric versions is a servable model (the format folders hold model folders).
    served = sorted(name for name in os.listdir(export_dir)
                    if os.path.isdir(os.path.join(export_dir, name))
                    and any(v.isdigit() for v in os.listdir(os.path.join(export_dir, name))))
    results["models_config"] = saved_model_lib.write_models_config(export_dir, served)
    return results


def export_all(gan_run_dir=None, reid_run_dir=None, export_dir="saved_models", *, version=None, overwrite=False,
               variants=None, representative_tfrecords=None, num_representative=32, tf_trt=False,
               generator_name="sbsgan_generator", embedder_name=None, runtime=None, ranking_tfrecords=None,
               precision="float32", format_options=None):
    """`python -m bgshift_tf.export`: loads the trained runs and exports them (see `export_models`).

    Args:
        gan_run_dir: SBSGAN run folder (`training.gan_checkpoint.load_generator`), or None.
        reid_run_dir: re-ID run folder (`training.reid.load_reid_model`), or None.
        representative_tfrecords: TFRecord folder or files for int8 calibration and parity images.
        num_representative: calibration images.
        ranking_tfrecords: TFRecord folder with query and gallery splits (e.g. the target domain's): the
            embedder's variants are ranked on it against the Keras model (rank-1 / mAP changes).
        tf_trt: also write a TF-TRT SavedModel (`<export_dir>/tf_trt/<model>/<version>`; GPU + TensorRT only,
            checked before anything is exported).
        precision: compute precision of the exported models (a `core.precision` setting); other than
            float32, the runs are also loaded in float32 and the parity report compares with those.
        Others: see `export_models`.
    """
    if tf_trt and onnx_lib.tensorrt_unavailable_reason() is not None:
        raise RuntimeError(f"--tf_trt needs an NVIDIA GPU and TensorRT: {onnx_lib.tensorrt_unavailable_reason()}. "
                           "Drop --tf_trt and build an engine from the ONNX model with trtexec on a GPU host.")
    def load(policy):
        return (load_generator(gan_run_dir, policy) if gan_run_dir else None,
                load_reid_model(reid_run_dir, policy) if reid_run_dir else None)

    policy = precision_lib.resolve(precision)
    generator, reid_model = load(policy)
    float32_models = load("float32") if policy != "float32" else None
    representative = None
    if representative_tfrecords:
        representative = lambda size: load_representative_images(representative_tfrecords, size, num_representative)  # noqa: E731
    ranking = None
    if ranking_tfrecords:
        ranking = lambda size: {split: ranking_lib.load_labelled_images(ranking_tfrecords, size, split)  # noqa: E731
                                for split in ("query", "gallery")}
    results = export_models(export_dir, generator, reid_model, version=version, overwrite=overwrite,
                            variants=variants, representative_images=representative,
                            generator_name=generator_name, embedder_name=embedder_name, runtime=runtime,
                            ranking_images=ranking, float32_models=float32_models, format_options=format_options)
    if tf_trt:
        for kind in ("generator", "embedder"):
            if kind in results:
                summary = results[kind]
                summary["tf_trt"] = onnx_lib.convert_tf_trt(
                    summary["saved_model"],
                    os.path.join(export_dir, "tf_trt", summary["model_name"], str(summary["version"])))
    return results
