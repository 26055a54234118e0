"""In-memory description of a re-ID dataset: one `ImageRecord` per image, grouped in `DatasetSplits`.

Loaders in `bgshift_tf.data.datasets` produce these; `bgshift_tf.data.build` turns them into TFRecord
shards. Records are plain Python data (no TensorFlow), so listing a dataset is cheap and testable.
"""

import dataclasses
import io

import numpy as np
from PIL import Image

SPLITS = ("train", "query", "gallery")
# Quality used whenever an image has to be (re-)encoded to JPEG (PNG sources, CUHK03 classic arrays):
# high enough that re-encoding loss is far below the resize done by the input pipeline.
JPEG_QUALITY = 95


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    """One image of a re-ID dataset.

    Attributes:
        path: image file on disk, or for images without a file (CUHK03 classic, stored inside
            `cuhk-03.mat`) a readable locator such as `cuhk-03.mat::detected/1_005_1_03.jpg`.
        pid: original person id from the dataset (0 = distractor, never in train/query).
        camera: original camera id (1-based as in the file names).
        split: "train", "query" or "gallery".
        label: training label 0..N-1 for train records (see `relabel`), -1 otherwise.
        domain: domain index (position of the dataset among the GAN's K domains).
        domain_name: domain name, e.g. "market1501" or "synmarket".
        mask_path: expected body-mask PNG, or None when the caller gave no mask folder.
        image_bytes: encoded JPEG of an image held in memory because it has no file (CUHK03 classic,
            encoded once by `encode_jpeg` while loading); None for images read from `path`.
    """

    path: str
    pid: int
    camera: int
    split: str
    label: int = -1
    domain: int = 0
    domain_name: str = ""
    mask_path: str | None = None
    image_bytes: bytes | None = dataclasses.field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if self.split not in SPLITS:
            raise ValueError(f"ImageRecord `split` must be one of {SPLITS}. Received: split={self.split!r}")

    @property
    def filename(self) -> str:
        """Base name of the image (for in-memory images, the last part of the locator)."""
        return self.path.replace("\\", "/").rsplit("/", 1)[-1]


@dataclasses.dataclass
class DatasetSplits:
    """The three splits of one dataset.

    Attributes:
        name: dataset name used for shard names, e.g. "market1501".
        train, query, gallery: lists of `ImageRecord`; train labels are 0..num_train_ids-1.
        skipped: reason -> number of images left out while loading (junk ids, distractors outside
            the gallery, bad file names when skipping was asked for). Reported, never silent.
    """

    name: str
    train: list
    query: list
    gallery: list
    skipped: dict = dataclasses.field(default_factory=dict)

    @property
    def num_train_ids(self) -> int:
        return len({r.pid for r in self.train})

    def split(self, split: str) -> list:
        if split not in SPLITS:
            raise ValueError(f"`split` must be one of {SPLITS}. Received: split={split!r}")
        return getattr(self, split)

    def summary(self) -> dict:
        """Counts per split, JSON-able: {"train": {"images", "ids", "cameras"}, ..., "skipped"}."""
        out = {}
        for split in SPLITS:
            records = self.split(split)
            out[split] = {
                "images": len(records),
                "ids": len({r.pid for r in records}),
                "cameras": sorted({r.camera for r in records}),
            }
        out["skipped"] = dict(self.skipped)
        return out


def relabel(records) -> list:
    """Gives training labels 0..N-1 in sorted pid order; pid and camera are kept.

    Args:
        records: iterable of `ImageRecord` (the training split).
    Returns:
        New list of records, same order, with `label` set.
    """
    records = list(records)
    pid_to_label = {pid: label for label, pid in enumerate(sorted({r.pid for r in records}))}
    return [dataclasses.replace(r, label=pid_to_label[r.pid]) for r in records]


def encode_jpeg(pixels: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """Encodes a uint8 [H, W, 3] RGB array as JPEG bytes."""
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(
            f"encode_jpeg expects a uint8 [H, W, 3] array. Received: dtype={pixels.dtype}, shape={pixels.shape}"
        )
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
