import io

import numpy as np
import pytest
from PIL import Image

from bgshift_tf.data.records import DatasetSplits, ImageRecord, encode_jpeg, relabel


def _record(pid, camera=1, split="train", path=None):
    return ImageRecord(path=path or f"/d/{pid:04d}_c{camera}.jpg", pid=pid, camera=camera, split=split)


def test_relabel_follows_sorted_pid_order_and_keeps_pid_camera():
    records = [_record(42, 3), _record(7, 1), _record(42, 5), _record(19, 2)]
    out = relabel(records)
    assert [r.label for r in out] == [2, 0, 2, 1]
    assert [(r.pid, r.camera, r.path) for r in out] == [(r.pid, r.camera, r.path) for r in records]


def test_record_rejects_unknown_split():
    with pytest.raises(ValueError, match="split='val'"):
        _record(1, split="val")


def test_filename_and_splits_summary():
    train = relabel([_record(5), _record(9, 2)])
    query = [_record(1, 1, "query")]
    gallery = [_record(1, 2, "gallery"), _record(0, 3, "gallery")]
    splits = DatasetSplits("toy", train, query, gallery, skipped={"junk": 2})
    assert splits.num_train_ids == 2
    assert train[1].filename == "0009_c2.jpg"
    summary = splits.summary()
    assert summary["gallery"] == {"images": 2, "ids": 2, "cameras": [2, 3]}
    assert summary["skipped"] == {"junk": 2}
    with pytest.raises(ValueError, match="split='dev'"):
        splits.split("dev")


def test_encode_jpeg_round_trip_and_bad_input():
    pixels = np.zeros((24, 12, 3), np.uint8)
    pixels[:, :6] = 200
    decoded = np.asarray(Image.open(io.BytesIO(encode_jpeg(pixels))))
    assert decoded.shape == (24, 12, 3)
    assert np.abs(decoded.astype(int) - pixels).max() <= 8
    with pytest.raises(ValueError, match="shape=\\(24, 12\\)"):
        encode_jpeg(pixels[..., 0])
