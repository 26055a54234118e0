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
Stored-order readers (`make_record_batches` for generation, `make_paired_train_dataset` for DA-2S pairs)
resize in float without rounding and keep their own batch dicts (documented on each).
"""

import os

import numpy as np
import tensorflow as tf

from bgshift_tf.data import images, schema
from bgshift_tf.data.shards import naming_corrupt_shards, read_manifest, shard_files, verify_shards

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


def _flip_together(image, mask, seed):
    """Random horizontal flip of one example's image and mask with the same coin.

    Per example on uint8 inside the parallel decode map: costs ~10% of the pipeline here, whereas a
    batch-level `tf.where` over a broadcast [B, 1, 1, 1] condition on float batches cut it ~3x.
    """
    flip = tf.random.uniform([], seed=seed) < 0.5
    return tf.cond(flip, lambda: (tf.reverse(image, axis=[1]), tf.reverse(mask, axis=[1])), lambda: (image, mask))


def decode_uint8_image(encoded, image_size):
    """Encoded JPEG -> uint8 [H, W, 3] at `image_size` (bilinear, rounded): the training / evaluation image."""
    image = images.resize_uint8(schema.decode_image(encoded), image_size, "bilinear")
    image.set_shape([*image_size, 3])
    return image


def _decode(serialized, image_size, flip=False, seed=None):
    """Serialized example -> dict with image uint8 [H, W, 3] and mask uint8 [H, W, 1] in {0, 1},
    randomly flipped together when `flip`."""
    example = schema.parse_example(serialized)
    image = decode_uint8_image(example["image"], image_size)
    mask = schema.decode_mask(example["mask"], example["height"], example["width"], dtype=tf.uint8)
    mask = images.resize_uint8(mask, image_size, "nearest")
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


def _to_float(batch, keep_split):
    """Batch-level: image uint8 -> float32 [-1, 1], mask uint8 -> float32 {0, 1}."""
    out = {key: batch[key] for key in OUTPUT_KEYS if key not in ("image", "mask")}
    out.update(image=images.to_model_range(tf.cast(batch["image"], tf.float32)), mask=tf.cast(batch["mask"], tf.float32))
    if keep_split:
        out["split"] = batch["split"]
    return out


def _batch(examples, batch_size, *, drop_remainder, keep_split=False):
    batches = examples.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=AUTOTUNE, deterministic=True)
    batches = batches.map(lambda b: _to_float(b, keep_split), num_parallel_calls=AUTOTUNE)
    return batches.prefetch(AUTOTUNE)


# The options of both training pipelines (`make_train_dataset`, `make_multi_domain_dataset`) and their
# defaults: output (H, W); random horizontal flips; shuffle buffer; keep only examples with a mask (SBSGAN
# training); repeat forever; skip unreadable records (counted and logged by `verify_shards`) instead of
# failing; read the shards once first so a corrupt one is named (cheap next to decoding).
TRAIN_OPTIONS = {
    "image_size": (256, 128),
    "flip": True,
    "shuffle_buffer": 2048,
    "require_mask": False,
    "repeat": True,
    "skip_corrupt": False,
    "verify": True,
}


def _train_options(function_name, options):
    """TRAIN_OPTIONS updated with `options` (image_size as a tuple); an unknown option is a TypeError."""
    unknown = sorted(set(options) - set(TRAIN_OPTIONS))
    if unknown:
        raise TypeError(f"{function_name}() got an unexpected keyword argument {unknown[0]!r}; its options: "
                        f"{sorted(TRAIN_OPTIONS)}")
    merged = {**TRAIN_OPTIONS, **options}
    merged["image_size"] = tuple(merged["image_size"])
    return merged


def make_train_dataset(files, *, batch_size, seed=None, drop_remainder=True, **options) -> tf.data.Dataset:
    """Training batches from TFRecord shards (see the module docstring for the batch dict).

    Args:
        files: shard paths (e.g. `shard_files(out_dir, "train")`).
        batch_size: examples per batch.
        seed: seeds the shard order, shuffle buffer and flips; parallel maps run with
            deterministic=False for speed, so element order is still not bit-reproducible.
        drop_remainder: drop a last, smaller batch.
        **options: the keys of TRAIN_OPTIONS (image_size, flip, shuffle_buffer, require_mask, repeat,
            skip_corrupt, verify), defaults there.
    """
    examples = _train_examples(files, seed=seed, **_train_options("make_train_dataset", options))
    return _batch(examples, batch_size, drop_remainder=drop_remainder)


def make_multi_domain_dataset(dirs, *, split="train", batch_size, seed=None, drop_remainder=True,
                              **options) -> tf.data.Dataset:
    """Training batches mixing K domains evenly: examples are drawn from the K folders in turn.

    `domain` is the folder's position in `dirs` (the stored domain index is overridden). Without
    repeat, the mix ends when the first domain runs out, so it stays even. Arguments as
    `make_train_dataset`'s; folder k's stream is seeded `seed + k`.
    """
    options = _train_options("make_multi_domain_dataset", options)
    if not dirs:
        raise ValueError("make_multi_domain_dataset: `dirs` is empty")
    streams = []
    for position, folder in enumerate(dirs):
        examples = _train_examples(shard_files(folder, split), seed=None if seed is None else seed + position,
                                   **options)
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


# === Readers in stored order (generation, DA-2S pairs, checks) ===


def decode_model_image(encoded, image_size):
    """Encoded JPEG -> float32 [H, W, 3] in [-1, 1], resized bilinearly to `image_size` (not rounded)."""
    return images.to_model_range(images.resize(schema.decode_image(encoded), image_size))


def make_record_batches(files, *, image_size, batch_size):
    """Every stored field of every record, batched in stored order (no shuffle, flip or repeat), plus
    `pixels` float32 [B, H, W, 3] in [-1, 1] and `mask01` float32 [B, H, W, 1] in {0, 1} at `image_size`
    (the image resized bilinearly, the mask nearest; zeros where has_mask == 0)."""

    records = tf.data.TFRecordDataset(_check_files(files))
    return records.map(lambda r: decode_record(r, image_size), num_parallel_calls=AUTOTUNE,
                       deterministic=True).batch(batch_size).prefetch(2)


def decode_record(serialized, image_size):
    """One record's stored fields plus `pixels` float32 [H, W, 3] in [-1, 1] and `mask01` float32 [H, W, 1]
    in {0, 1} at `image_size` (see `make_record_batches`, which maps this over a file)."""
    fields = schema.parse_example(serialized)
    mask = schema.decode_mask(fields["mask"], fields["height"], fields["width"])
    return {**fields, "pixels": decode_model_image(fields["image"], image_size),
            "mask01": images.resize(mask, image_size, "nearest")}


def stored_image_size(files):
    """(height, width) stored in the first record of `files` (generated folders hold one size)."""
    for record in tf.data.TFRecordDataset(_check_files(files)).take(1):
        fields = schema.parse_example(record)
        return int(fields["height"]), int(fields["width"])
    raise ValueError(f"no records in {list(files)[:3]}")


def scan_records(files):
    """Reads only `filename` and `label` of every record, in stored order.

    Returns:
      (filenames: list[str], labels: np.ndarray int64 [num_records]).
    """
    spec = {key: schema.FEATURE_SPEC[key] for key in ("filename", "label")}
    records = tf.data.TFRecordDataset(list(files)).batch(4096)
    filenames, labels = [], []
    with naming_corrupt_shards(files):
        for batch in records.map(lambda r: tf.io.parse_example(r, spec)):
            filenames.extend(name.decode("utf-8") for name in batch["filename"].numpy())
            labels.append(batch["label"].numpy())
    return filenames, (np.concatenate(labels) if labels else np.zeros([0], np.int64))


def check_paired_files(files1, files2, dir1, dir2):
    """Checks that two generated folders hold the same images in the same order; returns their labels."""
    if len(files1) != len(files2):
        raise ValueError(
            f"DA-2S pairs need the same shard layout: {dir1!r} has {len(files1)} shards, {dir2!r} has "
            f"{len(files2)}"
        )
    names1, labels = scan_records(files1)
    names2, _ = scan_records(files2)
    if names1 != names2:
        mismatch = next(
            (i for i, (a, b) in enumerate(zip(names1, names2)) if a != b), min(len(names1), len(names2))
        )
        first = names1[mismatch] if mismatch < len(names1) else "<end>"
        second = names2[mismatch] if mismatch < len(names2) else "<end>"
        raise ValueError(
            f"DA-2S pairs are matched by filename in stored order, but record {mismatch} is {first!r} in "
            f"{dir1!r} and {second!r} in {dir2!r} ({len(names1)} vs {len(names2)} records)"
        )
    return labels


def make_paired_train_dataset(
    stream1_dir, stream2_dir, *, split="train", image_size=(256, 128), batch_size, flip=True,
    shuffle_buffer=2048, seed=None, check=True,
):
    """DA-2S training batches of (soft-mask, style-transferred) pairs, repeating forever.

    The raw records of both folders are zipped in stored order and the small encoded pairs shuffled
    (a few kB each, not 2 x 384 kB of decoded 256x128 images); both are then decoded and the two images
    of a pair flipped together.

    Args:
      stream1_dir, stream2_dir: TFRecord folders with the same shard layout and record order.
      check: scan both folders once and fail if any filename differs (a per-record assert stays on).

    Returns:
      tf.data.Dataset of dicts: stream1, stream2 float32 [B, H, W, 3] in [-1, 1] (flipped together),
      label int64 [B], filename string [B].
    """
    files1, files2 = shard_files(stream1_dir, split), shard_files(stream2_dir, split)
    if check:
        check_paired_files(files1, files2, stream1_dir, stream2_dir)
    image_size = tuple(image_size)

    def decode(record1, record2):
        first, second = schema.parse_example(record1), schema.parse_example(record2)
        same = tf.debugging.assert_equal(
            first["filename"], second["filename"],
            message=f"DA-2S pair file names differ between {stream1_dir} and {stream2_dir}",
        )
        with tf.control_dependencies([same]):
            return {
                "stream1": decode_model_image(first["image"], image_size),
                "stream2": decode_model_image(second["image"], image_size),
                "label": first["label"],
                "filename": first["filename"],
            }

    def flip_pairs(batch):
        if not flip:
            return batch
        flipped = (tf.random.uniform([tf.shape(batch["stream1"])[0]], seed=seed) < 0.5)[:, None, None, None]
        out = dict(batch)
        for key in ("stream1", "stream2"):
            out[key] = tf.where(flipped, tf.reverse(batch[key], axis=[2]), batch[key])
        return out

    pairs = tf.data.Dataset.zip(tf.data.TFRecordDataset(files1), tf.data.TFRecordDataset(files2))
    pairs = pairs.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat()
    batches = pairs.map(decode, num_parallel_calls=AUTOTUNE).batch(batch_size, drop_remainder=True)
    return batches.map(flip_pairs, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)
