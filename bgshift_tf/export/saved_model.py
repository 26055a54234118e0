"""Serving SavedModels for the SBSGAN generator and the re-ID embedder, in the TF Serving layout.

Layout written here (what `tensorflow/serving` expects under its `--model_base_path`):

    <export_dir>/<model_name>/<version>/saved_model.pb
    <export_dir>/<model_name>/<version>/variables/
    <export_dir>/<model_name>/<version>/assets.extra/tf_serving_warmup_requests
    <export_dir>/models.config          (model_config_list naming every exported model)

Every signature takes raw pixels and does the preprocessing inside (resize to the trained size with
bilinear half-pixel sampling, scale to [-1, 1]), so clients send images as they are:

    generator  soft_mask (DEFAULT)  images uint8 [N, H, W, 3], any H, W
                                    -> images_uint8 uint8 [N, h, w, 3], images_float float32 [N, h, w, 3] in [-1, 1]
               style_transfer       images uint8 [N, H, W, 3], target_domain int32 [N] in [0, K)
                                    -> the same two outputs (style branch, one-hot target domain)
               soft_mask_jpeg       image_bytes string [N] (encoded JPEG or PNG) -> the same two outputs
    embedder   embed (DEFAULT)      images uint8 [N, H, W, 3] -> features float32 [N, D]
               embed_jpeg           image_bytes string [N] -> features float32 [N, D]

(h, w) is the trained size. For DA-2S the generator is folded into the embedder: stream 1 is the soft-mask
image G(x, 1/K) and stream 2 the original image x (the test-time rule, SPEC §3).

Input checks and preprocessing live in `export/serving_inputs.py`.
`signatures` reads an export's signatures back, dtypes and shapes (what the main job's manifest records).
"""

import json
import os
import shutil
import tempfile
import uuid

import numpy as np
import tensorflow as tf

from bgshift_tf.core import atomic_io
from bgshift_tf.data.images import to_model_range, to_uint8
from bgshift_tf.export.runtime import configure_tensorflow
from bgshift_tf.export.serving_inputs import (check_domains, check_images, decode_image_bytes, resize_pixels,
                                             signature_inputs)

GENERATOR_SIGNATURES = ("soft_mask", "style_transfer", "soft_mask_jpeg")
EMBEDDER_SIGNATURES = ("embed", "embed_jpeg")
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
INFO_FILE = os.path.join("assets.extra", "export_info.json")
IMAGE_SIGNATURES = ("soft_mask", "style_transfer", "embed")


def _image_spec():
    return tf.TensorSpec(shape=None, dtype=tf.uint8, name="images")


def _bytes_spec():
    return tf.TensorSpec(shape=[None], dtype=tf.string, name="image_bytes")


def _generator_outputs(values):
    return {"images_uint8": to_uint8(values), "images_float": tf.identity(values)}


# === Serving modules ===


class _Serving(tf.Module):
    """A serving module: its tf.functions named in `SIGNATURES` are its signatures, `DEFAULT` also as
    `serving_default`."""

    SIGNATURES = ()
    DEFAULT = None

    def signatures(self):
        """Signature name -> concrete function; `serving_default` is the `DEFAULT` one."""
        functions = {key: getattr(self, key).get_concrete_function() for key in self.SIGNATURES}
        return {"serving_default": functions[self.DEFAULT], **functions}


class GeneratorServing(_Serving):
    """tf.Module wrapping a trained SBSGAN generator with the three serving signatures (see module doc).

    Args:
        generator: a `bgshift_tf.models.generator.Generator` (or any Keras model with
            `soft_mask(images)`, `style_transfer(images, target_domains)` and `num_domains` /
            `image_size` in its config); images float32 [B, h, w, 3] in [-1, 1].
    """

    SIGNATURES = GENERATOR_SIGNATURES
    DEFAULT = "soft_mask"

    def __init__(self, generator, name="generator_serving"):
        super().__init__(name=name)
        config = generator.get_config()
        self.generator = generator
        self.image_size = tuple(int(v) for v in config["image_size"])
        self.num_domains = int(config["num_domains"])

    def _soft_mask_pixels(self, pixels):
        return _generator_outputs(self.generator.soft_mask(to_model_range(pixels), training=False))

    @tf.function(input_signature=[_image_spec()])
    def soft_mask(self, images):
        """uint8 [N, H, W, 3] -> {"images_uint8": uint8 [N, h, w, 3], "images_float": float32 in [-1, 1]}."""
        return self._soft_mask_pixels(resize_pixels(check_images(images), self.image_size))

    @tf.function(input_signature=[_image_spec(), tf.TensorSpec(shape=None, dtype=tf.int32, name="target_domain")])
    def style_transfer(self, images, target_domain):
        """uint8 [N, H, W, 3], int32 [N] -> the style branch toward each image's target domain."""
        images = check_images(images)
        target_domain = check_domains(target_domain, tf.shape(images)[0], self.num_domains)
        values = self.generator.style_transfer(
            to_model_range(resize_pixels(images, self.image_size)), target_domain, training=False
        )
        return _generator_outputs(values)

    @tf.function(input_signature=[_bytes_spec()])
    def soft_mask_jpeg(self, image_bytes):
        """string [N] encoded JPEG/PNG -> the soft_mask outputs."""
        return self._soft_mask_pixels(decode_image_bytes(image_bytes, self.image_size))


class EmbedderServing(_Serving):
    """tf.Module wrapping a re-ID model (DA-2S with its generator folded in, or IDE) as `embed` signatures.

    Args:
        reid_model: a `bgshift_tf.models.reid.DA2S` (`embed((stream1, stream2))`) or `IDE` (`embed(images)`),
            with `input_shape` (h, w, 3) in its config; feature float32 [B, D].
        generator: the SBSGAN generator making stream 1 (the soft-mask image) for DA-2S; None for IDE.
    """

    SIGNATURES = EMBEDDER_SIGNATURES
    DEFAULT = "embed"

    def __init__(self, reid_model, generator=None, name="embedder_serving"):
        super().__init__(name=name)
        self.reid_model = reid_model
        self.generator = generator
        self.image_size = tuple(int(v) for v in reid_model.get_config()["input_shape"][:2])
        if generator is not None:
            self.generator_size = tuple(int(v) for v in generator.get_config()["image_size"])

    def _embed_pixels(self, pixels):
        """float32 [N, H, W, 3] in [0, 255] -> {"features": float32 [N, D]}."""
        stream2 = to_model_range(resize_pixels(pixels, self.image_size))
        if self.generator is None:
            return {"features": self.reid_model.embed(stream2, training=False)}
        soft_mask = self.generator.soft_mask(to_model_range(resize_pixels(pixels, self.generator_size)),
                                             training=False)
        if self.generator_size != self.image_size:
            soft_mask = tf.image.resize(soft_mask, self.image_size, method="bilinear")
        return {"features": self.reid_model.embed((soft_mask, stream2), training=False)}

    @tf.function(input_signature=[_image_spec()])
    def embed(self, images):
        """uint8 [N, H, W, 3] -> {"features": float32 [N, D]}."""
        return self._embed_pixels(check_images(images))

    @tf.function(input_signature=[_bytes_spec()])
    def embed_jpeg(self, image_bytes):
        """string [N] encoded JPEG/PNG -> {"features": float32 [N, D]}."""
        return self._embed_pixels(decode_image_bytes(image_bytes, self.image_size))


# === Writing (atomic, TF Serving layout) ===


def next_version(model_dir):
    """1 + the largest numeric version folder in `model_dir` (1 when there is none)."""
    versions = [int(n) for n in os.listdir(model_dir) if n.isdigit()] if os.path.isdir(model_dir) else []
    return max(versions, default=0) + 1


def write_version_atomically(model_dir, version, write_fn, overwrite=False):
    """Calls `write_fn(tmp_dir)` then renames `tmp_dir` to `<model_dir>/<version>`.

    The temporary folder sits beside the target (same file system, so the rename is atomic) and its name
    starts with a dot, so TF Serving (which loads only numeric folders) never sees it half-written. A failure
    removes the temporary folder and leaves any existing version untouched; with `overwrite`, the old
    version is swapped out only after the new one is complete.

    Returns:
        The final version folder.
    """
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"`version` must be a positive integer (TF Serving's int64 versions). Received: version={version!r}")
    final_dir = os.path.join(model_dir, str(version))
    if os.path.exists(final_dir) and not overwrite:
        raise FileExistsError(f"Version folder {final_dir} already exists; pass overwrite=True (--overwrite) "
                              "to replace it or choose another --version.")
    os.makedirs(model_dir, exist_ok=True)
    tmp_dir = tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=model_dir)
    try:
        write_fn(tmp_dir)
        if os.path.exists(final_dir):
            old_dir = os.path.join(model_dir, f".old-{version}-{uuid.uuid4().hex[:8]}")
            os.replace(final_dir, old_dir)
            try:
                os.replace(tmp_dir, final_dir)
            except BaseException:
                os.replace(old_dir, final_dir)
                raise
            shutil.rmtree(old_dir, ignore_errors=True)
        else:
            os.replace(tmp_dir, final_dir)
    finally:
        if os.path.exists(tmp_dir):
            shutil.rmtree(tmp_dir, ignore_errors=True)
    return final_dir


def _warmup_inputs(signature_name, image_size, num_domains=None, batch_size=2):
    """Small, valid inputs (numpy, keyed by input name) for one signature, at the trained size."""
    images = np.random.default_rng(0).integers(0, 256, size=(batch_size, *image_size, 3), dtype=np.uint8)
    return signature_inputs(signature_name, images, num_domains)


def write_warmup_requests(version_dir, model_name, requests):
    """Writes `assets.extra/tf_serving_warmup_requests`: one PredictionLog per (signature, inputs) pair.

    TF Serving replays these at load time, so the first real request does not pay for graph tracing.
    """
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    path = os.path.join(version_dir, WARMUP_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for signature_name, inputs in requests:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature_name)
            )
            for key, value in inputs.items():
                request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path


def read_warmup_requests(version_dir):
    """The warm-up requests as a list of (signature_name, {input: np.ndarray}) (for tests and checks)."""
    from tensorflow_serving.apis import prediction_log_pb2

    requests = []
    for record in tf.data.TFRecordDataset(os.path.join(version_dir, WARMUP_FILE)):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        request = log.predict_log.request
        requests.append((request.model_spec.signature_name,
                         {key: tf.make_ndarray(proto) for key, proto in request.inputs.items()}))
    return requests


def _save(module, version_dir, model_name, warmup_requests, info):
    tf.saved_model.save(module, version_dir, signatures=module.signatures())
    write_warmup_requests(version_dir, model_name, warmup_requests)
    atomic_io.write_json(os.path.join(version_dir, INFO_FILE), {"model_name": model_name, **info})


def read_export_info(version_dir):
    """The export's facts (`assets.extra/export_info.json`): kind, image_size, num_domains / feature_dim."""
    with open(os.path.join(version_dir, INFO_FILE)) as f:
        return json.load(f)


def fixed_size_function(version_dir, signature_name, batch_size=None):
    """A concrete function calling an exported uint8-image signature with images fixed to the trained size.

    TFLite needs a fixed image size and ONNX converts from a function, so both start here: images
    [batch_size, h, w, 3] uint8, plus target_domain int32 [batch_size] for style_transfer. batch_size None
    keeps the batch resizable (ONNX); an int makes every shape static (TFLite: see `tflite.BATCH_SIZE`).

    Returns:
        (concrete_function, loaded_saved_model): keep the loaded object alive while converting.
    """
    info = read_export_info(version_dir)
    if signature_name not in IMAGE_SIGNATURES or signature_name not in info["signatures"]:
        raise ValueError(
            f"`signature_name` must be a uint8-image signature of {version_dir} "
            f"({[s for s in info['signatures'] if s in IMAGE_SIGNATURES]}). Received: signature_name={signature_name!r}"
        )
    loaded = tf.saved_model.load(version_dir)
    signature = loaded.signatures[signature_name]
    height, width = info["image_size"]
    images_spec = tf.TensorSpec([batch_size, height, width, 3], tf.uint8, name="images")
    if signature_name == "style_transfer":
        function = tf.function(
            lambda images, target_domain: signature(images=images, target_domain=target_domain),
            input_signature=[images_spec, tf.TensorSpec([batch_size], tf.int32, name="target_domain")],
        )
    else:
        function = tf.function(lambda images: signature(images=images), input_signature=[images_spec])
    return function.get_concrete_function(), loaded


def image_signatures(version_dir):
    """The export's uint8-image signatures (the ones TFLite and ONNX convert), in export order."""
    return [name for name in read_export_info(version_dir)["signatures"] if name in IMAGE_SIGNATURES]


def signatures(version_dir):
    """{signature: {"inputs": {name: "dtype [shape]"}, "outputs": {...}}} of an exported SavedModel."""
    loaded = tf.saved_model.load(version_dir)

    def spec(value):
        if value.shape.rank is None:
            return f"{value.dtype.name} [unknown rank]"
        shape = ",".join("-1" if d is None else str(d) for d in value.shape.as_list())
        return f"{value.dtype.name} [{shape}]"

    result = {}
    for name, function in loaded.signatures.items():
        _, inputs = function.structured_input_signature
        result[name] = {"inputs": {k: spec(v) for k, v in inputs.items()},
                        "outputs": {k: spec(v) for k, v in function.structured_outputs.items()}}
    return result


def calibration_inputs(version_dir, signature_name, images):
    """Batch-1 input dicts for int8 calibration from uint8 images [M, h, w, 3] (domains cycling 0..K-1)."""
    inputs = signature_inputs(signature_name, images, read_export_info(version_dir).get("num_domains"))
    return [{key: value[i:i + 1] for key, value in inputs.items()} for i in range(len(images))]


class SavedModelRunner:
    """Calls one signature of an exported SavedModel with named numpy inputs; returns named numpy outputs.

    Args:
        version_dir: exported version folder.
        signature_name: the signature to call.
        runtime: `runtime.RuntimeOptions`; TensorFlow's threads are applied (or checked, once TensorFlow
            runs) by `runtime.configure_tensorflow` before the model loads.
    """

    def __init__(self, version_dir, signature_name, runtime):
        configure_tensorflow(runtime)
        self.loaded = tf.saved_model.load(version_dir)
        self.function = self.loaded.signatures[signature_name]

    def __call__(self, **inputs):
        return {k: v.numpy() for k, v in self.function(**{k: tf.constant(v) for k, v in inputs.items()}).items()}


def export_generator(generator, export_dir, model_name="sbsgan_generator", version=None, overwrite=False):
    """Exports the generator's serving SavedModel to `<export_dir>/<model_name>/<version>/`.

    Args:
        generator: trained generator (see `GeneratorServing`).
        export_dir: the TF Serving base folder (e.g. "saved_models").
        model_name: the model's folder and serving name.
        version: positive int; None = next free version.
        overwrite: replace an existing version folder (atomically).

    Returns:
        The version folder written.
    """
    module = GeneratorServing(generator)
    model_dir = os.path.join(export_dir, model_name)
    version = next_version(model_dir) if version is None else version
    requests = [(key, _warmup_inputs(key, module.image_size, module.num_domains)) for key in GENERATOR_SIGNATURES]
    info = {"kind": "generator", "image_size": list(module.image_size), "num_domains": module.num_domains,
            "signatures": list(GENERATOR_SIGNATURES)}
    return write_version_atomically(
        model_dir, version, lambda tmp: _save(module, tmp, model_name, requests, info), overwrite=overwrite
    )


def export_embedder(reid_model, export_dir, generator=None, model_name="da2s_embedder", version=None,
                    overwrite=False):
    """Exports the re-ID embedder's SavedModel (generator folded in for DA-2S); see `export_generator`."""
    module = EmbedderServing(reid_model, generator)
    model_dir = os.path.join(export_dir, model_name)
    version = next_version(model_dir) if version is None else version
    requests = [(key, _warmup_inputs(key, module.image_size)) for key in EMBEDDER_SIGNATURES]
    info = {"kind": "embedder", "image_size": list(module.image_size),
            "feature_dim": int(module.embed.get_concrete_function().structured_outputs["features"].shape[-1]),
            "two_stream": generator is not None, "signatures": list(EMBEDDER_SIGNATURES)}
    return write_version_atomically(
        model_dir, version, lambda tmp: _save(module, tmp, model_name, requests, info), overwrite=overwrite
    )


def write_models_config(export_dir, model_names, base_path="/models"):
    """Writes `<export_dir>/models.config` (TF Serving's --model_config_file, text-format ModelServerConfig).

    Args:
        export_dir: folder holding one sub-folder per model.
        model_names: the models to serve.
        base_path: where `export_dir` is mounted inside the server container (`-v ...:/models`).
    """
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    for name in model_names:
        entry = config.model_config_list.config.add()
        entry.name = name
        entry.base_path = f"{base_path.rstrip('/')}/{name}"
        entry.model_platform = "tensorflow"
    path = os.path.join(export_dir, "models.config")
    atomic_io.write_text(path, text_format.MessageToString(config))
    return path
