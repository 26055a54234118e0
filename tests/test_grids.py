"""Tests for bgshift_tf.report.grids: image grids, variant grids, contact sheets, ranked lists."""

import numpy as np
import pytest
from PIL import Image

from bgshift_tf.report import figures, grids


def _image(h, w, value, dtype=np.uint8):
    return np.full((h, w, 3), value, dtype=dtype)


def test_image_grid_size_placement_and_labels():
    rows = [[_image(8, 4, 10), _image(8, 4, 20), None], [_image(8, 4, 30)]]
    kwargs = dict(row_labels=["first", ""], col_labels=["a", "b", "c"], scale=2, pad=3, label_width=40)
    grid = grids.image_grid(rows, **kwargs)
    layout = grids.layout_grid(rows, **kwargs)
    expected_w = 40 + 3 * (4 * 2) + 4 * 3
    assert grid.shape == (layout.size[0], expected_w, 3)
    assert layout.header_height > 0
    # Cells hold the (upscaled) images; missing cells are blank grey.
    for (r, c), value in {(0, 0): 10, (0, 1): 20, (1, 0): 30}.items():
        top, left, bottom, right = layout.cell_box(r, c)
        assert (bottom - top, right - left) == (16, 8)
        assert np.all(grid[top:bottom, left:right] == value)
    for r, c in [(0, 2), (1, 1), (1, 2)]:
        top, left, bottom, right = layout.cell_box(r, c)
        assert np.all(grid[top:bottom, left:right] == grids.BLANK)
    # Text is drawn where a label was given, nothing where the label is empty.
    top0, _, bottom0, _ = layout.cell_box(0, 0)
    top1, _, bottom1, _ = layout.cell_box(1, 0)
    assert np.any(grid[top0:bottom0, :40] != 255)
    assert np.all(grid[top1:bottom1, :40] == 255)
    assert np.any(grid[: layout.header_height, 40:] != 255)


def test_variant_grid_draws_masks_black_and_white():
    sample = {
        "label": "synmarket",
        "original": np.zeros((8, 4, 3), np.float32),
        "parser_mask": np.pad(np.ones((4, 4, 1), np.float32), ((2, 2), (0, 0), (0, 0))),
    }
    grid = grids.variant_grid([sample], ["original", "parser_mask", "soft_mask"], scale=1, pad=2)
    layout = grids.layout_grid(
        [[sample["original"]]] * 3, row_labels=["original", "parser mask", "soft mask"],
        col_labels=["synmarket"], pad=2,
    )
    assert grid.shape[:2] == layout.size
    top, left, bottom, right = layout.cell_box(1, 0)
    mask_cell = grid[top:bottom, left:right, 0]
    np.testing.assert_array_equal(mask_cell[:, 0], [0, 0, 255, 255, 255, 255, 0, 0])
    top, left, bottom, right = layout.cell_box(0, 0)
    assert np.all(grid[top:bottom, left:right] == 128)  # float 0.0 -> mid grey
    top, left, bottom, right = layout.cell_box(2, 0)
    assert np.all(grid[top:bottom, left:right] == grids.BLANK)  # missing variant


def test_ranked_lists_borders_are_green_and_red_in_right_places():
    correct = [True, False, False, True]
    queries = [{
        "query": _image(16, 8, 0),
        "gallery": [_image(16, 8, 128)] * 4,
        "correct": correct,
        "label": "q 0001 c1",
    }]
    picture = grids.ranked_lists(queries, top_k=4, cell_size=(24, 12), border=2, pad=3)
    layout = grids.layout_grid(
        [[None] * 5], row_labels=["q 0001 c1"], col_labels=["query", "1", "2", "3", "4"],
        cell_size=(24, 12), pad=3,
    )
    assert picture.shape[1] == layout.size[1]
    assert picture.shape[0] > layout.size[0]  # legend strip below
    top, left, bottom, right = layout.cell_box(0, 0)
    assert tuple(picture[top, left]) == grids.QUERY
    for rank, ok in enumerate(correct):
        top, left, bottom, right = layout.cell_box(0, rank + 1)
        colour = grids.CORRECT if ok else grids.WRONG
        for y, x in [(top, left), (bottom - 1, right - 1), (top + 1, (left + right) // 2)]:
            assert tuple(picture[y, x]) == colour
        assert np.all(picture[top + 2 : bottom - 2, left + 2 : right - 2] == 128)
    legend = picture[layout.size[0] :]
    for colour in (grids.QUERY, grids.CORRECT, grids.WRONG):
        assert np.any(np.all(legend == colour, axis=-1))


def test_ranked_lists_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match=r"queries\[0\].*3.*2"):
        grids.ranked_lists([{"query": _image(8, 4, 0), "gallery": [_image(8, 4, 0)] * 3,
                               "correct": [True, False]}], top_k=10)


def test_image_grid_rows_of_different_lengths_and_png_round_trip(tmp_path):
    sheet = grids.image_grid([[_image(8, 4, 1)] * 5, [_image(8, 4, 2)] * 3], row_labels=["a", "b"], pad=2)
    layout = grids.layout_grid([[None] * 5] * 2, row_labels=["a", "b"], cell_size=(8, 4), pad=2)
    assert sheet.shape[:2] == layout.size
    top, left, bottom, right = layout.cell_box(1, 2)
    assert np.all(sheet[top:bottom, left:right] == 2)
    path = figures.save_png(sheet, tmp_path / "sheet.png")
    np.testing.assert_array_equal(np.asarray(Image.open(path)), sheet)
