import io
import os

import numpy as np
import pytest
from PIL import Image

from data_fixtures import write_image, write_mask

from bgshift_tf.data import masks
from bgshift_tf.data.build import collect_masks
from bgshift_tf.data.records import ImageRecord


def _decoded(png_bytes):
    return np.asarray(Image.open(io.BytesIO(png_bytes)))


@pytest.mark.parametrize("style", ["binary255", "binary01", "lip"])
def test_every_format_becomes_binary_0_255(tmp_path, style):
    path = str(tmp_path / "m.png")
    expected = write_mask(path, 32, 16, style)
    out = _decoded(masks.load_mask_png(path, (32, 16)))
    assert out.dtype == np.uint8 and out.shape == (32, 16)
    np.testing.assert_array_equal(out, expected)


def test_lip_grayscale_label_map_and_rgb_mask():
    labels = np.array([[0, 3, 19], [0, 0, 1]], np.uint8)
    np.testing.assert_array_equal(masks.binarize(labels), [[0, 255, 255], [0, 0, 255]])
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 1, 2] = 128
    np.testing.assert_array_equal(masks.binarize(rgb), [[0, 255], [0, 0]])


def test_mask_errors_name_the_file(tmp_path):
    with pytest.raises(masks.MaskError, match="absent.png.*missing"):
        masks.load_mask_png(str(tmp_path / "absent.png"), (32, 16))
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"\x89PNG not really")
    with pytest.raises(masks.MaskError, match="garbage.png.*cannot be read"):
        masks.load_mask_png(str(garbage), (32, 16))
    small = str(tmp_path / "small.png")
    write_mask(small, 16, 8)
    with pytest.raises(masks.MaskError, match=r"small.png.*\(16, 8\).*\(32, 16\)"):
        masks.load_mask_png(small, (32, 16))


def _records_with_masks(tmp_path):
    """Four train images: good mask, missing mask, unreadable mask, wrongly sized mask."""
    records = []
    for i, problem in enumerate(["good", "missing", "unreadable", "size"]):
        image = write_image(str(tmp_path / "img" / f"{i}.jpg"), seed=i)
        mask_path = str(tmp_path / "mask" / f"{i}.png")
        if problem == "good":
            write_mask(mask_path)
        elif problem == "unreadable":
            os.makedirs(os.path.dirname(mask_path), exist_ok=True)
            open(mask_path, "wb").write(b"nope")
        elif problem == "size":
            write_mask(mask_path, 8, 8)
        records.append(ImageRecord(path=image, pid=i + 1, camera=1, split="train", mask_path=mask_path))
    return records


def test_collect_masks_raises_naming_the_first_bad_file(tmp_path):
    records = _records_with_masks(tmp_path)
    with pytest.raises(masks.MaskError, match="1.png.*missing"):
        collect_masks(records, required=True, skip_bad_masks=False, progress=False)


def test_collect_masks_skip_counts_every_bad_mask(tmp_path):
    records = _records_with_masks(tmp_path)
    kept, mask_bytes, counts = collect_masks(records, required=True, skip_bad_masks=True, progress=False)
    assert [r.pid for r in kept] == [1]
    assert counts == {"bad_mask": 3, "missing_mask": 0}
    assert set(mask_bytes) == {records[0].path}


def test_collect_masks_optional_for_eval_splits(tmp_path):
    records = _records_with_masks(tmp_path)[:2]
    kept, mask_bytes, counts = collect_masks(records, required=False, skip_bad_masks=False, progress=False)
    assert len(kept) == 2 and len(mask_bytes) == 1
    assert counts == {"bad_mask": 0, "missing_mask": 1}


def _body_box():
    body = np.zeros((32, 16), bool)
    body[8:24, 4:12] = True
    return body


def test_rgb_label_map_with_the_body_in_one_channel_is_body(tmp_path):
    rgb = np.zeros((32, 16, 3), np.uint8)
    rgb[..., 2][_body_box()] = 2  # blue = label 2: greyscale conversion made this all background
    Image.fromarray(rgb, "RGB").save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(_decoded(masks.load_mask_png(str(tmp_path / "rgb.png"), (32, 16))), _body_box() * 255)


def test_rgba_mask_reads_the_alpha_when_the_colour_is_constant(tmp_path):
    rgba = np.full((32, 16, 4), 200, np.uint8)
    rgba[..., 3] = _body_box() * 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "cutout.png")
    np.testing.assert_array_equal(
        _decoded(masks.load_mask_png(str(tmp_path / "cutout.png"), (32, 16))), _body_box() * 255
    )
    rgba[..., :3] = 0
    rgba[..., 0][_body_box()] = 9  # colours vary: the colour rule, alpha ignored
    rgba[..., 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "colour.png")
    np.testing.assert_array_equal(
        _decoded(masks.load_mask_png(str(tmp_path / "colour.png"), (32, 16))), _body_box() * 255
    )


def test_unsupported_or_truncated_masks_are_refused_naming_the_file(tmp_path):
    Image.fromarray(np.zeros((32, 16), np.float32), "F").save(tmp_path / "float.tiff")
    with pytest.raises(masks.MaskError, match="float.tiff.*mode 'F'"):
        masks.load_mask_png(str(tmp_path / "float.tiff"), (32, 16))
    write_mask(str(tmp_path / "whole.png"))
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(masks.MaskError, match="cut.png.*cannot be read"):
        masks.load_mask_png(str(tmp_path / "cut.png"), (32, 16))
