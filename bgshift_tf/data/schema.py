"""The one TFRecord feature spec of bgshift_tf: writing (`serialize_example`) and parsing side by side.

One `tf.train.Example` per image:
    image        bytes   encoded JPEG (the file's own bytes when the source is a JPEG)
    mask         bytes   encoded PNG, single channel, values {0, 255}; b"" when the image has none
    has_mask     int64   1 if `mask` holds a mask, else 0
    pid          int64   original person id
    label        int64   training label 0..N-1 (train split), -1 otherwise
    camera       int64   original camera id (1-based)
    domain       int64   domain index (position among the GAN's K domains)
    domain_name  bytes   e.g. b"market1501"
    split        bytes   b"train" | b"query" | b"gallery"
    filename     bytes   image base name, e.g. b"0002_c1s1_000451_03.jpg"
    height       int64   image height in pixels
    width        int64   image width in pixels
"""

import tensorflow as tf

# Bump when a field is added, removed or changes meaning; manifests record it and readers check it.
SCHEMA_VERSION = 1

BYTES_FIELDS = ("image", "mask", "domain_name", "split", "filename")
INT_FIELDS = ("has_mask", "pid", "label", "camera", "domain", "height", "width")
FIELDS = BYTES_FIELDS + INT_FIELDS

FEATURE_SPEC = {
    **{name: tf.io.FixedLenFeature([], tf.string, default_value=b"") for name in BYTES_FIELDS},
    **{name: tf.io.FixedLenFeature([], tf.int64) for name in INT_FIELDS},
}


def _as_bytes(name, value):
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    raise TypeError(f"schema field {name!r} must be bytes or str. Received: {type(value).__name__}")


def serialize_example(fields: dict) -> bytes:
    """Serializes one image's fields (all of `FIELDS`, str accepted for byte fields) to Example bytes.

    Raises:
        ValueError naming missing or unknown fields; TypeError naming a field of the wrong type.
    """
    missing = sorted(set(FIELDS) - set(fields))
    unknown = sorted(set(fields) - set(FIELDS))
    if missing or unknown:
        raise ValueError(
            f"serialize_example: missing fields {missing}, unknown fields {unknown}; expected {list(FIELDS)}"
        )
    feature = {}
    for name in BYTES_FIELDS:
        feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[_as_bytes(name, fields[name])]))
    for name in INT_FIELDS:
        value = fields[name]
        if isinstance(value, bool) or not hasattr(value, "__index__"):
            raise TypeError(f"schema field {name!r} must be an integer. Received: {value!r}")
        feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def parse_example(serialized) -> dict:
    """Parses serialized Example(s) into raw tensors (images and masks still encoded).

    Args:
        serialized: string scalar (one example) or string [B] (a batch).
    Returns:
        dict over `FIELDS`: tf.string for byte fields, tf.int64 for the others, shape [] or [B].
    """
    serialized = tf.convert_to_tensor(serialized, dtype=tf.string)
    if serialized.shape.rank == 0:
        return tf.io.parse_single_example(serialized, FEATURE_SPEC)
    return tf.io.parse_example(serialized, FEATURE_SPEC)


def decode_image(encoded) -> tf.Tensor:
    """Encoded JPEG (scalar string) -> uint8 [H, W, 3].

    The default (accurate integer) IDCT: dct_method="INTEGER_FAST" measured no faster here
    (libjpeg-turbo vectorises both), so there is one decoder for training and evaluation.
    """
    return tf.io.decode_jpeg(encoded, channels=3)


def decode_mask(encoded, height, width, dtype=tf.float32) -> tf.Tensor:
    """Encoded PNG mask (scalar string, b"" = none) -> `dtype` [height, width, 1] in {0, 1} (zeros if none)."""
    return tf.cond(
        tf.strings.length(encoded) > 0,
        lambda: tf.cast(tf.io.decode_png(encoded, channels=1) > 127, dtype),
        lambda: tf.zeros(tf.stack([height, width, 1]), dtype),
    )


# === Feature records (the batch feature job's output, the gallery index's input) ===
# One `tf.train.Example` per image of an embedded split, in a shard folder whose manifest says
# `"content": "features"` and `"feature_dim"`:
#     feature      float   [feature_dim] the embedder's feature
#     pid, camera  int64   as in the image record;  filename, split, domain_name  bytes  as in the image record
FEATURE_BYTES_FIELDS = ("filename", "split", "domain_name")
FEATURE_INT_FIELDS = ("pid", "camera")
FEATURES_CONTENT = "features"


def serialize_feature_example(fields: dict, feature) -> bytes:
    """Serializes an image's feature [D] (float) with its `FEATURE_*_FIELDS` (bytes or str, ints)."""
    feature_map = {"feature": tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in feature]))}
    for name in FEATURE_BYTES_FIELDS:
        feature_map[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[_as_bytes(name, fields[name])]))
    for name in FEATURE_INT_FIELDS:
        feature_map[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(fields[name])]))
    return tf.train.Example(features=tf.train.Features(feature=feature_map)).SerializeToString()


def feature_spec(feature_dim: int) -> dict:
    """The parsing spec of feature records with `feature_dim`-d features."""
    return {"feature": tf.io.FixedLenFeature([feature_dim], tf.float32),
            **{name: tf.io.FixedLenFeature([], tf.string) for name in FEATURE_BYTES_FIELDS},
            **{name: tf.io.FixedLenFeature([], tf.int64) for name in FEATURE_INT_FIELDS}}
