"""TFLite models converted from the EXPORTED serving SavedModel, one per signature and variant.

Converting the exported SavedModel (not the Keras model) means the TFLite model contains exactly the
graph that was tested and served, preprocessing included. TFLite needs a fixed image size, so each
uint8-image signature (`soft_mask`, `style_transfer`, `embed`) is re-traced with its images fixed to the
trained size [N, h, w, 3] (N stays resizable); the `*_jpeg` signatures are not converted (TFLite has no
string/JPEG ops: decode on the device and feed pixels).

Variants:
    float32       no optimisation.
    float16       weights stored as float16 (dequantised to float32 at load on CPU).
    dynamic_int8  weights int8, activations quantised on the fly (no calibration data).
    int8          weights and activations int8, calibrated on a representative dataset (uint8 images at
                  the trained size, e.g. from the TFRecords); ops without an int8 kernel stay float.

Run the models with `ai_edge_litert.interpreter.Interpreter` (`tf.lite.Interpreter` is deprecated).
"""

import os

import numpy as np
import tensorflow as tf

from bgshift_tf import atomic_io
from bgshift_tf.export import saved_model as saved_model_lib

VARIANTS = ("float32", "float16", "dynamic_int8", "int8")
IMAGE_SIGNATURES = ("soft_mask", "style_transfer", "embed")


def fixed_size_function(version_dir, signature_name):
    """A concrete function calling the exported signature with images fixed to the trained size.

    Args:
        version_dir: an exported version folder (`<export_dir>/<model>/<version>`).
        signature_name: one of IMAGE_SIGNATURES present in that export.

    Returns:
        (concrete_function, loaded_saved_model): keep the loaded object alive while converting.
    """
    info = saved_model_lib.read_export_info(version_dir)
    if signature_name not in IMAGE_SIGNATURES or signature_name not in info["signatures"]:
        raise ValueError(
            f"`signature_name` must be a uint8-image signature of {version_dir} "
            f"({[s for s in info['signatures'] if s in IMAGE_SIGNATURES]}). Received: signature_name={signature_name!r}"
        )
    loaded = tf.saved_model.load(version_dir)
    signature = loaded.signatures[signature_name]
    height, width = info["image_size"]
    images_spec = tf.TensorSpec([None, height, width, 3], tf.uint8, name="images")
    if signature_name == "style_transfer":
        function = tf.function(
            lambda images, target_domain: signature(images=images, target_domain=target_domain),
            input_signature=[images_spec, tf.TensorSpec([None], tf.int32, name="target_domain")],
        )
    else:
        function = tf.function(lambda images: signature(images=images), input_signature=[images_spec])
    return function.get_concrete_function(), loaded


def convert(version_dir, signature_name, variant, representative_inputs=None):
    """Converts one signature of an exported SavedModel to a TFLite flatbuffer.

    Args:
        version_dir: exported version folder.
        signature_name: "soft_mask", "style_transfer" or "embed".
        variant: one of VARIANTS.
        representative_inputs: for "int8": an iterable of input dicts (name -> np.ndarray with batch 1,
            e.g. {"images": uint8 [1, h, w, 3]}); a few dozen images are enough for calibration.

    Returns:
        The TFLite model as bytes.
    """
    if variant not in VARIANTS:
        raise ValueError(f"`variant` must be one of {VARIANTS}. Received: variant={variant!r}")
    if variant == "int8" and representative_inputs is None:
        raise ValueError("variant='int8' needs `representative_inputs` (calibration images); pass "
                         "--representative_tfrecords to the export job.")
    function, loaded = fixed_size_function(version_dir, signature_name)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], loaded)
    if variant != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if variant == "int8":
        # Dicts keyed by input name: the converter's input order need not match the signature's.
        converter.representative_dataset = lambda: iter(representative_inputs)
    return converter.convert()


def convert_all(version_dir, out_dir, variants=VARIANTS, representative_inputs=None, signatures=None):
    """Converts the uint8-image signatures of an export in each variant; writes `<signature>_<variant>.tflite`.

    Args:
        representative_inputs: calibration images uint8 [M, h, w, 3] (for "int8"); style_transfer
            calibrates on them with target domains cycling through 0..K-1.
        signatures: names to convert (default: every uint8-image signature of the export).

    Returns:
        {signature: {variant: path}}.
    """
    info = saved_model_lib.read_export_info(version_dir)
    paths = {}
    wanted = signatures or IMAGE_SIGNATURES
    for signature_name in [s for s in info["signatures"] if s in IMAGE_SIGNATURES and s in wanted]:
        calibration = None
        if representative_inputs is not None:
            calibration = [
                _calibration_inputs(signature_name, image, i, info.get("num_domains", 1))
                for i, image in enumerate(representative_inputs)
            ]
        for variant in variants:
            path = os.path.join(out_dir, f"{signature_name}_{variant}.tflite")
            atomic_io.write_bytes(path, convert(version_dir, signature_name, variant, calibration))
            paths.setdefault(signature_name, {})[variant] = path
    return paths


def _calibration_inputs(signature_name, image, index, num_domains):
    inputs = {"images": image[np.newaxis].astype(np.uint8)}
    if signature_name == "style_transfer":
        inputs["target_domain"] = np.array([index % num_domains], np.int32)
    return inputs


class TFLiteRunner:
    """Runs a converted model with `ai_edge_litert` through its signature runner.

    Args:
        model_path: a .tflite file written by `convert_all`.
        num_threads: interpreter threads.

    Call with named numpy inputs (e.g. images=uint8 [N, h, w, 3]); returns the named outputs as numpy.
    """

    def __init__(self, model_path, num_threads=None):
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=model_path, num_threads=num_threads)
        signatures = self.interpreter.get_signature_list()
        self.signature_key = next(iter(signatures))
        self.input_names = signatures[self.signature_key]["inputs"]
        self.output_names = signatures[self.signature_key]["outputs"]
        self.runner = self.interpreter.get_signature_runner(self.signature_key)

    def __call__(self, **inputs):
        if sorted(inputs) != sorted(self.input_names):
            raise ValueError(f"TFLite model takes inputs {self.input_names}. Received: {sorted(inputs)}")
        return self.runner(**inputs)
