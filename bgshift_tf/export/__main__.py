"""Exports trained SBSGAN / re-ID runs for serving: SavedModels (TF Serving layout), TFLite, ONNX.

Usage:
    python -m bgshift_tf.export --flagfile=bgshift_tf/configs/export_demo.flags
    python -m bgshift_tf.export --gan_run_dir=runs/demo_gan --reid_run_dir=runs/demo_da2s \
        --export_dir=saved_models --tflite=float32,float16,dynamic_int8,int8 --onnx=float32,int8 \
        --representative_tfrecords=tfrecords/demo/synmarket

One variant-list flag per format of `export.job.FORMATS` (--tflite, --onnx); the runners' thread and
optimisation flags (--num_threads, --inter_op_threads, --xnnpack, --ort_optimization) default to the fast
settings of `export/runtime.py` and are applied before TensorFlow starts.

Writes <export_dir>/<model>/<version>/ (SavedModel + warm-up requests), <export_dir>/models.config,
tflite/ and onnx/ sub-folders and parity_<model>_v<version>.json (max differences vs the Keras model).
Serve with `tensorflow/serving` (see README / BUILD_NOTES.md, Deployment).

(`bgshift_tf/export/` is a package, so this entry point is its `__main__` module: a sibling
`bgshift_tf/export.py` would be shadowed by the package and never run.)
"""

import json

from absl import flags

from bgshift_tf.core import errors, precision
from bgshift_tf.export import job, runtime

FLAGS = flags.FLAGS
_GAN_RUN_DIR = flags.DEFINE_string("gan_run_dir", None, "SBSGAN run folder (config.json + checkpoints/).")
_REID_RUN_DIR = flags.DEFINE_string("reid_run_dir", None, "Re-ID run folder (IDE or DA-2S; DA-2S needs --gan_run_dir).")
_EXPORT_DIR = flags.DEFINE_string("export_dir", "saved_models", "TF Serving base folder to write into.")
_VERSION = flags.DEFINE_integer("version", None, "Model version (positive int); default: the next free one.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing version folder (atomically).")
_VARIANTS = {module.NAME: flags.DEFINE_list(module.NAME, [], f"{module.NAME} variants to convert, from "
                                                              f"{list(module.VARIANTS)}.")
             for module in job.FORMATS}
_NUM_THREADS = flags.DEFINE_integer("num_threads", None, "Intra-op threads of every runner (default: all cores).")
_INTER_OP_THREADS = flags.DEFINE_integer("inter_op_threads", 1, "Inter-op threads (ONNX Runtime, TensorFlow).")
_TFLITE_BATCH_SIZE = flags.DEFINE_integer(
    "tflite_batch_size", 1, "Static batch of the TFLite models (1: one request at a time; 8: throughput).",
    lower_bound=1)
_XNNPACK = flags.DEFINE_bool("xnnpack", True, "TFLite with the XNNPACK delegate.")
_ORT_OPTIMIZATION = flags.DEFINE_enum("ort_optimization", "all", runtime.ORT_OPTIMIZATION_LEVELS,
                                      "ONNX Runtime graph optimisation level.")
_TF_TRT = flags.DEFINE_bool("tf_trt", False, "Also write a TF-TRT SavedModel (needs a GPU with TensorRT).")
_REPRESENTATIVE = flags.DEFINE_string(
    "representative_tfrecords", None, "TFRecord folder or files: int8 calibration and parity images.")
_RANKING = flags.DEFINE_string(
    "ranking_tfrecords", None, "TFRecord folder with query/gallery splits: rank-1 / mAP of each embedder variant "
                               "vs Keras (e.g. the target domain the re-ID run is evaluated on).")
_NUM_REPRESENTATIVE = flags.DEFINE_integer("num_representative", 32, "Calibration images for int8.")
_GENERATOR_NAME = flags.DEFINE_string("generator_name", "sbsgan_generator", "Served name of the generator.")
_PRECISION = precision.define_flag()
_EMBEDDER_NAME = flags.DEFINE_string(
    "embedder_name", None, "Served name of the re-ID embedder (default: da2s_embedder or ide_embedder).")


def main(argv):
    del argv
    options = runtime.RuntimeOptions(
        **({"num_threads": _NUM_THREADS.value} if _NUM_THREADS.value is not None else {}),
        inter_op_threads=_INTER_OP_THREADS.value, xnnpack=_XNNPACK.value, ort_optimization=_ORT_OPTIMIZATION.value)
    runtime.configure_tensorflow(options)
    results = job.export_all(
        _GAN_RUN_DIR.value, _REID_RUN_DIR.value, _EXPORT_DIR.value, version=_VERSION.value,
        overwrite=_OVERWRITE.value, variants={name: tuple(flag.value) for name, flag in _VARIANTS.items()},
        representative_tfrecords=_REPRESENTATIVE.value, num_representative=_NUM_REPRESENTATIVE.value,
        tf_trt=_TF_TRT.value, generator_name=_GENERATOR_NAME.value, embedder_name=_EMBEDDER_NAME.value,
        runtime=options, ranking_tfrecords=_RANKING.value, precision=_PRECISION.value,
        format_options={"tflite": {"batch_size": _TFLITE_BATCH_SIZE.value}},
    )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    errors.run(main, "export")
