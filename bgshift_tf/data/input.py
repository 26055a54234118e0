"""tf.data pipelines over TFRecord shards: training (one domain or K mixed domains) and evaluation.

Every pipeline yields dict batches:
    image     float32 [B, H, W, 3] in [-1, 1]   (bilinear resize to `image_size`)
    mask      float32 [B, H, W, 1] in {0, 1}    (nearest resize; zeros where has_mask == 0)
    has_mask  int64 [B];  label, pid, camera, domain  int64 [B];  filename  string [B]
    split     string [B]                        (evaluation only)
Training: shards interleaved in parallel, records shuffled, one fused parallel map (parse, decode,
resize, random horizontal flip of image and mask together) on uint8, batch, cast to float, prefetch.
Evaluation: shards and records in stored order, no shuffle, flip or repeat, so features line up with
the manifest run after run.
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
    names = {os.path.basename(f) for f in files}
    for folder in sorted({os.path.dirname(os.path.abspath(f)) for f in files}):
        try:
            manifest = read_manifest(folder)
        except (FileNotFoundError, ValueError):
            continue
        with_mask = [
            entry.get("num_with_mask")
            for entry in manifest["splits"].values()
            if names & {shard["file"] for shard in entry["shards"]}
        ]
        if with_mask and all(count == 0 for count in with_mask):
            raise ValueError(
                f"require_mask=True but the shards in {folder!r} hold no masks (built without --mask_dir?)"
            )


def _resize(image, image_size, method):
    """Resizes uint8 [h, w, C] to `image_size`, staying uint8 (4x less memory to move than float
    through shuffle and batch); skips the work when the size already matches."""
    target = tf.constant(image_size, tf.int32)

    def resize():
        resized = tf.image.resize(image, target, method=method)
        return tf.cast(tf.clip_by_value(tf.round(tf.cast(resized, tf.float32)), 0.0, 255.0), tf.uint8)

    return tf.cond(tf.reduce_all(tf.shape(image)[:2] == target), lambda: image, resize)


def _flip_together(image, mask, seed):
    """Random horizontal flip of one example's image and mask with the same coin.

    Per example on uint8 inside the parallel decode map: costs ~10% of the pipeline here, whereas a
    batch-level `tf.where` over a broadcast [B, 1, 1, 1] condition on float batches cut it ~3x.
    """
    flip = tf.random.uniform([], seed=seed) < 0.5
    return tf.cond(flip, lambda: (tf.reverse(image, axis=[1]), tf.reverse(mask, axis=[1])), lambda: (image, mask))


def _decode(serialized, image_size, flip=False, seed=None):
    """Serialized example -> dict with image uint8 [H, W, 3] and mask uint8 [H, W, 1] in {0, 1},
    randomly flipped together when `flip`."""
    example = schema.parse_example(serialized)
    image = _resize(schema.decode_image(example["image"]), image_size, "bilinear")
    image.set_shape([*image_size, 3])
    mask = schema.decode_mask(example["mask"], example["height"], example["width"], dtype=tf.uint8)
    mask = _resize(mask, image_size, "nearest")
    mask.set_shape([*image_size, 1])
    if flip:
        image, mask = _flip_together(image, mask, seed)
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


def _train_examples(files, *, image_size, flip, shuffle_buffer, seed, require_mask, repeat, skip_corrupt, verify):
    """Unbatched decoded training examples (uint8), shuffled, flipped, optionally repeated."""
    files = _check_files(files)
    if require_mask:
        _check_masks_present(files)
    records = _records(files, training=True, seed=seed, skip_corrupt=skip_corrupt, verify=verify)
    records = records.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        records = records.repeat()
    # One fused parse + decode map; with require_mask the (rare) unmasked examples are decoded then
    # dropped, which is cheaper than a separate parse stage for every example.
    examples = records.map(
        lambda r: _decode(r, image_size, flip=flip, seed=seed),
        num_parallel_calls=AUTOTUNE,
        deterministic=False,
    )
    if require_mask:
        examples = examples.filter(lambda ex: ex["has_mask"] > 0)
    return examples


def to_model_range(pixels):
    """float32 pixels in [0, 255] -> [-1, 1] (the package's pixel convention)."""
    return pixels / 127.5 - 1.0


def to_uint8(values):
    """float32 in [-1, 1] -> uint8 in [0, 255] (rounded, clipped)."""
    return tf.cast(tf.round(tf.clip_by_value((values + 1.0) * 127.5, 0.0, 255.0)), tf.uint8)


def _to_float(batch, keep_split):
    """Batch-level: image uint8 -> float32 [-1, 1], mask uint8 -> float32 {0, 1}."""
    out = {key: batch[key] for key in OUTPUT_KEYS if key not in ("image", "mask")}
    out.update(image=to_model_range(tf.cast(batch["image"], tf.float32)), mask=tf.cast(batch["mask"], tf.float32))
    if keep_split:
        out["split"] = batch["split"]
    return out


def _batch(examples, batch_size, *, drop_remainder, keep_split=False):
    batches = examples.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=AUTOTUNE, deterministic=True)
    batches = batches.map(lambda b: _to_float(b, keep_split), num_parallel_calls=AUTOTUNE)
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
        seed: seeds the shard order, shuffle buffer and flips; parallel maps run with
            deterministic=False for speed, so element order is still not bit-reproducible.
        require_mask: keep only examples with a mask (SBSGAN training).
        skip_corrupt: skip unreadable records (counted and logged by `verify_shards`) instead of failing.
        verify: read the shards once first so a corrupt one is named (cheap next to decoding).
    """
    examples = _train_examples(
        files,
        image_size=tuple(image_size),
        flip=flip,
        shuffle_buffer=shuffle_buffer,
        seed=seed,
        require_mask=require_mask,
        repeat=repeat,
        skip_corrupt=skip_corrupt,
        verify=verify,
    )
    return _batch(examples, batch_size, drop_remainder=drop_remainder)


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
            flip=flip,
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
    return _batch(mixed, batch_size, drop_remainder=drop_remainder)


def make_eval_dataset(files, *, image_size=(256, 128), batch_size, skip_corrupt=False, verify=True) -> tf.data.Dataset:
    """Evaluation batches in stored order (shards in the given order, records in shard order), plus
    `split`; no shuffle, flip or repeat, the last batch may be smaller."""
    files = _check_files(files)
    records = _records(files, training=False, seed=None, skip_corrupt=skip_corrupt, verify=verify)
    examples = records.map(
        lambda r: _decode(r, tuple(image_size)),
        num_parallel_calls=AUTOTUNE,
        deterministic=True,
    )
    return _batch(examples, batch_size, drop_remainder=False, keep_split=True)
