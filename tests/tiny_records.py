"""Tiny TFRecord folders for the GAN training and generation tests (random JPEGs, box masks)."""

import io

import numpy as np
from PIL import Image

from bgshift_tf.data import shards

SPLIT_SIZES = {"train": 8, "query": 2, "gallery": 3}


def encode(array, fmt):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def make_domain_records(out_dir, name, index, size=(32, 16), splits=("train",), seed=0):
    """Writes `<out_dir>` shards for domain `name` (index `index`): SPLIT_SIZES images per split,
    random colours with a box mask in the middle. Returns `out_dir` as str."""
    rng = np.random.default_rng(seed + 17 * index)
    height, width = size
    mask = np.zeros((height, width), np.uint8)
    mask[height // 4: 3 * height // 4, width // 4: 3 * width // 4] = 255
    for split in splits:
        examples = []
        for i in range(SPLIT_SIZES[split]):
            image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            examples.append(dict(
                image=encode(image, "JPEG"), mask=encode(mask, "PNG"), has_mask=1, pid=10 * index + i // 2,
                label=i // 2 if split == "train" else -1, camera=1 + i % 2, domain=index, domain_name=name,
                split=split, filename=f"{10 * index + i // 2:04d}_c{1 + i % 2}s1_{i:06d}_00.jpg",
                height=height, width=width))
        shards.write_shards(examples, out_dir, name, split, 2)
    return str(out_dir)
