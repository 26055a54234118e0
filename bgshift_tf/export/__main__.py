"""Exports trained SBSGAN / re-ID runs for serving: SavedModels (TF Serving layout), TFLite, ONNX.

Usage:
    python -m bgshift_tf.export --flagfile=bgshift_tf/configs/export_demo.flags
    python -m bgshift_tf.export --gan_run_dir=runs/demo_gan --reid_run_dir=runs/demo_da2s \
        --export_dir=saved_models --tflite=float32,float16,dynamic_int8,int8 --onnx \
        --representative_tfrecords=tfrecords/demo/synmarket

Writes <export_dir>/<model>/<version>/ (SavedModel + warm-up requests), <export_dir>/models.config,
tflite/ and onnx/ sub-folders and parity_<model>_v<version>.json (max differences vs the Keras model).
Serve with `tensorflow/serving` (see README / BUILD_NOTES.md, Deployment).

(`bgshift_tf/export/` is a package, so this entry point is its `__main__` module: a sibling
`bgshift_tf/export.py` would be shadowed by the package and never run.)
"""

import json

from absl import app, flags

from bgshift_tf.export import job

FLAGS = flags.FLAGS
_GAN_RUN_DIR = flags.DEFINE_string("gan_run_dir", None, "SBSGAN run folder (config.json + checkpoints/).")
_REID_RUN_DIR = flags.DEFINE_string("reid_run_dir", None, "Re-ID run folder (IDE or DA-2S; DA-2S needs --gan_run_dir).")
_EXPORT_DIR = flags.DEFINE_string("export_dir", "saved_models", "TF Serving base folder to write into.")
_VERSION = flags.DEFINE_integer("version", None, "Model version (positive int); default: the next free one.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing version folder (atomically).")
_TFLITE = flags.DEFINE_list("tflite", [], f"TFLite variants to convert, from {list(job.TFLITE_VARIANTS)}.")
_ONNX = flags.DEFINE_bool("onnx", False, "Also convert to ONNX (tf2onnx) and check in onnxruntime.")
_TF_TRT = flags.DEFINE_bool("tf_trt", False, "Also write a TF-TRT SavedModel (needs a GPU with TensorRT).")
_REPRESENTATIVE = flags.DEFINE_string(
    "representative_tfrecords", None, "TFRecord folder or files: int8 calibration and parity images.")
_NUM_REPRESENTATIVE = flags.DEFINE_integer("num_representative", 32, "Calibration images for int8.")
_GENERATOR_NAME = flags.DEFINE_string("generator_name", "sbsgan_generator", "Served name of the generator.")
_EMBEDDER_NAME = flags.DEFINE_string(
    "embedder_name", None, "Served name of the re-ID embedder (default: da2s_embedder or ide_embedder).")


def main(argv):
    del argv
    results = job.export_all(
        _GAN_RUN_DIR.value, _REID_RUN_DIR.value, _EXPORT_DIR.value, version=_VERSION.value,
        overwrite=_OVERWRITE.value, tflite_variants=tuple(_TFLITE.value), onnx=_ONNX.value,
        representative_tfrecords=_REPRESENTATIVE.value, num_representative=_NUM_REPRESENTATIVE.value,
        tf_trt=_TF_TRT.value, generator_name=_GENERATOR_NAME.value, embedder_name=_EMBEDDER_NAME.value,
    )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    app.run(main)
