"""Query/gallery features of one split for `evaluation.run.evaluate_run`: the TFRecords a flag names,
extracted with an embedding function, or reused from a feature cache when the inputs match.

`split_features` caches a split's `FeatureSet` as `<cache_dir>/<split>_features.npz` under a key that holds
the weights' identity (the caller's `cache_id`: run folder, `checkpoint_identity`, compute policy), the
content's identity (each TFRecord file's size and mtime_ns, a shard folder's manifest entry) and the
settings (flip averaging, image size), so a rebuilt folder or a newer checkpoint is extracted again.
"""

import glob
import json
import os

import numpy as np

from bgshift_tf.core import atomic_io, errors
from bgshift_tf.data.input import make_eval_dataset
from bgshift_tf.data.shards import read_manifest, shard_files, verify_shards
from bgshift_tf.evaluation.features import SOFT_MASK_KEY, FeatureSet, extract_features, with_soft_mask


def resolve_tfrecords(spec, split, flag_name):
    """TFRecord paths from a flag value: a shard folder (its manifest's `split` shards) or a comma list
    of files / glob patterns (each pattern expanded in sorted order)."""
    if isinstance(spec, (list, tuple)):
        entries = [os.fspath(entry) for entry in spec]
    else:
        entries = [entry.strip() for entry in str(spec).split(",") if entry.strip()]
    if len(entries) == 1 and os.path.isdir(entries[0]):
        return shard_files(entries[0], split)
    files = []
    for entry in entries:
        matches = sorted(glob.glob(entry)) if glob.has_magic(entry) else [entry]
        missing = [path for path in matches if not os.path.isfile(path)]
        if not matches or missing:
            raise ValueError(f"`{flag_name}`: no TFRecord file at {entry!r}. Received: {flag_name}={spec!r}")
        files.extend(matches)
    if not files:
        raise ValueError(f"`{flag_name}` names no TFRecord file. Received: {flag_name}={spec!r}")
    return files


def file_identity(paths):
    """[[absolute path, size, mtime_ns], ...] of `paths`: changes when a file is rewritten in place."""
    identity = []
    for path in paths:
        stat = os.stat(path)
        identity.append([os.path.abspath(path), stat.st_size, stat.st_mtime_ns])
    return identity


def _tfrecords_identity(spec, split, files):
    """The cache identity of a split's TFRecords: its files' identities, plus the split's manifest entry
    when `spec` is a shard folder (counts and shard list, which a rebuild may change)."""
    if not (isinstance(spec, (str, os.PathLike)) and os.path.isdir(spec)):
        return file_identity(files)
    return [read_manifest(spec)["splits"].get(split), *file_identity(files)]


def checkpoint_identity(checkpoint):
    """The cache identity of a checkpoint prefix: the prefix and its files' sizes and mtimes (None: no
    checkpoint)."""
    if checkpoint is None:
        return None
    return [checkpoint, *file_identity(sorted(glob.glob(f"{glob.escape(checkpoint)}.*")))]


def _cached_features(cache_path, key, extract):
    """Loads the FeatureSet cached at `cache_path` when its key matches, else extracts and caches it."""
    if cache_path and os.path.isfile(cache_path):
        with np.load(cache_path, allow_pickle=False) as cached:
            if str(cached["key"]) == key:
                return FeatureSet(*(cached[name] for name in FeatureSet._fields))
    features = extract()
    if cache_path:
        os.makedirs(os.path.dirname(os.path.abspath(cache_path)), exist_ok=True)
        tmp_path = f"{cache_path}.tmp-{os.getpid()}.npz"
        np.savez(tmp_path, key=key, **features._asdict())
        os.replace(tmp_path, cache_path)
    return features


def split_features(split, tfrecords, soft_mask_tfrecords, *, embed_fn, uses_soft_mask, image_size, batch_size,
                    flip_average, progress, cache_dir, cache_id):
    """(FeatureSet, its TFRecord files) of one split, from the cache in `cache_dir` when the inputs match.

    `cache_id` names the weights (run folder, checkpoint identity); the cache key adds the files' identities
    (`_tfrecords_identity`) and the settings.
    """
    files = resolve_tfrecords(tfrecords, split, f"{split}_tfrecords")
    soft_files = resolve_tfrecords(soft_mask_tfrecords, split, f"soft_mask_{split}_tfrecords") if uses_soft_mask else []

    def eval_batches(paths, flag, spec):
        """(batches, number of batches): the shards are checked once here, which also counts them; a
        DataError naming the flag and shards when they hold no record."""
        num_records = verify_shards(paths)["num_records"]
        if num_records == 0:
            raise errors.DataError(
                f"the {split} split is empty: {flag}={spec!r} names {len(paths)} shard(s) holding 0 records "
                f"({', '.join(paths)}); build it from a folder with {split} images")
        batches = make_eval_dataset(paths, image_size=image_size, batch_size=batch_size, verify=False)
        return batches, -(-num_records // batch_size)

    def extract():
        batches, num_batches = eval_batches(files, f"{split}_tfrecords", tfrecords)
        if uses_soft_mask:
            soft_batches = eval_batches(soft_files, f"soft_mask_{split}_tfrecords", soft_mask_tfrecords)[0]
            batches = with_soft_mask(batches, soft_batches)
        return extract_features(
            batches, embed_fn, flip_average=flip_average, num_batches=num_batches, progress=progress,
            description=f"{split} features", image_keys=("image", SOFT_MASK_KEY) if uses_soft_mask else ("image",),
        )

    key = json.dumps([*cache_id, _tfrecords_identity(tfrecords, split, files),
                      _tfrecords_identity(soft_mask_tfrecords, split, soft_files), flip_average, list(image_size)],
                     default=atomic_io.json_default)
    cache_path = os.path.join(cache_dir, f"{split}_features.npz") if cache_dir else None
    return _cached_features(cache_path, key, extract), files
