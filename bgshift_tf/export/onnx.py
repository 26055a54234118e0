"""ONNX (tf2onnx, checked in onnxruntime) and TensorRT paths for the exported serving SavedModel.

ONNX: each uint8-image signature of the EXPORTED SavedModel (`soft_mask`, `style_transfer`, `embed`) is
re-traced with images fixed to the trained size [N, h, w, 3] uint8 (N dynamic) and converted with
`tf2onnx.convert.from_function`. The uint8 input, the resize and the [-1, 1] scaling stay inside the ONNX
graph, so the ONNX model takes the same inputs as the SavedModel signature (the in-graph assertions are
dropped by tf2onnx; the `*_jpeg` signatures are not converted: ONNX has no JPEG decoder).

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
from bgshift_tf.export.tflite import IMAGE_SIGNATURES, fixed_size_function

OPSET = 17


def convert(version_dir, signature_name, onnx_path, opset=OPSET):
    """Converts one uint8-image signature of an exported SavedModel to ONNX; writes `onnx_path` atomically.

    Returns:
        onnx_path. The ONNX inputs/outputs carry the signature's names (images [, target_domain] ->
        images_uint8, images_float | features).
    """
    import tf2onnx

    function, loaded = fixed_size_function(version_dir, signature_name)
    input_signature = function.structured_input_signature[0]
    tmp_path = f"{onnx_path}.tmp-{os.getpid()}"
    os.makedirs(os.path.dirname(os.path.abspath(onnx_path)), exist_ok=True)
    try:
        tf2onnx.convert.from_function(
            tf.function(function), input_signature=input_signature, opset=opset, output_path=tmp_path
        )
        os.replace(tmp_path, onnx_path)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
    del loaded
    return onnx_path


def convert_all(version_dir, out_dir, opset=OPSET):
    """Converts every uint8-image signature of an export; writes `<out_dir>/<signature>.onnx`.

    Returns:
        {signature: path}.
    """
    info = saved_model_lib.read_export_info(version_dir)
    return {
        name: convert(version_dir, name, os.path.join(out_dir, f"{name}.onnx"), opset)
        for name in info["signatures"] if name in IMAGE_SIGNATURES
    }


class OnnxRunner:
    """Runs a converted model in onnxruntime (CPU); call with named numpy inputs, get named outputs.

    Output names are the signature's (tf2onnx keeps them, possibly with a ":0" suffix, which is dropped).
    """

    def __init__(self, onnx_path, num_threads=None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = num_threads
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
