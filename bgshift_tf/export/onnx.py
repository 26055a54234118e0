"""ONNX (tf2onnx, checked in onnxruntime) and TensorRT paths for the exported serving SavedModel.

ONNX: each uint8-image signature of the EXPORTED SavedModel (`soft_mask`, `style_transfer`, `embed`) is
re-traced with images fixed to the trained size [N, h, w, 3] uint8 (N dynamic) and converted with
`tf2onnx.convert.from_function`. The uint8 input, the resize and the [-1, 1] scaling stay inside the ONNX
graph, so the ONNX model takes the same inputs as the SavedModel signature (the in-graph assertions are
dropped by tf2onnx; the `*_jpeg` signatures are not converted: ONNX has no JPEG decoder).

Variants (one format of `export.job.FORMATS`: NAME, VARIANTS, convert, load_runner):
    float32   the tf2onnx graph.
    int8      QDQ static quantisation (`onnxruntime.quantization.quantize_static`, per-channel int8 weights,
              int8 activations) calibrated on representative images from the TFRecords; the uint8 input,
              resize and scaling stay float.

Runners set ONNX Runtime's graph optimisation level and intra/inter-op threads from `RuntimeOptions`.

TensorRT, two routes (both need an NVIDIA GPU with TensorRT; this machine has neither):
  * from ONNX:  `trtexec_command(onnx_path, engine_path)` gives
        trtexec --onnx=<model>.onnx --saveEngine=<model>.plan --fp16 \
                --minShapes=images:1x<h>x<w>x3 --optShapes=images:8x<h>x<w>x3 --maxShapes=images:32x<h>x<w>x3
  * TF-TRT:     `convert_tf_trt(version_dir, out_dir)` rewrites the SavedModel with TRT engines; it checks
                for a GPU and a TensorRT-enabled TensorFlow first and stops with a clear message otherwise.
"""

import os

import numpy as np
import tensorflow as tf

from bgshift_tf.export import saved_model as saved_model_lib

NAME = "onnx"
VARIANTS = ("float32", "int8")
OPSET = 17


def convert_signature(version_dir, signature_name, onnx_path, opset=OPSET):
    """Converts one uint8-image signature of an exported SavedModel to float32 ONNX; writes `onnx_path` atomically.

    Returns:
        onnx_path. The ONNX inputs/outputs carry the signature's names (images [, target_domain] ->
        images_uint8, images_float | features).
    """
    import tf2onnx

    function, loaded = saved_model_lib.fixed_size_function(version_dir, signature_name)
    _write_atomically(onnx_path, lambda tmp_path: tf2onnx.convert.from_function(
        tf.function(function), input_signature=function.structured_input_signature[0], opset=opset,
        output_path=tmp_path))
    del loaded
    return onnx_path


def _write_atomically(path, write_fn):
    tmp_path = f"{path}.tmp-{os.getpid()}"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        write_fn(tmp_path)
        os.replace(tmp_path, path)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)


class _CalibrationReader:
    """onnxruntime.quantization CalibrationDataReader over a list of batch-1 input dicts."""

    def __init__(self, inputs):
        self.inputs, self.position = list(inputs), 0

    def get_next(self):
        self.position += 1
        return self.inputs[self.position - 1] if self.position <= len(self.inputs) else None

    def rewind(self):
        self.position = 0


def quantize_int8(float_path, int8_path, calibration_inputs):
    """QDQ int8 model from a float32 ONNX model, calibrated on `calibration_inputs` (batch-1 dicts)."""
    from onnxruntime import quantization

    if not calibration_inputs:
        raise ValueError("ONNX variant 'int8' needs calibration images; pass --representative_tfrecords.")
    _write_atomically(int8_path, lambda tmp_path: quantization.quantize_static(
        float_path, tmp_path, _CalibrationReader(calibration_inputs), quant_format=quantization.QuantFormat.QDQ,
        per_channel=True, activation_type=quantization.QuantType.QInt8, weight_type=quantization.QuantType.QInt8))
    return int8_path


def convert(version_dir, out_dir, variants, calibration_images=None, signatures=None):
    """Converts the uint8-image signatures of an export; writes `<out_dir>/<signature>_<variant>.onnx`.

    Args:
        calibration_images: uint8 [M, h, w, 3] (needed by "int8").
        signatures: names to convert (default: every uint8-image signature of the export).

    Returns:
        {signature: {variant: path}}.
    """
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise ValueError(f"Unknown ONNX variants {unknown}; choose from {list(VARIANTS)}")
    if "int8" in variants and calibration_images is None:
        raise ValueError("ONNX variant 'int8' needs calibration images; pass --representative_tfrecords.")
    paths = {}
    for name in saved_model_lib.image_signatures(version_dir):
        if signatures and name not in signatures:
            continue
        float_path = convert_signature(version_dir, name, os.path.join(out_dir, f"{name}_float32.onnx"))
        if "int8" in variants:
            paths.setdefault(name, {})["int8"] = quantize_int8(
                float_path, os.path.join(out_dir, f"{name}_int8.onnx"),
                saved_model_lib.calibration_inputs(version_dir, name, calibration_images))
        if "float32" in variants:
            paths.setdefault(name, {})["float32"] = float_path
        else:
            os.remove(float_path)
    return paths


def load_runner(path, runtime):
    """An `OnnxRunner` with the graph optimisation and thread settings of `runtime`."""
    return OnnxRunner(path, runtime)


class OnnxRunner:
    """Runs a converted model in onnxruntime (CPU); call with named numpy inputs, get named outputs.

    Output names are the signature's (tf2onnx keeps them, possibly with a ":0" suffix, which is dropped).
    """

    def __init__(self, onnx_path, runtime):
        import onnxruntime

        levels = onnxruntime.GraphOptimizationLevel
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = {"disable": levels.ORT_DISABLE_ALL, "basic": levels.ORT_ENABLE_BASIC,
                                            "extended": levels.ORT_ENABLE_EXTENDED,
                                            "all": levels.ORT_ENABLE_ALL}[runtime.ort_optimization]
        options.intra_op_num_threads = runtime.num_threads
        options.inter_op_num_threads = runtime.inter_op_threads
        options.execution_mode = (onnxruntime.ExecutionMode.ORT_PARALLEL if runtime.inter_op_threads > 1
                                  else onnxruntime.ExecutionMode.ORT_SEQUENTIAL)
        self.session = onnxruntime.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __call__(self, **inputs):
        if sorted(inputs) != sorted(self.input_names):
            raise ValueError(f"ONNX model takes inputs {self.input_names}. Received: {sorted(inputs)}")
        outputs = self.session.run(self.output_names, {k: np.asarray(v) for k, v in inputs.items()})
        return {name.split(":")[0]: value for name, value in zip(self.output_names, outputs)}


def trtexec_command(onnx_path, engine_path, image_size, max_batch=32, fp16=True):
    """The `trtexec` command building a TensorRT engine from the ONNX model (run it on the GPU host)."""
    height, width = image_size
    shape = f"x{height}x{width}x3"
    command = [
        "trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine_path}",
        f"--minShapes=images:1{shape}", f"--optShapes=images:{min(8, max_batch)}{shape}",
        f"--maxShapes=images:{max_batch}{shape}",
    ]
    return " ".join(command + (["--fp16"] if fp16 else []))


def tensorrt_unavailable_reason():
    """None when TF-TRT can run here; otherwise the reason (no GPU, or TensorFlow built without TensorRT)."""
    if not tf.config.list_physical_devices("GPU"):
        return "no GPU visible to TensorFlow (tf.config.list_physical_devices('GPU') is empty)"
    try:
        from tensorflow.python.compiler.tensorrt import trt_convert

        if not trt_convert._pywrap_py_utils.is_tensorrt_enabled():
            return "this TensorFlow build has no TensorRT support"
    except (ImportError, AttributeError) as error:
        return f"TensorRT bindings could not be loaded ({error})"
    return None


def convert_tf_trt(version_dir, out_dir, precision="FP16"):
    """TF-TRT: rewrites the exported SavedModel with TensorRT engines into `out_dir` (a GPU host only).

    Raises:
        RuntimeError: with the reason when there is no GPU or no TensorRT (checked before converting).
    """
    reason = tensorrt_unavailable_reason()
    if reason is not None:
        raise RuntimeError(
            f"TF-TRT conversion of {version_dir} needs an NVIDIA GPU and TensorRT: {reason}. Build an engine "
            "from the ONNX model with trtexec on a GPU host instead (see BUILD_NOTES.md, Deployment)."
        )
    converter = tf.experimental.tensorrt.Converter(
        input_saved_model_dir=version_dir,
        conversion_params=tf.experimental.tensorrt.ConversionParams(precision_mode=precision),
    )
    converter.convert()
    converter.save(out_dir)
    return out_dir
