"""From a dataset on disk to TFRecord shards + manifest: the library behind `build_tfrecords`.

Steps: list the dataset (`datasets/*`), convert its masks (train masks are required when a mask folder
is given; query/gallery masks are added when present), shuffle the train split with a fixed seed (so
every shard holds many ids), then write each split with `shards.write_shards` and record counts, ids,
cameras and the build arguments in the manifest.
"""

import io
import os
import random

import numpy as np
from PIL import Image
from tqdm import tqdm

from bgshift_tf.core import errors
from bgshift_tf.data import masks, schema, shards
from bgshift_tf.data.datasets import cuhk03, dukemtmc, market1501
from bgshift_tf.data.records import SPLITS, DatasetSplits, ImageRecord, encode_jpeg, relabel

DATASETS = ("market1501", "dukemtmc", "cuhk03_np", "cuhk03_classic")


def load_dataset(
    dataset,
    data_dir,
    *,
    mask_dir=None,
    domain_index=0,
    domain_name=None,
    cuhk03_variant="detected",
    cuhk03_split=0,
    skip_bad_names=False,
) -> DatasetSplits:
    """Lists one dataset by its `--dataset` name (see `DATASETS`)."""
    if dataset == "market1501":
        return market1501.load(data_dir, mask_dir, domain_index, domain_name or dataset, skip_bad_names=skip_bad_names)
    if dataset == "dukemtmc":
        return dukemtmc.load(data_dir, mask_dir, domain_index, domain_name or dataset, skip_bad_names=skip_bad_names)
    if dataset == "cuhk03_np":
        return cuhk03.load_np(
            data_dir, cuhk03_variant, mask_dir, domain_index, domain_name or "cuhk03", skip_bad_names=skip_bad_names
        )
    if dataset == "cuhk03_classic":
        return cuhk03.load_classic(
            data_dir, cuhk03_split, cuhk03_variant, mask_dir, domain_index, domain_name or "cuhk03"
        )
    raise ValueError(f"`dataset` (flag --dataset) must be one of {DATASETS}. Received: {dataset!r}")


def read_image(record: ImageRecord) -> tuple[bytes, int, int]:
    """Returns (JPEG bytes, height, width): the file's own bytes when it is a JPEG, else re-encoded.

    Every pixel is decoded (not only the header), so a truncated or garbled file fails here, at build
    time, naming the file, rather than later inside training as a bare `jpeg::Uncompress failed`.

    Raises:
        errors.DataError naming the file when it cannot be decoded as an image.
    """
    data = record.image_bytes
    if data is None:
        with open(record.path, "rb") as f:
            data = f.read()
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            width, height = image.size
            if image.format != "JPEG":
                data = encode_jpeg(_rgb8(image))
    except (OSError, SyntaxError) as error:
        raise errors.DataError(
            f"image {record.path!r} cannot be decoded: {error} (replace or delete the file, then re-run)"
        ) from None
    return data, height, width


def _rgb8(image):
    """uint8 [H, W, 3] pixels of a decoded PIL image; 16-bit grayscale ("I;16*", or "I" holding 0..65535) is
    scaled down (PIL's own convert("RGB") clips it to white)."""
    if image.mode.startswith("I;16") or (image.mode == "I" and np.asarray(image).max() > 255):
        gray = np.round(np.asarray(image, dtype=np.float64) / 257.0).clip(0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    return np.asarray(image.convert("RGB"))


class _Examples:
    """Lazy sequence of schema field dicts for `write_shards` (images are read when indexed)."""

    def __init__(self, records, mask_bytes):
        self._records = records
        self._mask_bytes = mask_bytes

    def __len__(self):
        return len(self._records)

    def __getitem__(self, index):
        record = self._records[index]
        image, height, width = read_image(record)
        mask = self._mask_bytes.get(record.path, b"")
        return {
            "image": image,
            "mask": mask,
            "has_mask": int(bool(mask)),
            "pid": record.pid,
            "label": record.label,
            "camera": record.camera,
            "domain": record.domain,
            "domain_name": record.domain_name,
            "split": record.split,
            "filename": record.filename,
            "height": height,
            "width": width,
        }


def _image_size(record):
    data = record.image_bytes
    try:
        with Image.open(io.BytesIO(data) if data is not None else record.path) as image:
            width, height = image.size
    except (OSError, SyntaxError) as error:  # before its mask is checked against it: the image is at fault
        raise errors.DataError(
            f"image {record.path!r} cannot be decoded: {error} (replace or delete the file, then re-run)"
        ) from None
    return height, width


def collect_masks(records, *, required, skip_bad_masks, progress=True) -> tuple[list, dict, dict]:
    """Converts the masks of `records` to binary PNG bytes.

    Args:
        records: records with `mask_path` set (others are passed through without a mask).
        required: a missing mask is an error (train split) rather than "no mask" (query/gallery).
        skip_bad_masks: leave out images whose mask is bad (missing when required, unreadable,
            wrongly sized) instead of raising; they are counted.
    Returns:
        (kept records, {record.path: PNG bytes}, {"bad_mask": n skipped, "missing_mask": n without}).
    Raises:
        masks.MaskError naming the mask file (unless skip_bad_masks).
    """
    kept, mask_bytes = [], {}
    counts = {"bad_mask": 0, "missing_mask": 0}
    for record in tqdm(records, desc="masks", unit="img", disable=not progress, leave=False):
        if record.mask_path is None:
            kept.append(record)
            continue
        if not required and not os.path.exists(record.mask_path):
            counts["missing_mask"] += 1
            kept.append(record)
            continue
        try:
            mask_bytes[record.path] = masks.load_mask_png(record.mask_path, _image_size(record))
        except masks.MaskError as error:
            if not skip_bad_masks:
                raise masks.MaskError(
                    f"{error} (image {record.path!r}; pass --skip_bad_masks to skip such images)"
                ) from None
            counts["bad_mask"] += 1
            continue
        kept.append(record)
    return kept, mask_bytes, counts


def build_dataset_tfrecords(
    dataset,
    data_dir,
    out_dir,
    *,
    mask_dir=None,
    num_shards=8,
    overwrite=False,
    skip_bad_masks=False,
    skip_bad_names=False,
    domain_index=0,
    domain_name=None,
    cuhk03_variant="detected",
    cuhk03_split=0,
    seed=0,
    progress=True,
) -> dict:
    """Builds `<out_dir>/<name>-<split>-*.tfrecord` for the three splits and returns the manifest.

    Shards are named after `domain_name` when given (e.g. "synmarket"), else the dataset name. Split
    shard counts are capped by the split size so no shard is empty. Re-running resumes: complete
    shards are kept unless `overwrite`.

    CUHK03 classic with `cuhk03_split="all"`: the images are decoded once and each of the 20 splits is
    written to `cuhk03.classic_split_dir(out_dir, s)`; returns {split folder name: its manifest}.

    Raises:
        errors.ArgumentError for `num_shards` < 1; errors.DataError naming the split when one has no
        images, or naming the image or mask file that cannot be read.
    """
    if num_shards < 1:
        raise errors.ArgumentError(
            f"`num_shards` (flag --num_shards) must be >= 1. Received: num_shards={num_shards}"
        )
    build_args = {key: value for key, value in locals().items() if key != "progress"}
    build_args = {k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in build_args.items()}
    write = dict(num_shards=num_shards, overwrite=overwrite, skip_bad_masks=skip_bad_masks, seed=seed,
                 domain_index=domain_index, domain_name=domain_name, build_args=build_args, progress=progress)
    if dataset == "cuhk03_classic" and cuhk03_split == "all":
        all_splits = cuhk03.load_classic_all(
            data_dir, cuhk03_variant, mask_dir, domain_index, domain_name or "cuhk03"
        )
        manifests = {}
        for split, splits in enumerate(all_splits):
            split_dir = cuhk03.classic_split_dir(out_dir, split)
            manifests[os.path.basename(split_dir)] = _write_dataset(
                splits, split_dir, **dict(write, build_args=dict(build_args, cuhk03_split=split))
            )
        return manifests
    splits = load_dataset(dataset, data_dir, mask_dir=mask_dir, domain_index=domain_index, domain_name=domain_name,
                          cuhk03_variant=cuhk03_variant, cuhk03_split=cuhk03_split, skip_bad_names=skip_bad_names)
    return _write_dataset(splits, out_dir, **write)


def _write_dataset(
    splits, out_dir, *, num_shards, overwrite, skip_bad_masks, seed, domain_index, domain_name, build_args, progress
):
    """Writes the three splits of `splits` as shards + manifest in `out_dir` (see build_dataset_tfrecords)."""
    name = domain_name or splits.name
    skipped = dict(splits.skipped)
    summary = {}
    for split in SPLITS:
        records, mask_bytes, counts = collect_masks(
            splits.split(split), required=split == "train", skip_bad_masks=skip_bad_masks, progress=progress
        )
        skipped[f"{split}_bad_mask"] = counts["bad_mask"]
        skipped[f"{split}_missing_mask"] = counts["missing_mask"]
        if not records:
            left_out = f" ({counts['bad_mask']} left out for bad masks)" if counts["bad_mask"] else ""
            raise errors.DataError(
                f"{build_args['dataset']}: split {split!r} of {build_args['data_dir']!r} has no images{left_out}; "
                "every split needs at least one (check --data_dir)"
            )
        if split == "train":
            # Relabel again: skipped masks may have removed every image of an id.
            records = relabel(records)
            random.Random(seed).shuffle(records)
        with tqdm(total=len(records), desc=f"{name} {split}", unit="img", disable=not progress) as bar:
            shards.write_shards(
                _Examples(records, mask_bytes),
                out_dir,
                name,
                split,
                min(num_shards, len(records)),
                overwrite=overwrite,
                progress=bar.update,
            )
        summary[split] = {
            "num_ids": len({r.pid for r in records}),
            "ids": sorted({r.pid for r in records}),
            "cameras": sorted({r.camera for r in records}),
            "num_with_mask": len(mask_bytes),
        }
    manifest = shards.read_manifest(out_dir)
    for split, info in summary.items():
        manifest["splits"][split].update(info)
    return shards.update_manifest(
        out_dir,
        {
            "splits": manifest["splits"],
            "domain": domain_index,
            "domain_name": name,
            "num_train_ids": summary["train"]["num_ids"],
            "skipped": skipped,
            "build_args": build_args,
            "schema_version": schema.SCHEMA_VERSION,
        },
    )
