"""TFLite models converted from the EXPORTED serving SavedModel, one per signature and variant.

Converting the exported SavedModel (not the Keras model) means the TFLite model contains exactly the
graph that was tested and served, preprocessing included. TFLite needs a fixed image size, so each
uint8-image signature (`soft_mask`, `style_transfer`, `embed`) is re-traced with its images fixed to the
trained size and a static batch: [batch_size, h, w, 3] (default BATCH_SIZE = 1, what a device serving one
request at a time wants; `--tflite_batch_size=8` for throughput); the `*_jpeg` signatures are not converted
(TFLite has no string/JPEG ops: decode on the device and feed pixels).

Why a static batch (issue 16): with a resizable batch, every instance norm (then Keras GroupNormalization;
now `models.layers.InstanceNormalization`, which has no reshape) reshaped back with a runtime SHAPE, so its
tensors were dynamic; XNNPACK delegates static tensors only, and
the demo generator's graph split into 13 XNNPACK partitions with the norms' MEAN/SUB/MUL/RSQRT left to
the builtin kernels. With every shape static XNNPACK takes the whole float32 graph (`delegated_partitions`
= 1; int8 keeps the norms' statistics float, so XNNPACK runs it in several partitions). The runner feeds a
batch of N images as ceil(N / batch_size) calls, the last one padded with copies of the last image (their
outputs are dropped). Measured (BUILD_NOTES): XNNPACK's float32 throughput at batch 8 is ~20-55% higher with
a batch-8 model than with batch-1 calls on 2 cores.

Variants:
    float32       no optimisation.
    float16       weights stored as float16 (dequantised to float32 at load on CPU).
    dynamic_int8  weights int8, activations quantised on the fly (no calibration data).
    int8          weights and activations int8, calibrated on a representative dataset (uint8 images at
                  the trained size, e.g. from the TFRecords); ops without an int8 kernel stay float.

Runners use XNNPACK and `RuntimeOptions.num_threads` threads by default (`runtime.py`); without a thread
count the interpreter runs on ONE thread (what issue 16's figures measured).

One format of `export.job.FORMATS` (NAME, VARIANTS, convert, load_runner). Run the models with
`ai_edge_litert.interpreter.Interpreter` (`tf.lite.Interpreter` is deprecated).
"""

import os

import numpy as np
import tensorflow as tf

from bgshift_tf.core import atomic_io
from bgshift_tf.export import saved_model as saved_model_lib

NAME = "tflite"
VARIANTS = ("float32", "float16", "dynamic_int8", "int8")
BATCH_SIZE = 1


def convert_signature(version_dir, signature_name, variant, representative_inputs=None, batch_size=BATCH_SIZE):
    """Converts one uint8-image signature of an exported SavedModel to a TFLite flatbuffer.

    Args:
        version_dir: exported version folder.
        signature_name: "soft_mask", "style_transfer" or "embed".
        variant: one of VARIANTS.
        representative_inputs: for "int8": a list of input dicts with batch 1 (`saved_model.calibration_inputs`);
            a few dozen images are enough for calibration.
        batch_size: the model's static batch.

    Returns:
        The TFLite model as bytes.
    """
    if variant not in VARIANTS:
        raise ValueError(f"`variant` must be one of {VARIANTS}. Received: variant={variant!r}")
    if variant == "int8" and representative_inputs is None:
        raise ValueError("variant='int8' needs `representative_inputs` (calibration images); pass "
                         "--representative_tfrecords to the export job.")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"The TFLite batch size (--tflite_batch_size) must be a positive integer. "
                         f"Received: batch_size={batch_size!r}")
    function, loaded = saved_model_lib.fixed_size_function(version_dir, signature_name, batch_size)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], loaded)
    if variant != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if variant == "int8":
        # Dicts keyed by input name: the converter's input order need not match the signature's.
        batches = _batched(representative_inputs, batch_size)
        converter.representative_dataset = lambda: iter(batches)
    return converter.convert()


def _batched(inputs, batch_size):
    """Batch-1 input dicts regrouped into len // batch_size dicts of `batch_size` (one, cycled, when fewer)."""
    if batch_size == 1:
        return list(inputs)
    count = max(1, len(inputs) // batch_size) * batch_size
    cycled = [inputs[i % len(inputs)] for i in range(count)]
    return [{name: np.concatenate([item[name] for item in cycled[i:i + batch_size]]) for name in cycled[0]}
            for i in range(0, len(cycled), batch_size)]


def model_filename(signature_name, variant, batch_size=BATCH_SIZE):
    """`<signature>_<variant>.tflite`, with `_batch<B>` before the suffix for a static batch other than 1."""
    return f"{signature_name}_{variant}" + (f"_batch{batch_size}" if batch_size != 1 else "") + ".tflite"


def convert(version_dir, out_dir, variants, calibration_images=None, signatures=None, batch_size=BATCH_SIZE):
    """Converts the uint8-image signatures of an export in each variant; writes `model_filename(...)` files.

    Args:
        calibration_images: uint8 [M, h, w, 3] (needed by "int8"); style_transfer calibrates on them with
            target domains cycling through 0..K-1.
        signatures: names to convert (default: every uint8-image signature of the export).
        batch_size: the models' static batch (`convert_signature`).

    Returns:
        {signature: {variant: path}}.
    """
    paths = {}
    for signature_name in saved_model_lib.image_signatures(version_dir):
        if signatures and signature_name not in signatures:
            continue
        calibration = None
        if calibration_images is not None:
            calibration = saved_model_lib.calibration_inputs(version_dir, signature_name, calibration_images)
        for variant in variants:
            path = os.path.join(out_dir, model_filename(signature_name, variant, batch_size))
            atomic_io.write_bytes(path, convert_signature(version_dir, signature_name, variant, calibration,
                                                          batch_size))
            paths.setdefault(signature_name, {})[variant] = path
    return paths


def load_runner(path, runtime):
    """A `TFLiteRunner` for a converted model with the thread / XNNPACK settings of `runtime`."""
    return TFLiteRunner(path, runtime)


class TFLiteRunner:
    """Runs a converted model with `ai_edge_litert` through its signature runner.

    Args:
        model_path: a .tflite file written by `convert`.
        runtime: `runtime.RuntimeOptions` (num_threads, xnnpack).

    Call with named numpy inputs (e.g. images=uint8 [N, h, w, 3], any N); returns the named outputs as
    numpy, [N, ...]: the model's static batch B is fed ceil(N / B) times, the last call padded with copies of
    the last image and its extra outputs dropped.
    """

    def __init__(self, model_path, runtime):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        resolver = OpResolverType.BUILTIN if runtime.xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        self.interpreter = Interpreter(model_path=model_path, num_threads=runtime.num_threads,
                                       experimental_op_resolver_type=resolver)
        self.interpreter.allocate_tensors()  # applies the XNNPACK delegate (`delegated_partitions` counts it)
        signatures = self.interpreter.get_signature_list()
        self.signature_key = next(iter(signatures))
        self.input_names = signatures[self.signature_key]["inputs"]
        self.output_names = signatures[self.signature_key]["outputs"]
        self.runner = self.interpreter.get_signature_runner(self.signature_key)
        self.batch_size = int(self.interpreter.get_input_details()[0]["shape"][0])

    def __call__(self, **inputs):
        if sorted(inputs) != sorted(self.input_names):
            raise ValueError(f"TFLite model takes inputs {self.input_names}. Received: {sorted(inputs)}")
        inputs = {name: np.asarray(value) for name, value in inputs.items()}
        count = len(next(iter(inputs.values())))
        if count == 0 or any(len(value) != count for value in inputs.values()):
            raise ValueError(f"The TFLite model's inputs {self.input_names} need the same, non-zero batch. "
                             f"Received: {({name: len(value) for name, value in inputs.items()})}")
        padding = -count % self.batch_size
        if padding:
            inputs = {name: np.concatenate([value, np.repeat(value[-1:], padding, axis=0)])
                      for name, value in inputs.items()}
        chunks = [self.runner(**{name: value[i:i + self.batch_size] for name, value in inputs.items()})
                  for i in range(0, count + padding, self.batch_size)]
        return {name: np.concatenate([chunk[name] for chunk in chunks])[:count] for name in chunks[0]}


def delegated_partitions(runner):
    """How many XNNPACK partitions the runner's graph runs as (1 = XNNPACK takes the whole graph)."""
    return sum(op["op_name"] == "DELEGATE" for op in runner.interpreter._get_ops_details())
