"""On-disk fixtures for the data-layer tests: tiny datasets with the real naming conventions.

Images are real JPEG/PNG files written with PIL; `make_cuhk03_mat` writes an HDF5 file with the
structure of `cuhk-03.mat` (MATLAB v7.3): object-reference cells, transposed images, empty cells.
"""

import os

import h5py
import numpy as np
from PIL import Image

FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}


def image_array(seed, height=32, width=16):
    """A deterministic uint8 [height, width, 3] image: noise over a per-seed colour."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=3)
    noise = rng.integers(-30, 30, size=(height, width, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def write_image(path, seed=0, height=32, width=16):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(image_array(seed, height, width)).save(path, quality=90)
    return path


def write_mask(path, height=32, width=16, style="binary255", seed=0):
    """Writes a body mask: a central box of body. style: binary255 | binary01 | lip (labels 0..19, palette)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    body = np.zeros((height, width), np.uint8)
    body[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = 1
    if style == "binary255":
        Image.fromarray(body * 255).save(path)
    elif style == "binary01":
        Image.fromarray(body).save(path)
    elif style == "lip":
        labels = body * np.random.default_rng(seed).integers(1, 20, size=(height, width)).astype(np.uint8)
        image = Image.fromarray(labels).convert("P")
        image.putpalette([v for i in range(256) for v in (i * 13 % 256, i * 7 % 256, i * 3 % 256)])
        image.save(path)
    else:
        raise ValueError(style)
    return body * 255


def make_layout(root, names, mask_dir=None, mask_style="binary255", height=32, width=16):
    """Writes `names` = {split: [file names]} in the three-folder layout (and masks if `mask_dir`)."""
    for index, (split, files) in enumerate(sorted(names.items())):
        for j, name in enumerate(files):
            write_image(os.path.join(root, FOLDERS[split], name), seed=index * 1000 + j, height=height, width=width)
            if mask_dir is not None:
                stem = os.path.splitext(name)[0]
                write_mask(os.path.join(mask_dir, FOLDERS[split], stem + ".png"), height, width, mask_style, seed=j)
    return root


MARKET_NAMES = {
    "train": [
        "0002_c1s1_000451_03.jpg",
        "0002_c2s1_000551_01.jpg",
        "0007_c3s1_000101_02.jpg",
        "0005_c1s2_000021_01.jpg",
    ],
    "query": ["0010_c1s1_001051_00.jpg", "0011_c2s1_001151_00.jpg"],
    "gallery": [
        "0010_c2s1_001251_01.jpg",
        "0011_c3s1_001351_02.jpg",
        "0000_c1s1_000151_01.jpg",
        "-1_c1s1_000401_03.jpg",
    ],
}

DUKE_NAMES = {
    "train": ["0001_c2_f0046182.jpg", "0001_c5_f0051341.jpg", "0003_c1_f0044158.jpg"],
    "query": ["0005_c2_f0046985.jpg"],
    "gallery": ["0005_c1_f0045112.jpg", "0019_c8_f0112233.jpg"],
}

CUHK03_NP_NAMES = {
    "train": ["0001_c1_1.png", "0001_c2_6.png", "0002_c1_1.png"],
    "query": ["0004_c1_1.png"],
    "gallery": ["0004_c2_7.png", "0006_c2_8.png"],
}


def make_cuhk03_np(root, variant="detected", mask_dir=None):
    """CUHK03-NP layout with PNG images (as in the release)."""
    base = os.path.join(root, variant)
    for index, (split, files) in enumerate(sorted(CUHK03_NP_NAMES.items())):
        for j, name in enumerate(files):
            path = os.path.join(base, FOLDERS[split], name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            Image.fromarray(image_array(index * 100 + j, 40, 20)).save(path)
            if mask_dir is not None:
                write_mask(os.path.join(mask_dir, variant, FOLDERS[split], name[:-4] + ".png"), 40, 20)
    return root


def make_cuhk03_mat(path, ids_per_pair=(3, 2, 2, 2, 2), empty=((1, 2, 9),), test_per_split=2, seed=0):
    """Writes a `cuhk-03.mat`-structured HDF5 file.

    Image (pair p, person i, image j), all 1-based p and i, 0-based j, has height 20 + j, width
    10 + p, and pixel [0, 0] = (p, i, j) so tests can check orientation and identity. `empty` lists
    (pair, person, image) cells stored as empty MATLAB arrays. testsets[s] holds the first
    `test_per_split` ids of pair (s % 5) + 1, rotated by s.
    Returns:
        {"images": {(p, i, j): uint8 [H, W, 3]}, "testsets": [[(pair, person), ...] x 20]}
    """
    images = {}
    counter = [0]
    with h5py.File(path, "w") as f:
        f.create_group("#refs#")

        def store(array):
            counter[0] += 1
            return f.create_dataset(f"#refs#/r{counter[0]}", data=array).ref

        def cells_for(variant_offset):
            pair_refs = []
            for pair, num_ids in enumerate(ids_per_pair, start=1):
                cells = np.empty((10, num_ids), dtype=h5py.ref_dtype)  # MATLAB (num_ids x 10), transposed
                for person in range(1, num_ids + 1):
                    for j in range(10):
                        if (pair, person, j) in empty:
                            cells[j, person - 1] = store(np.zeros(2, np.uint64))
                            continue
                        image = image_array(seed + variant_offset + pair * 100 + person * 10 + j, 20 + j, 10 + pair)
                        image[0, 0] = (pair, person, j)
                        if variant_offset == 0:
                            images[(pair, person, j)] = image
                        cells[j, person - 1] = store(np.ascontiguousarray(image.T))  # (3, W, H)
                pair_refs.append(store(cells))
            return np.array([pair_refs], dtype=h5py.ref_dtype)  # MATLAB 5x1 -> HDF5 (1, 5)

        f.create_dataset("detected", data=cells_for(0))
        f.create_dataset("labeled", data=cells_for(50000))
        testsets = []
        split_refs = []
        for s in range(20):
            pair = s % len(ids_per_pair) + 1
            persons = [(p + s) % ids_per_pair[pair - 1] + 1 for p in range(test_per_split)]
            ids = [(pair, person) for person in persons]
            testsets.append(ids)
            split_refs.append(store(np.array(ids, dtype=np.float64).T))  # MATLAB (k x 2) -> HDF5 (2, k)
        f.create_dataset("testsets", data=np.array([split_refs], dtype=h5py.ref_dtype))
    return {"images": images, "testsets": testsets}
