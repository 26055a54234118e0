"""CUHK03, in its two protocols.

Reference:
    Li et al. DeepReID: Deep Filter Pairing Neural Network for Person Re-identification. CVPR 2014.
    Zhong et al. Re-ranking Person Re-identification with k-reciprocal Encoding. CVPR 2017 (CUHK03-NP).

Statistics: 1,467 ids, 13,164 images, 5 camera pairs (10 cameras), "detected" (DPM boxes) and
"labeled" (hand-drawn boxes) versions.
- CUHK03-NP (new protocol, `load_np`): 767 train ids / 700 test ids. detected: 7,365 train, 1,400 query,
  5,332 gallery images; labeled: 7,368 / 1,400 / 5,328. Layout
  `<data_dir>/<variant>/{bounding_box_train,bounding_box_test,query}/0001_c1_1.png` (Market-style
  names, PNG images in the release; camera 1 or 2 = the two views of the pair).
- Classic (the paper's setting, `load_classic`): 20 random splits of 1,367 train ids / 100 test ids
  (~13k train images); query = gallery = the test ids' images, so the evaluator's same-pid-same-camera
  removal leaves the other view's images as the true matches.

`cuhk-03.mat` (MATLAB v7.3 = HDF5; HDF5 holds MATLAB arrays column-major, i.e. transposed):
- `detected`, `labeled`: 5x1 cells (HDF5 shape (1, 5)) of object references, one per camera pair; each
  refers to a (num_ids x 10) cell (HDF5 shape (10, num_ids)) of references to uint8 images stored as
  (3, W, H), to be transposed to (H, W, 3). Images 0-4 of a person come from the pair's first camera,
  5-9 from the second. Empty cells are small non-image arrays (e.g. shape (2,) uint64 zeros): skipped.
- `testsets`: 20x1 cell (HDF5 shape (1, 20)) of (100 x 2) arrays (HDF5 shape (2, 100)) of
  [camera pair (1-based), person index within the pair (1-based)].
Classic pids are numbered 1..1467 across pairs in pair order; camera = 2 * (pair - 1) + view (1..10).
A `--cuhk03_split=all` build writes each split's shards to `<out_dir>/split_XX/` (`classic_split_dir`).
"""

import dataclasses
import os
import re

import h5py
import numpy as np

from bgshift_tf.data.datasets.layout import load_folders
from bgshift_tf.data.records import DatasetSplits, ImageRecord, encode_jpeg, relabel

VARIANTS = ("detected", "labeled")
FILE_NAME = re.compile(r"(?P<pid>\d{4})_c(?P<camera>\d)_\d+\.(png|jpg)")
IMAGES_PER_VIEW = 5


def _check_variant(variant):
    if variant not in VARIANTS:
        raise ValueError(f"cuhk03: `variant` (flag --cuhk03_variant) must be one of {VARIANTS}. Received: {variant!r}")


def load_np(
    data_dir,
    variant: str = "detected",
    mask_dir=None,
    domain: int = 0,
    domain_name: str = "cuhk03",
    *,
    skip_bad_names=False,
) -> DatasetSplits:
    """Lists CUHK03-NP: `<data_dir>/<variant>/` in the three-folder layout; masks in
    `<mask_dir>/<variant>/<split folder>/<stem>.png` (mirroring `data_dir`)."""
    _check_variant(variant)
    return load_folders(
        os.path.join(os.fspath(data_dir), variant),
        dataset="cuhk03",
        pattern=FILE_NAME,
        mask_dir=None if mask_dir is None else os.path.join(os.fspath(mask_dir), variant),
        domain=domain,
        domain_name=domain_name,
        skip_bad_names=skip_bad_names,
    )


def load(
    data_dir, mask_dir=None, domain: int = 0, domain_name: str = "cuhk03", *, variant="detected", skip_bad_names=False
) -> DatasetSplits:
    """The common loader signature: CUHK03-NP (see `load_np`)."""
    return load_np(data_dir, variant, mask_dir, domain, domain_name, skip_bad_names=skip_bad_names)


def _cell_refs(mat, name, mat_path):
    if name not in mat:
        raise ValueError(
            f"cuhk03: {mat_path!r} has no dataset {name!r}; found {sorted(mat.keys())}. Is it cuhk-03.mat?"
        )
    return np.asarray(mat[name]).reshape(-1)


def _read_classic(mat_path, variant, mask_dir, domain, domain_name):
    """Decodes every image of `cuhk-03.mat` once.

    Returns:
        (records with split "train", [(pair, person) of each record], testsets as a list of sets of
        (pair, person), number of empty cells skipped).
    """
    _check_variant(variant)
    mat_path = os.fspath(mat_path)
    if not os.path.isfile(mat_path):
        raise FileNotFoundError(f"cuhk03: file {mat_path!r} does not exist (flag --data_dir should name cuhk-03.mat).")
    try:
        mat = h5py.File(mat_path, "r")
    except OSError as error:
        raise ValueError(f"cuhk03: {mat_path!r} is not a MATLAB v7.3 (HDF5) file: {error}") from None
    records, owners = [], []
    empty_cells = 0
    with mat:
        testsets = [
            {(int(pair), int(person)) for pair, person in np.asarray(mat[ref]).T}
            for ref in _cell_refs(mat, "testsets", mat_path)
        ]
        pid_offset = 0
        for pair, pair_ref in enumerate(_cell_refs(mat, variant, mat_path), start=1):
            cells = np.asarray(mat[pair_ref]).T  # (num_ids, 10) references
            for person in range(1, cells.shape[0] + 1):
                for image_index, ref in enumerate(cells[person - 1]):
                    data = np.asarray(mat[ref])
                    if data.ndim != 3:
                        empty_cells += 1
                        continue
                    view = 1 if image_index < IMAGES_PER_VIEW else 2
                    filename = f"{pair}_{person:03d}_{view}_{image_index + 1:02d}.jpg"
                    records.append(ImageRecord(
                        path=f"{mat_path}::{variant}/{filename}",
                        pid=pid_offset + person,
                        camera=2 * (pair - 1) + view,
                        split="train",
                        domain=domain,
                        domain_name=domain_name,
                        mask_path=None
                        if mask_dir is None
                        else os.path.join(os.fspath(mask_dir), variant, filename[:-4] + ".png"),
                        image_bytes=encode_jpeg(np.ascontiguousarray(data.T)),
                    ))
                    owners.append((pair, person))
            pid_offset += cells.shape[0]
    return records, owners, testsets, empty_cells


def _classic_split(records, owners, test_ids, split, mat_path, empty_cells):
    """DatasetSplits of one classic split from the decoded records (shared, not copied: JPEG bytes)."""
    is_test = [owner in test_ids for owner in owners]
    missing = test_ids - {owner for owner, test in zip(owners, is_test) if test}
    if missing:
        raise ValueError(
            f"cuhk03: testsets[{split}] in {mat_path!r} names (pair, person) entries with no images: "
            f"{sorted(missing)[:10]}"
        )
    test = [dataclasses.replace(r, split="query") for r, test in zip(records, is_test) if test]
    return DatasetSplits(
        name="cuhk03",
        train=relabel([r for r, test in zip(records, is_test) if not test]),
        query=test,
        gallery=[dataclasses.replace(r, split="gallery") for r in test],
        skipped={"empty_cell": empty_cells},
    )


def load_classic(
    mat_path,
    split: int = 0,
    variant: str = "detected",
    mask_dir=None,
    domain: int = 0,
    domain_name: str = "cuhk03",
) -> DatasetSplits:
    """Reads `cuhk-03.mat` with the classic protocol's split `split` (0..19).

    Images are held in memory as JPEG bytes (`ImageRecord.image_bytes`, ~70 MB for the whole set).
    Masks, if any, are looked up as `<mask_dir>/<variant>/<file name stem>.png` with file names
    `<pair>_<person:03d>_<view>_<image:02d>.jpg` (1-based).

    Returns:
        DatasetSplits: train = all ids outside the split's test set (relabelled 0..N-1); query and
        gallery = the same images of the 100 test ids. `skipped["empty_cell"]` counts empty cells.
    """
    records, owners, testsets, empty_cells = _read_classic(mat_path, variant, mask_dir, domain, domain_name)
    if isinstance(split, bool) or not isinstance(split, (int, np.integer)) or not 0 <= split < len(testsets):
        raise ValueError(
            f"cuhk03: `split` (flag --cuhk03_split) must be in 0..{len(testsets) - 1}. Received: {split!r}"
        )
    return _classic_split(records, owners, testsets[split], split, os.fspath(mat_path), empty_cells)


def load_classic_all(
    mat_path, variant: str = "detected", mask_dir=None, domain: int = 0, domain_name: str = "cuhk03"
) -> list:
    """Every classic split (`load_classic` for 0..19), decoding the images once for all of them."""
    records, owners, testsets, empty_cells = _read_classic(mat_path, variant, mask_dir, domain, domain_name)
    return [
        _classic_split(records, owners, test_ids, split, os.fspath(mat_path), empty_cells)
        for split, test_ids in enumerate(testsets)
    ]


def classic_split_dir(root, split: int) -> str:
    """Folder of split `split`'s shards under the root of a `--cuhk03_split=all` build."""
    return os.path.join(os.fspath(root), f"split_{split:02d}")


def classic_split_dirs(root) -> list:
    """The split folders of a `--cuhk03_split=all` build under `root`, in split order."""
    dirs = []
    while os.path.isdir(classic_split_dir(root, len(dirs))):
        dirs.append(classic_split_dir(root, len(dirs)))
    if not dirs:
        raise ValueError(
            f"cuhk03: {os.fspath(root)!r} holds no split_00/ folder (the output of a --cuhk03_split=all build)."
        )
    return dirs
