"""Tests for bgshift_tf.report.figures: grids, ranked lists, loss curves, TensorBoard reader."""

import os

import numpy as np
import pytest
from PIL import Image

from bgshift_tf.report import figures


def _image(h, w, value, dtype=np.uint8):
    return np.full((h, w, 3), value, dtype=dtype)


def test_to_uint8_rgb_maps_float_range_and_grey():
    out = figures.to_uint8_rgb(np.array([[-1.0, 0.0, 1.0]], dtype=np.float32))
    assert out.shape == (1, 3, 3)
    np.testing.assert_array_equal(out[0, :, 0], [0, 128, 255])
    mask = figures.mask_to_rgb(np.array([[0.0, 1.0]], dtype=np.float32)[..., None])
    np.testing.assert_array_equal(mask[0, :, 1], [0, 255])


def test_to_uint8_rgb_rejects_out_of_range_float():
    with pytest.raises(ValueError, match=r"\[-1, 1\].*2"):
        figures.to_uint8_rgb(np.full((2, 2, 3), 2.0, dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        figures.to_uint8_rgb(np.zeros((2, 2, 5), dtype=np.uint8))


def test_image_grid_size_placement_and_labels():
    rows = [[_image(8, 4, 10), _image(8, 4, 20), None], [_image(8, 4, 30)]]
    kwargs = dict(row_labels=["first", ""], col_labels=["a", "b", "c"], scale=2, pad=3, label_width=40)
    grid = figures.image_grid(rows, **kwargs)
    layout = figures.layout_grid(rows, **kwargs)
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
        assert np.all(grid[top:bottom, left:right] == figures.BLANK)
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
    grid = figures.variant_grid([sample], ["original", "parser_mask", "soft_mask"], scale=1, pad=2)
    layout = figures.layout_grid(
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
    assert np.all(grid[top:bottom, left:right] == figures.BLANK)  # missing variant


def test_top_k_matches_removes_same_camera_and_keeps_order():
    distmat = np.array([[0.1, 0.2, 0.2, 0.5, 0.9]])
    indices, correct = figures.top_k_matches(
        distmat, q_pids=[1], g_pids=[1, 2, 1, 3, 1], q_camids=[0], g_camids=[0, 1, 1, 1, 2], k=5
    )
    # Gallery 0 (same pid and camera) is removed; the 0.2 tie keeps gallery order (1 before 2).
    np.testing.assert_array_equal(indices[0], [1, 2, 3, 4, -1])
    np.testing.assert_array_equal(correct[0], [False, True, False, True, False])


def test_ranked_lists_borders_are_green_and_red_in_right_places():
    correct = [True, False, False, True]
    queries = [{
        "query": _image(16, 8, 0),
        "gallery": [_image(16, 8, 128)] * 4,
        "correct": correct,
        "label": "q 0001 c1",
    }]
    picture = figures.ranked_lists(queries, top_k=4, cell_size=(24, 12), border=2, pad=3)
    layout = figures.layout_grid(
        [[None] * 5], row_labels=["q 0001 c1"], col_labels=["query", "1", "2", "3", "4"],
        cell_size=(24, 12), pad=3,
    )
    assert picture.shape[1] == layout.size[1]
    assert picture.shape[0] > layout.size[0]  # legend strip below
    top, left, bottom, right = layout.cell_box(0, 0)
    assert tuple(picture[top, left]) == figures.QUERY
    for rank, ok in enumerate(correct):
        top, left, bottom, right = layout.cell_box(0, rank + 1)
        colour = figures.CORRECT if ok else figures.WRONG
        for y, x in [(top, left), (bottom - 1, right - 1), (top + 1, (left + right) // 2)]:
            assert tuple(picture[y, x]) == colour
        assert np.all(picture[top + 2 : bottom - 2, left + 2 : right - 2] == 128)
    legend = picture[layout.size[0] :]
    for colour in (figures.QUERY, figures.CORRECT, figures.WRONG):
        assert np.any(np.all(legend == colour, axis=-1))


def test_ranked_lists_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match=r"queries\[0\].*3.*2"):
        figures.ranked_lists([{"query": _image(8, 4, 0), "gallery": [_image(8, 4, 0)] * 3,
                               "correct": [True, False]}], top_k=10)


def test_read_scalars_reads_tensor_and_simple_value_summaries(tmp_path):
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    # tf.summary.scalar needs the tensorboard package (not installed): write the same tensor records
    # with the core op, plus TF1-style simple_value records.
    logdir = tmp_path / "logs"
    with tf.summary.create_file_writer(str(logdir)).as_default():
        for step in range(5):
            tf.summary.write("losses/g_total", tf.constant(10.0 - step), step=step)
            tf.summary.write("losses/d_adv", tf.constant(step * 0.5), step=step)
        tf.summary.write("losses/g_total", tf.constant(-1.0), step=4)  # a resumed run rewrites step 4
        tf.summary.write("images/sample", tf.constant(["a", "b"]), step=0)  # not a scalar: ignored
    with tf.summary.create_file_writer(str(logdir / "eval")).as_default():
        proto = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="rank1", simple_value=0.25)])
        tf.summary.experimental.write_raw_pb(proto.SerializeToString(), step=3)
    scalars = figures.read_scalars(logdir)
    assert set(scalars) == {"losses/g_total", "losses/d_adv", "eval/rank1"}
    steps, values = scalars["losses/g_total"]
    np.testing.assert_array_equal(steps, [0, 1, 2, 3, 4])
    np.testing.assert_allclose(values, [10, 9, 8, 7, -1])
    np.testing.assert_allclose(scalars["losses/d_adv"][1], [0, 0.5, 1, 1.5, 2])
    np.testing.assert_array_equal(scalars["eval/rank1"][0], [3])
    np.testing.assert_allclose(scalars["eval/rank1"][1], [0.25])
    with pytest.raises(FileNotFoundError, match="nope"):
        figures.read_scalars(tmp_path / "nope")


def test_plot_loss_curves_accepts_both_forms_and_saves_atomically(tmp_path):
    curves = {"losses/g": {0: 3.0, 1: 2.0, 2: 1.5}, "losses/d": (np.arange(3), np.array([1.0, 0.5, 0.2]))}
    fig = figures.plot_loss_curves(curves, smoothing=0.5)
    assert [ax.get_title() for ax in fig.axes if ax.get_visible()] == ["losses/g", "losses/d"]
    path = figures.save_figure(fig, tmp_path / "curves.png")
    assert Image.open(path).size[0] > 100
    assert [p for p in os.listdir(tmp_path) if p.startswith(".tmp")] == []
    with pytest.raises(ValueError, match="losses/x"):
        figures.plot_loss_curves({"losses/x": ([0, 1], [1.0])})


def test_contact_sheet_one_row_per_domain(tmp_path):
    sheet = figures.contact_sheet({"a": [_image(8, 4, 1)] * 12, "b": [_image(8, 4, 2)] * 3}, per_row=5, pad=2)
    layout = figures.layout_grid([[None] * 5] * 2, row_labels=["a", "b"], cell_size=(8, 4), pad=2)
    assert sheet.shape[:2] == layout.size
    top, left, bottom, right = layout.cell_box(1, 2)
    assert np.all(sheet[top:bottom, left:right] == 2)
    path = figures.save_png(sheet, tmp_path / "sheet.png")
    np.testing.assert_array_equal(np.asarray(Image.open(path)), sheet)
