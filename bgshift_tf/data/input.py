"""tf.data pipelines over TFRecord shards: training (one domain or K mixed domains) and evaluation.

Every pipeline yields dict batches:
    image     float32 [B, H, W, 3] in [-1, 1]   (bilinear resize to `image_size`)
    mask      float32 [B, H, W, 1] in {0, 1}    (nearest resize; zeros where has_mask == 0)
    has_mask  int64 [B];  label, pid, camera, domain  int64 [B];  filename  string [B]
    split     string [B]                        (evaluation only)
Training: shards interleaved in parallel, records shuffled, parallel decode, random horizontal flip of
image and mask together (vectorised over the batch), repeat, prefetch. Evaluation: shards and records
in stored order, no shuffle, flip or repeat, so features line up with the manifest run after run.
"""

import os

import tensorflow as tf

from bgshift_tf.data import schema
from bgshift_tf.data.shards import read_manifest, shard_files, verify_shards

AUTOTUNE = tf.data.AUTOTUNE
# Enough parallel shard readers to hide file latency; more only costs memory.
MAX_PARALLEL_SHARDS = 8
OUTPUT_KEYS = ("image", "mask", "has_mask", "label", "pid", "camera", "domain", "filename")


def _check_files(files):
    files = [os.fspath(f) for f in files]
    if not files:
        raise ValueError("input pipeline: got an empty list of TFRecord files")
    return files


def _check_masks_present(files):
    """With require_mask, an input without any mask would yield nothing: fail early and say why."""
    for folder in sorted({os.path.dirname(os.path.abspath(f)) for f in files}):
        try:
            manifest = read_manifest(folder)
        except (FileNotFoundError, ValueError):
            continue
        with_mask = [entry.get("num_with_mask") for entry in manifest["splits"].values()]
        if with_mask and all(count == 0 for count in with_mask):
            raise ValueError(f"require_mask=True but the shards in {folder!r} hold no masks (built without --mask_dir?)")


def _resize(image, image_size, method):
    """Resizes [h, w, C] to `image_size` as float32; skips the work when the size already matches."""
    target = tf.constant(image_size, tf.int32)
    return tf.cond(
        tf.reduce_all(tf.shape(image)[:2] == target),
        lambda: tf.cast(image, tf.float32),
        lambda: tf.cast(tf.image.resize(image, target, method=method), tf.float32),
    )


def _decode(example, image_size, fast_decode):
    """Parsed example -> dict with image float32 [H, W, 3] in [0, 255] and mask float32 [H, W, 1]."""
    image = _resize(schema.decode_image(example["image"], fast=fast_decode), image_size, "bilinear")
    image.set_shape([*image_size, 3])
    mask = schema.decode_mask(example["mask"], example["height"], example["width"])
    mask = _resize(mask, image_size, "nearest")
    mask.set_shape([*image_size, 1])
    out = {key: example[key] for key in OUTPUT_KEYS if key not in ("image", "mask")}
    out.update(image=image, mask=mask, split=example["split"])
    return out


def _records(files, *, training, seed, skip_corrupt, verify):
    if verify:
        verify_shards(files, skip_corrupt=skip_corrupt)

    def read_shard(path):
        records = tf.data.TFRecordDataset(path)
        # A reader cannot resync after a bad record: ignore_errors ends that shard at the error.
        return records.ignore_errors() if skip_corrupt else records

    shards = tf.data.Dataset.from_tensor_slices(files)
    if not training:
        return shards.flat_map(read_shard)
    return shards.shuffle(len(files), seed=seed).interleave(
        read_shard, cycle_length=min(len(files), MAX_PARALLEL_SHARDS), num_parallel_calls=AUTOTUNE, deterministic=False
    )


def _train_examples(files, *, image_size, shuffle_buffer, seed, require_mask, repeat, skip_corrupt, verify):
    """Unbatched decoded training examples (image in [0, 255]), shuffled, optionally repeated."""
    files = _check_files(files)
    if require_mask:
        _check_masks_present(files)
    records = _records(files, training=True, seed=seed, skip_corrupt=skip_corrupt, verify=verify)
    records = records.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        records = records.repeat()
    examples = records.map(schema.parse_example, num_parallel_calls=AUTOTUNE, deterministic=False)
    if require_mask:
        examples = examples.filter(lambda ex: ex["has_mask"] > 0)
    return examples.map(
        lambda ex: _decode(ex, image_size, fast_decode=True), num_parallel_calls=AUTOTUNE, deterministic=False
    )


def _finish_batch(batch, *, flip, seed, keep_split):
    """Batch-level, vectorised: random horizontal flip of image and mask together, pixels to [-1, 1]."""
    image, mask = batch["image"], batch["mask"]
    if flip:
        flipped = tf.random.uniform([tf.shape(image)[0]], seed=seed) < 0.5
        image = tf.where(flipped[:, None, None, None], tf.reverse(image, axis=[2]), image)
        mask = tf.where(flipped[:, None, None, None], tf.reverse(mask, axis=[2]), mask)
    out = {key: batch[key] for key in OUTPUT_KEYS if key not in ("image", "mask")}
    out.update(image=image / 127.5 - 1.0, mask=mask)
    if keep_split:
        out["split"] = batch["split"]
    return out


def _batch(examples, batch_size, *, flip, seed, drop_remainder, keep_split=False):
    batches = examples.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=AUTOTUNE, deterministic=True)
    batches = batches.map(
        lambda b: _finish_batch(b, flip=flip, seed=seed, keep_split=keep_split), num_parallel_calls=AUTOTUNE
    )
    return batches.prefetch(AUTOTUNE)


def make_train_dataset(
    files,
    *,
    image_size=(256, 128),
    batch_size,
    flip=True,
    shuffle_buffer=2048,
    seed=None,
    require_mask=False,
    repeat=True,
    drop_remainder=True,
    skip_corrupt=False,
    verify=True,
) -> tf.data.Dataset:
    """Training batches from TFRecord shards (see the module docstring for the batch dict).

    Args:
        files: shard paths (e.g. `shard_files(out_dir, "train")`).
        image_size: (H, W) output size.
        require_mask: keep only examples with a mask (SBSGAN training).
        skip_corrupt: skip unreadable records (counted and logged by `verify_shards`) instead of failing.
        verify: read the shards once first so a corrupt one is named (cheap next to decoding).
    """
    examples = _train_examples(
        files,
        image_size=tuple(image_size),
        shuffle_buffer=shuffle_buffer,
        seed=seed,
        require_mask=require_mask,
        repeat=repeat,
        skip_corrupt=skip_corrupt,
        verify=verify,
    )
    return _batch(examples, batch_size, flip=flip, seed=seed, drop_remainder=drop_remainder)


def make_multi_domain_dataset(
    dirs,
    *,
    split="train",
    image_size=(256, 128),
    batch_size,
    flip=True,
    shuffle_buffer=2048,
    seed=None,
    require_mask=False,
    repeat=True,
    drop_remainder=True,
    skip_corrupt=False,
    verify=True,
) -> tf.data.Dataset:
    """Training batches mixing K domains evenly: examples are drawn from the K folders in turn.

    `domain` is the folder's position in `dirs` (the stored domain index is overridden). Without
    repeat, the mix ends when the first domain runs out, so it stays even.
    """
    if not dirs:
        raise ValueError("make_multi_domain_dataset: `dirs` is empty")
    streams = []
    for position, folder in enumerate(dirs):
        examples = _train_examples(
            shard_files(folder, split),
            image_size=tuple(image_size),
            shuffle_buffer=shuffle_buffer,
            seed=None if seed is None else seed + position,
            require_mask=require_mask,
            repeat=repeat,
            skip_corrupt=skip_corrupt,
            verify=verify,
        )
        streams.append(examples.map(lambda ex, p=position: {**ex, "domain": tf.constant(p, tf.int64)}))
    order = tf.data.Dataset.range(len(streams)).repeat()
    mixed = tf.data.Dataset.choose_from_datasets(streams, order, stop_on_empty_dataset=True)
    return _batch(mixed, batch_size, flip=flip, seed=seed, drop_remainder=drop_remainder)


def make_eval_dataset(files, *, image_size=(256, 128), batch_size, skip_corrupt=False, verify=True) -> tf.data.Dataset:
    """Evaluation batches in stored order (shards in the given order, records in shard order), plus
    `split`; no shuffle, flip or repeat, the last batch may be smaller."""
    files = _check_files(files)
    records = _records(files, training=False, seed=None, skip_corrupt=skip_corrupt, verify=verify)
    examples = records.map(
        lambda r: _decode(schema.parse_example(r), tuple(image_size), fast_decode=False),
        num_parallel_calls=AUTOTUNE,
        deterministic=True,
    )
    return _batch(examples, batch_size, flip=False, seed=None, drop_remainder=False, keep_split=True)
