"""Body masks for images that have none: a semantic segmenter's person classes -> a mask folder.

The library behind `make_masks`. It writes exactly the folder `build_tfrecords --mask_dir` reads
(`data/masks.py`): the dataset's own loader lays out the mask paths (mirrored split folders, the image's
stem, `.png`), and every mask is a single-channel PNG, 0 = background and 255 = body, at its image's size.

Segmenter: a keras-hub `ImageSegmenter` preset, given as a built-in preset name, a `kaggle://` or `hf://`
handle, or a local preset folder (what `save_to_preset` writes), loaded with
`keras_hub.models.ImageSegmenter.from_preset`. The default is DeepLabV3+ (ResNet-50) trained on Pascal
VOC, whose class 15 is "person"; other label sets name their body classes in `person_classes` (a human
parser's body parts are many classes). keras-hub is an optional dependency (`pip install .[masks]`).

Each split goes through one tf.data pipeline:
    read + decode (PIL, in a generator: a bad image ends the stream and is raised naming the file, or is
    skipped and counted) -> resize to the segmenter's input size (a plain stretch, undone exactly on the
    way back) -> batch -> the preset's own preprocessing (scale / offset) -> predict -> argmax over classes
    -> pixel in `person_classes` -> resize back to the image's own size (nearest) -> PNG, written atomically.
Re-running resumes: masks are written atomically, so a mask on disk is complete and is kept. The settings
that decide a mask's content are recorded before the first mask is written, and a later run with other
settings into the same folder stops instead of mixing masks of two segmenters.

Beside the masks:
    <out_dir>/make_masks.json    settings, then per split: masks written / kept, mean coverage (fraction of
                                 the image marked body) and the images below `min_coverage` (person
                                 missed?) or above `max_coverage` (background taken for body?), by file
    <out_dir>/contact_sheet.png  image | mask for a few random images of each split, drawn by the caller's
                                 `contact_sheet` (`report.grids.mask_contact_sheet`)
"""

import io
import json
import os
import random

import numpy as np
import tensorflow as tf
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from bgshift_tf.core import atomic_io
from bgshift_tf.data import masks
from bgshift_tf.data.build import load_dataset
from bgshift_tf.data.records import SPLITS

DEFAULT_SEGMENTER = "deeplab_v3_plus_resnet50_pascalvoc"
# Kaggle Models handle of DEFAULT_SEGMENTER in keras-hub 0.32 (what `from_preset` downloads).
DEFAULT_SEGMENTER_HANDLE = "keras/deeplabv3plus/keras/deeplab_v3_plus_resnet50_pascalvoc/4"
PASCAL_VOC_PERSON = 15
SUMMARY_FILE = "make_masks.json"
CONTACT_SHEET_FILE = "contact_sheet.png"
CONTACT_SHEET_CELL = (128, 64)  # (height, width) of each image / mask cell


class BadImageError(ValueError):
    """An image that cannot be decoded; the message names the file."""


def load_segmenter(segmenter: str):
    """Loads a keras-hub `ImageSegmenter` from a preset name, `kaggle://` / `hf://` handle or folder.

    Raises:
        ImportError when keras-hub is missing; ValueError naming `segmenter` (flag --segmenter) when the
        preset cannot be loaded, saying how to pass a local preset folder instead.
    """
    try:
        import keras_hub
    except ImportError:
        raise ImportError(
            "make_masks needs keras-hub, an optional dependency: pip install 'bgshift_tf[masks]' "
            "(or pip install keras-hub)."
        ) from None
    try:
        return keras_hub.models.ImageSegmenter.from_preset(segmenter)
    except Exception as error:  # from_preset fails in many ways: unknown name, no network, bad files
        raise ValueError(
            f"cannot load the segmenter preset {segmenter!r} (flag --segmenter): {type(error).__name__}: {error}\n"
            "Presets are downloaded from Kaggle / Hugging Face on first use. Without network access, fetch the "
            "preset on a machine that has it, e.g. `kagglehub.model_download("
            f"{DEFAULT_SEGMENTER_HANDLE!r})` for the default, or `keras_hub.models.ImageSegmenter.from_preset("
            "name).save_to_preset(folder)`, copy the folder (config.json, model.weights.h5, preprocessor.json, "
            "...) and pass it: --segmenter=/path/to/preset_folder."
        ) from error


def input_size(segmenter, image_size=None) -> tuple[int, int]:
    """(height, width) images are resized to: `image_size` if given, else the preset's image converter
    size, else the model's fixed input size.

    Raises:
        ValueError when none of them gives a size, or `image_size` is not two positive ints.
    """
    if image_size is not None:
        size = tuple(int(v) for v in image_size)
        if len(size) != 2 or min(size) < 1:
            raise ValueError(
                f"`image_size` (flag --image_size) must be HEIGHT,WIDTH (positive). Received: {image_size!r}"
            )
        return size
    converter = getattr(segmenter.preprocessor, "image_converter", None)
    if getattr(converter, "image_size", None):
        return tuple(int(v) for v in converter.image_size)
    fixed = tuple(segmenter.input_shape[1:3])
    if None not in fixed:
        return fixed
    raise ValueError(
        f"segmenter {segmenter.name!r} fixes no input size (no image converter size, input shape "
        f"{segmenter.input_shape}); pass `image_size` (flag --image_size=HEIGHT,WIDTH)."
    )


def check_person_classes(person_classes, num_classes: int) -> tuple[int, ...]:
    """Returns the sorted unique class ids; raises ValueError echoing them unless all lie in 0..num_classes-1."""
    classes = tuple(sorted({int(c) for c in person_classes}))
    if not classes or classes[0] < 0 or classes[-1] >= num_classes:
        raise ValueError(
            f"`person_classes` (flag --person_classes) must be non-empty class ids in 0..{num_classes - 1} "
            f"(the segmenter predicts {num_classes} classes). Received: {list(person_classes)}"
        )
    return classes


def body_mask_fn(segmenter, person_classes, size):
    """A tf.function: preprocessed float [B, *size, 3] -> uint8 [B, h, w] masks (0 / 255) at the
    segmenter's output resolution; a pixel is body when its argmax class is in `person_classes`."""
    classes = tf.constant(person_classes, tf.int64)

    # Any batch size: one trace serves the last, smaller batch of every split too. The image size is static
    # (DeepLabV3's upsampling layers need it).
    @tf.function(input_signature=[tf.TensorSpec([None, *size, 3], tf.float32)])
    def body_masks(images):
        labels = tf.argmax(segmenter(images, training=False), axis=-1)
        body = tf.reduce_any(labels[..., None] == classes, axis=-1)
        return tf.cast(body, tf.uint8) * 255

    return body_masks


def read_rgb(record) -> np.ndarray:
    """Decodes a record's image (file, or in-memory bytes) to uint8 [H, W, 3].

    Raises:
        BadImageError naming the image when it cannot be read or decoded.
    """
    source = io.BytesIO(record.image_bytes) if record.image_bytes is not None else record.path
    try:
        with Image.open(source) as image:
            return np.asarray(image.convert("RGB"))  # convert() decodes it all: truncated files fail here
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise BadImageError(f"image {record.path!r} cannot be decoded: {error}") from None


def _image_batches(records, size, preprocess, batch_size, skip_bad_images, failures):
    """tf.data of (record index [B], image (height, width) [B, 2], preprocessed images [B, *size, 3]).

    Undecodable images are left out and (path, BadImageError) appended to `failures`; unless
    `skip_bad_images`, the first one also ends the stream.
    """

    def decoded():
        for index, record in enumerate(records):
            try:
                pixels = read_rgb(record)
            except BadImageError as error:
                failures.append((record.path, error))
                if not skip_bad_images:
                    return
                continue
            yield index, pixels

    dataset = tf.data.Dataset.from_generator(
        decoded, output_signature=(tf.TensorSpec([], tf.int32), tf.TensorSpec([None, None, 3], tf.uint8))
    )
    dataset = dataset.map(
        lambda index, pixels: (index, tf.shape(pixels)[:2], tf.image.resize(pixels, size)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    dataset = dataset.batch(batch_size).map(lambda index, hw, images: (index, hw, preprocess(images)))
    return dataset.prefetch(1)


def coverage(mask: np.ndarray) -> float:
    """Fraction of a 0/255 mask's pixels that are body."""
    return float(np.count_nonzero(mask) / mask.size)


def _read_mask(path) -> np.ndarray:
    with Image.open(path) as image:
        return masks.binarize(np.asarray(image))


def segment_records(records, body_masks, preprocess, size, *, batch_size=8, skip_bad_images=False, bar=None):
    """Writes the mask of every record (at `record.mask_path`) through one tf.data pipeline.

    Args:
        records: `ImageRecord`s whose masks are to be (re)written.
        body_masks: `body_mask_fn(...)`; preprocess: the preset's preprocessor (or identity).
        size: (height, width) input size; bar: a tqdm bar updated once per mask written.
    Returns:
        ({record.path: coverage} of the masks written, [paths of the images skipped as undecodable]).
    Raises:
        BadImageError naming the first undecodable image (unless `skip_bad_images`); the masks written
        before it are complete, so a re-run resumes after fixing it.
    """
    written, failures = {}, []
    batches = _image_batches(records, size, preprocess, batch_size, skip_bad_images, failures)
    for indices, sizes, images in batches:
        for index, (height, width), mask in zip(indices.numpy(), sizes.numpy(), body_masks(images).numpy()):
            record = records[index]
            full = np.asarray(Image.fromarray(mask).resize((int(width), int(height)), Image.Resampling.NEAREST))
            atomic_io.write_bytes(record.mask_path, masks.encode_png(full))
            written[record.path] = coverage(full)
            if bar is not None:
                bar.update(1)
    if failures and not skip_bad_images:
        raise BadImageError(f"{failures[0][1]} (pass --skip_bad_images to skip and count such images)")
    return written, [path for path, _ in failures]


def coverage_summary(coverages: dict, min_coverage: float, max_coverage: float) -> dict:
    """Quality of one split's masks from {image path: coverage}: the mean coverage, and the images (sorted
    paths) and their fractions below `min_coverage` / above `max_coverage`."""
    low = sorted(path for path, value in coverages.items() if value < min_coverage)
    high = sorted(path for path, value in coverages.items() if value > max_coverage)
    count = max(len(coverages), 1)
    return {
        "mean_coverage": float(np.mean(list(coverages.values()))) if coverages else None,
        "low_coverage_fraction": len(low) / count,
        "high_coverage_fraction": len(high) / count,
        "low_coverage": low,
        "high_coverage": high,
    }


def _contact_sheet(samples, path, draw) -> str:
    """Draws image | mask rows for `samples` = [(split, record, coverage)] with `draw` (the `contact_sheet`
    argument of `make_masks`); returns `path`."""
    images = [read_rgb(record) for _, record, _ in samples]
    body_masks = [_read_mask(record.mask_path) for _, record, _ in samples]
    labels = [f"{split}  {record.filename}\n{value:.0%} body" for split, record, value in samples]
    return draw(images, body_masks, labels, path, cell_size=CONTACT_SHEET_CELL)


def _settings_in(summary_path, settings, overwrite) -> dict | None:
    """The earlier summary of this mask folder, if it may be extended; None when there is none (or
    `overwrite`). Raises ValueError when its masks were made with other settings."""
    if overwrite or not os.path.isfile(summary_path):
        return None
    with open(summary_path, encoding="utf-8") as f:
        previous = json.load(f)
    if previous.get("settings") != settings:
        raise ValueError(
            f"the masks in {os.path.dirname(summary_path)!r} were made with {previous.get('settings')} "
            f"({summary_path!r}), not {settings}. Pass overwrite=True (flag --overwrite) to remake them, "
            "or choose another out_dir (flag --out_dir)."
        )
    return previous


def _check_arguments(splits, min_coverage, max_coverage, batch_size):
    """ValueError naming the flag unless `splits`, the coverage bounds and `batch_size` are usable."""
    unknown = [split for split in splits if split not in SPLITS]
    if not splits or unknown:
        raise ValueError(f"`splits` (flag --splits) must be a non-empty subset of {SPLITS}. Received: {list(splits)}")
    if not 0.0 <= min_coverage < max_coverage <= 1.0:
        raise ValueError(
            "`min_coverage` and `max_coverage` (flags --min_coverage / --max_coverage) must satisfy "
            f"0 <= min < max <= 1. Received: min_coverage={min_coverage}, max_coverage={max_coverage}"
        )
    if batch_size < 1:
        raise ValueError(f"`batch_size` (flag --batch_size) must be at least 1. Received: {batch_size}")


def _segment_split(records, pending, segment, bounds, progress, split):
    """Segments the `pending` records of one split with `segment(records, bar)` -> ({path: coverage}, [bad
    paths]) and measures the masks already on disk; returns (the split's summary, the records with a mask,
    {path: coverage} of every one of them)."""
    written, bad = {}, []
    if pending:
        with tqdm(total=len(pending), desc=f"masks {split}", unit="img", disable=not progress) as bar:
            written, bad = segment(pending, bar)
    with_mask = [r for r in records if os.path.isfile(r.mask_path)]
    coverages = {r.path: coverage(_read_mask(r.mask_path)) for r in with_mask if r.path not in written}
    coverages.update(written)
    summary = {"images": len(records), "written": len(written), "kept": len(with_mask) - len(written),
               "bad_images": bad, **coverage_summary(coverages, *bounds)}
    return summary, with_mask, coverages


def make_masks(
    data_dir,
    dataset,
    out_dir,
    *,
    segmenter=DEFAULT_SEGMENTER,
    person_classes=(PASCAL_VOC_PERSON,),
    splits=("train",),
    image_size=None,
    batch_size=8,
    min_coverage=0.1,
    max_coverage=0.9,
    num_samples=8,
    skip_bad_images=False,
    skip_bad_names=False,
    overwrite=False,
    cuhk03_variant="detected",
    cuhk03_split=0,
    seed=0,
    progress=True,
    contact_sheet=None,
) -> dict:
    """Writes body masks for `splits` of a dataset into `out_dir`, the folder `build_tfrecords --mask_dir`
    reads, and returns the summary also written to `<out_dir>/make_masks.json`.

    Args:
        data_dir, dataset: as for `build_tfrecords` (`dataset` one of `build.DATASETS`).
        out_dir: mask folder (created); masks mirror the image folders.
        segmenter: keras-hub preset name, `kaggle://` / `hf://` handle or local preset folder.
        person_classes: class ids that count as body (Pascal VOC: 15 = person).
        splits: splits to segment ("train" is what SBSGAN needs).
        image_size: (height, width) the segmenter sees; default: the preset's.
        batch_size: images per prediction.
        min_coverage, max_coverage: body fractions outside which a mask is listed as suspicious.
        num_samples: images per split on the contact sheet (chosen with `seed`).
        skip_bad_images: skip (and count) undecodable images instead of raising BadImageError.
        skip_bad_names, cuhk03_variant, cuhk03_split: passed to the dataset loader.
        overwrite: remake masks already on disk (also the only way to change the settings of a folder).
        progress: show a progress bar (images/s) per split.
        contact_sheet: draws `<out_dir>/contact_sheet.png`: `report.grids.mask_contact_sheet` or any
            function of (images, masks, labels, path, cell_size) returning the path; None = no sheet
            (the data layer does not draw: the caller passes the report's drawing).
    Returns:
        {"settings": {segmenter, person_classes, image_size}, "dataset", "data_dir", "min_coverage",
         "max_coverage", "splits": {split: {"images", "written", "kept", "bad_images": [paths],
         "mean_coverage", "low_coverage_fraction", "high_coverage_fraction", "low_coverage": [paths],
         "high_coverage": [paths]}}, "skipped": {reason: count}, "contact_sheet": path or None}.
        Splits segmented by earlier runs into the same folder stay in "splits".
    """
    # 1. Check the arguments, and that masks already in out_dir were made with the same settings.
    # 2. List the dataset with out_dir as its mask folder: the records carry the mask paths build_tfrecords reads.
    # 3. Load the segmenter only if some mask is missing, record the settings, segment the missing masks.
    # 4. Coverage of every mask on disk (written or kept), the contact sheet, and the summary.
    _check_arguments(splits, min_coverage, max_coverage, batch_size)
    out_dir = os.path.abspath(os.fspath(out_dir))
    settings = {
        "segmenter": os.path.abspath(segmenter) if os.path.isdir(segmenter) else segmenter,
        "person_classes": sorted({int(c) for c in person_classes}),
        "image_size": None if image_size is None else [int(v) for v in image_size],
    }
    summary_path = os.path.join(out_dir, SUMMARY_FILE)
    previous = _settings_in(summary_path, settings, overwrite)

    os.makedirs(out_dir, exist_ok=True)
    data = load_dataset(
        dataset, data_dir, mask_dir=out_dir, cuhk03_variant=cuhk03_variant, cuhk03_split=cuhk03_split,
        skip_bad_names=skip_bad_names,
    )
    pending = {
        split: [r for r in data.split(split) if overwrite or not os.path.isfile(r.mask_path)] for split in splits
    }

    if any(pending.values()):
        model = load_segmenter(segmenter)
        size = input_size(model, image_size)
        body_masks = body_mask_fn(model, check_person_classes(person_classes, model.output_shape[-1]), size)
        preprocess = (lambda images: images) if model.preprocessor is None else model.preprocessor
    if previous is None:
        previous = {"settings": settings, "splits": {}, "skipped": {}}
        atomic_io.write_json(summary_path, previous)  # before the first mask: an interrupted run is guarded too
    skipped = {**previous["skipped"], **data.skipped}
    summary_splits, samples = {}, []
    rng = random.Random(seed)
    for split in splits:
        segment = None
        if pending[split]:
            segment = lambda records, bar: segment_records(  # noqa: E731 (bound to this run's segmenter)
                records, body_masks, preprocess, size, batch_size=batch_size, skip_bad_images=skip_bad_images, bar=bar)
        summary_splits[split], with_mask, coverages = _segment_split(
            data.split(split), pending[split], segment, (min_coverage, max_coverage), progress, split)
        skipped[f"{split}_bad_image"] = len(summary_splits[split]["bad_images"])
        samples += [(split, r, coverages[r.path]) for r in rng.sample(with_mask, min(num_samples, len(with_mask)))]

    sheet = None
    if samples and contact_sheet is not None:
        sheet = _contact_sheet(samples, os.path.join(out_dir, CONTACT_SHEET_FILE), contact_sheet)
    summary = {
        "settings": settings,
        "dataset": dataset,
        "data_dir": os.path.abspath(os.fspath(data_dir)),
        "min_coverage": min_coverage,
        "max_coverage": max_coverage,
        "splits": {**previous["splits"], **summary_splits},
        "skipped": skipped,
        "contact_sheet": sheet,
    }
    atomic_io.write_json(summary_path, summary)
    return summary
