import os

import io

import numpy as np
import pytest
from PIL import Image

from data_fixtures import CUHK03_NP_NAMES, DUKE_NAMES, MARKET_NAMES, make_cuhk03_mat, make_cuhk03_np, make_layout

from bgshift_tf.data.datasets import cuhk03, dukemtmc, market1501


def test_market_junk_distractors_relabel_and_masks(tmp_path):
    root = make_layout(str(tmp_path / "market"), MARKET_NAMES, mask_dir=str(tmp_path / "masks"))
    splits = market1501.load(root, mask_dir=str(tmp_path / "masks"), domain=2, domain_name="mk")
    assert [(r.pid, r.camera, r.label) for r in splits.train] == [(2, 1, 0), (2, 2, 0), (5, 1, 1), (7, 3, 2)]
    assert splits.num_train_ids == 3
    assert [r.pid for r in splits.query] == [10, 11]
    assert all(r.label == -1 for r in splits.query + splits.gallery)
    # junk (-1) dropped, distractor (0) kept in the gallery only
    assert sorted(r.pid for r in splits.gallery) == [0, 10, 11]
    assert splits.skipped["junk"] == 1
    assert {(r.domain, r.domain_name) for r in splits.train + splits.gallery} == {(2, "mk")}
    expected_mask = os.path.join(str(tmp_path / "masks"), "bounding_box_train", "0002_c1s1_000451_03.png")
    assert splits.train[0].mask_path == expected_mask


def test_market_distractor_outside_gallery_is_dropped_and_counted(tmp_path):
    names = {**MARKET_NAMES, "query": MARKET_NAMES["query"] + ["0000_c4s1_000001_00.jpg"]}
    splits = market1501.load(make_layout(str(tmp_path / "m"), names))
    assert 0 not in {r.pid for r in splits.query}
    assert splits.skipped["distractor_outside_gallery"] == 1


def test_non_image_files_are_ignored(tmp_path):
    root = make_layout(str(tmp_path / "m"), MARKET_NAMES)
    open(os.path.join(root, "query", "Thumbs.db"), "w").close()
    assert len(market1501.load(root).query) == 2


def test_bad_file_name_error_names_file_and_skip_counts(tmp_path):
    root = make_layout(str(tmp_path / "m"), {**MARKET_NAMES, "train": MARKET_NAMES["train"] + ["person12.jpg"]})
    with pytest.raises(ValueError, match="person12.jpg"):
        market1501.load(root)
    splits = market1501.load(root, skip_bad_names=True)
    assert splits.skipped["bad_name"] == 1
    assert len(splits.train) == 4


def test_missing_folders_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        market1501.load(str(tmp_path / "nowhere"))
    root = make_layout(str(tmp_path / "m"), MARKET_NAMES)
    os.rename(os.path.join(root, "query"), os.path.join(root, "queries"))
    with pytest.raises(FileNotFoundError, match="query"):
        market1501.load(root)
    with pytest.raises(FileNotFoundError, match="no_masks"):
        dukemtmc.load(root, mask_dir=str(tmp_path / "no_masks"))


def test_duke_layout(tmp_path):
    splits = dukemtmc.load(make_layout(str(tmp_path / "duke"), DUKE_NAMES))
    assert [(r.pid, r.camera, r.label) for r in splits.train] == [(1, 2, 0), (1, 5, 0), (3, 1, 1)]
    assert [(r.pid, r.camera) for r in splits.gallery] == [(5, 1), (19, 8)]
    assert splits.name == "dukemtmc" and splits.train[0].domain_name == "dukemtmc"
    # a Market-style name is not a Duke name
    root = make_layout(str(tmp_path / "bad"), {**DUKE_NAMES, "query": ["0005_c2s1_000451_03.jpg"]})
    with pytest.raises(ValueError, match="0005_c2s1_000451_03.jpg"):
        dukemtmc.load(root)


def test_cuhk03_np_variant_folders_and_masks(tmp_path):
    make_cuhk03_np(str(tmp_path / "np"), "labeled", mask_dir=str(tmp_path / "mk"))
    splits = cuhk03.load_np(str(tmp_path / "np"), "labeled", mask_dir=str(tmp_path / "mk"))
    assert [(r.pid, r.camera, r.label) for r in splits.train] == [(1, 1, 0), (1, 2, 0), (2, 1, 1)]
    assert len(splits.query) == len(CUHK03_NP_NAMES["query"]) and len(splits.gallery) == 2
    assert splits.query[0].mask_path == os.path.join(str(tmp_path / "mk"), "labeled", "query", "0004_c1_1.png")
    with pytest.raises(FileNotFoundError, match="detected"):
        cuhk03.load_np(str(tmp_path / "np"), "detected")
    with pytest.raises(ValueError, match="'both'"):
        cuhk03.load_np(str(tmp_path / "np"), "both")


def test_cuhk03_classic_structure(tmp_path):
    mat_path = str(tmp_path / "cuhk-03.mat")
    truth = make_cuhk03_mat(mat_path)
    splits = cuhk03.load_classic(mat_path, split=1, variant="detected")
    test_ids = truth["testsets"][1]  # pair 2, persons 2 and 1
    # 3+2+2+2+2 = 11 ids, pids numbered across pairs in pair order: pair 2 person k -> pid 3 + k
    test_pids = {3 + person for _, person in test_ids}
    assert {r.pid for r in splits.query} == test_pids == {r.pid for r in splits.gallery}
    assert {r.split for r in splits.gallery} == {"gallery"}
    assert splits.num_train_ids == 9
    assert sorted({r.label for r in splits.train}) == list(range(9))
    assert splits.skipped == {"empty_cell": 1}
    # pair 1 person 2 has 9 images (image 9 empty)
    assert sum(1 for r in splits.train if r.pid == 2) == 9
    # 10 images per test id (no empty cell among them), in both query and gallery
    assert len(splits.query) == 20
    for record in splits.train + splits.query:
        pair, person, view, number = (int(v) for v in record.filename[:-4].split("_"))
        j = number - 1
        assert view == (1 if j < 5 else 2)
        assert record.camera == 2 * (pair - 1) + view
        decoded = np.asarray(Image.open(io.BytesIO(record.image_bytes)))
        expected = truth["images"][(pair, person, j)]
        assert decoded.shape == expected.shape == (20 + j, 10 + pair, 3)  # transposed back to (H, W, 3)
        assert np.abs(decoded.astype(int) - expected).mean() < 12  # the right cell, JPEG-close
    with pytest.raises(ValueError, match="0..19"):
        cuhk03.load_classic(mat_path, split=20)


def test_cuhk03_classic_all_splits_decode_each_image_once(tmp_path, monkeypatch):
    mat_path = str(tmp_path / "cuhk-03.mat")
    truth = make_cuhk03_mat(mat_path)
    encoded = []
    real_encode = cuhk03.encode_jpeg
    monkeypatch.setattr(cuhk03, "encode_jpeg", lambda image: encoded.append(1) or real_encode(image))
    every = cuhk03.load_classic_all(mat_path, "detected")
    assert len(encoded) == len(truth["images"]) == 109  # 11 ids x 10 images, one empty cell
    assert len(every) == 20
    for split in (0, 7, 19):
        single = cuhk03.load_classic(mat_path, split, "detected")
        for name in ("train", "query", "gallery"):
            assert every[split].split(name) == single.split(name)
        first_test = every[split].query[0]
        assert any(r.image_bytes is first_test.image_bytes for r in every[(split + 5) % 20].query)  # same pair


def test_cuhk03_classic_labeled_differs_and_bad_files(tmp_path):
    mat_path = str(tmp_path / "cuhk-03.mat")
    make_cuhk03_mat(mat_path)
    detected = cuhk03.load_classic(mat_path, 0, "detected")
    labeled = cuhk03.load_classic(mat_path, 0, "labeled")
    assert len(labeled.train) == len(detected.train)
    assert labeled.train[0].image_bytes != detected.train[0].image_bytes
    with pytest.raises(FileNotFoundError, match="missing.mat"):
        cuhk03.load_classic(str(tmp_path / "missing.mat"))
    not_hdf5 = tmp_path / "fake.mat"
    not_hdf5.write_bytes(b"MATLAB 5.0 MAT-file")
    with pytest.raises(ValueError, match="fake.mat"):
        cuhk03.load_classic(str(not_hdf5))
