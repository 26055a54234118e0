"""Feature shard folders: the feature records of `schema` (one per image) in `shards`' layout and manifest.

    <folder>/<dataset>-<split>-00000-of-000NN.tfrecord   feature records, in the image shards' order
    <folder>/manifest.json   the shard manifest (`shards.read_manifest` checks it) plus
                             "content": "features", "feature_dim": D, "model": {...} (the embedder export)

Written by the batch feature job (`export.beam_jobs`); read here for the gallery index and evaluation.
"""

import numpy as np
import tensorflow as tf

from bgshift_tf.core import errors
from bgshift_tf.data import schema, shards


def read_feature_manifest(folder) -> dict:
    """The folder's manifest, checked to describe feature shards (a `errors.DataError` naming it if not)."""
    manifest = shards.read_manifest(folder)
    if manifest.get("content") != schema.FEATURES_CONTENT or not isinstance(manifest.get("feature_dim"), int):
        raise errors.DataError(
            f"TFRecord folder {folder!r} does not hold feature shards (its manifest has no \"content\": "
            f"\"features\" and \"feature_dim\"); make them with `python -m bgshift_tf.batch_infer features`")
    return manifest


def read_feature_shards(folder, split) -> dict:
    """Every feature record of `split` in stored order.

    Returns:
      {"features": float32 [N, D], "pids": int64 [N], "camids": int64 [N], "filenames": str [N],
       "manifest": the folder's manifest}.
    """
    manifest = read_feature_manifest(folder)
    files = shards.shard_files(folder, split)
    spec = schema.feature_spec(manifest["feature_dim"])
    parts = {"feature": [], "pid": [], "camera": [], "filename": []}
    with shards.naming_corrupt_shards(files):
        for batch in tf.data.TFRecordDataset(files).batch(4096).map(lambda r: tf.io.parse_example(r, spec)):
            for key in parts:
                parts[key].append(batch[key].numpy())
    if not parts["feature"]:
        raise errors.DataError(f"split {split!r} of feature folder {folder!r} holds no record")
    return {"features": np.concatenate(parts["feature"]).astype(np.float32),
            "pids": np.concatenate(parts["pid"]).astype(np.int64),
            "camids": np.concatenate(parts["camera"]).astype(np.int64),
            "filenames": np.array([name.decode() for name in np.concatenate(parts["filename"])]),
            "manifest": manifest}
