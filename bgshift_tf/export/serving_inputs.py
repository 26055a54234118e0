"""In-graph checks and preprocessing of the serving inputs, and example inputs for each signature.

The image inputs are declared with unknown rank on purpose: a signature shape is not enforced when a
SavedModel signature is called (TF Serving and `tf.saved_model.load` both pass a [2, 2, 3] tensor
through), so rank, channel count, emptiness and the domain range are checked by in-graph assertions whose
messages name the input and echo its shape or values, before any convolution runs.
"""

import numpy as np
import tensorflow as tf

_PNG_MAGIC = b"\x89PNG"


def _checked(tensor, checks):
    """Returns `tensor` gated on in-graph assertions; only the first failing check reports.

    Args:
        tensor: the input to guard.
        checks: list of (ok, message, data): `ok` a scalar bool tensor computed with ops that cannot fail
            on a malformed input (see `_padded_shape`), `message` a string naming the input, `data` tensors
            echoed after it.

    Check i asserts `ok_i or not (ok_0 and ... ok_{i-1})`, so an input that breaks several rules (a [2, 2, 3]
    tensor has the wrong rank and a "wrong" channel count) gets exactly one message, the first one's.
    """
    assertions, all_previous_ok = [], tf.constant(True)
    for ok, message, data in checks:
        assertions.append(tf.debugging.Assert(ok | ~all_previous_ok, [message, *data], summarize=64))
        all_previous_ok = all_previous_ok & ok
    with tf.control_dependencies(assertions):
        return tf.identity(tensor)


def _padded_shape(tensor, rank):
    """tf.shape(tensor) padded with zeros to at least `rank` entries: safe to index whatever the input rank."""
    return tf.concat([tf.shape(tensor), tf.zeros([rank], tf.int32)], axis=0)


def check_images(images, name="images"):
    """Asserts `images` is [N, H, W, 3] with N, H, W >= 1; returns it with that static shape.

    Args:
        images: uint8 tensor of any rank (the serving input).
        name: the input's name, used in the error messages.
    """
    shape, padded = tf.shape(images), _padded_shape(images, 4)
    images = _checked(images, [
        (tf.equal(tf.size(shape), 4), f"`{name}` must have rank 4 [N, H, W, 3]; received shape:", [shape]),
        (tf.equal(padded[3], 3), f"`{name}` must have 3 channels (RGB) [N, H, W, 3]; received shape:", [shape]),
        (tf.reduce_all(padded[:3] > 0), f"`{name}` must not be empty (N, H, W >= 1); received shape:", [shape]),
    ])
    return tf.ensure_shape(images, [None, None, None, 3])


def check_domains(target_domain, batch_size, num_domains, name="target_domain"):
    """Asserts `target_domain` is int [N] with values in [0, num_domains); returns it as int32 [N]."""
    shape = tf.shape(target_domain)
    target_domain = _checked(target_domain, [
        (tf.equal(tf.size(shape), 1), f"`{name}` must have rank 1 [N]; received shape:", [shape]),
        (tf.equal(_padded_shape(target_domain, 1)[0], batch_size),
         f"`{name}` must have one entry per image; received length, number of images:",
         [_padded_shape(target_domain, 1)[0], batch_size]),
        (tf.reduce_all((target_domain >= 0) & (target_domain < num_domains)),
         f"`{name}` values must be in [0, {num_domains}); received:", [target_domain]),
    ])
    return tf.ensure_shape(tf.cast(target_domain, tf.int32), [None])


def resize_pixels(images, image_size):
    """uint8 or float [N, H, W, 3] in [0, 255] -> float32 [N, h, w, 3] in [0, 255] at `image_size` (h, w).

    Bilinear with half-pixel centres: an identity when (H, W) already equals (h, w). No antialiasing,
    because its op (ScaleAndTranslate) converts neither to TFLite nor to ONNX.
    """
    return tf.image.resize(tf.cast(images, tf.float32), image_size, method="bilinear")


def decode_image_bytes(image_bytes, image_size, name="image_bytes"):
    """string [N] of encoded JPEG/PNG images (any sizes) -> float32 [N, h, w, 3] pixels in [0, 255].

    Each image is decoded to RGB and resized on its own (the images may differ in size); bytes that are
    neither JPEG nor PNG fail an assertion naming `name` and echoing the first bytes (base64).
    """
    shape = tf.shape(image_bytes)
    image_bytes = _checked(image_bytes, [
        (tf.equal(tf.size(shape), 1),
         f"`{name}` must have rank 1 [N] (one encoded image per entry); received shape:", [shape]),
        (tf.size(image_bytes) > 0, f"`{name}` must hold at least one image; received shape:", [shape]),
    ])
    height, width = image_size

    def decode_one(encoded):
        is_image = tf.io.is_jpeg(encoded) | tf.equal(tf.strings.substr(encoded, 0, 4), _PNG_MAGIC)
        with tf.control_dependencies([
            tf.debugging.Assert(
                is_image,
                # Echoed as base64: raw non-UTF-8 bytes in an error message break its decoding upstream.
                [f"`{name}` holds bytes that are not an encoded JPEG or PNG image; their first 12 bytes, base64:",
                 tf.io.encode_base64(tf.strings.substr(encoded, 0, 12))],
            )
        ]):
            image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
        return resize_pixels(image[tf.newaxis], image_size)[0]

    return tf.map_fn(
        decode_one, tf.ensure_shape(image_bytes, [None]),
        fn_output_signature=tf.TensorSpec([height, width, 3], tf.float32),
    )



def signature_inputs(signature, images, num_domains=None):
    """Named numpy inputs for a signature from uint8 images [N, h, w, 3].

    *_jpeg signatures get the images JPEG-encoded (quality 95); style_transfer gets target domains cycling
    through 0..num_domains-1.
    """
    if signature.endswith("_jpeg"):
        return {"image_bytes": np.array([tf.io.encode_jpeg(image, quality=95).numpy() for image in images],
                                        dtype=object)}
    if signature == "style_transfer":
        return {"images": images, "target_domain": np.arange(len(images), dtype=np.int32) % num_domains}
    return {"images": images}
