"""Figures for the run report: labelled image grids, GAN loss curves, ranked lists, contact sheets.

Everything here takes plain inputs (numpy arrays, dicts, paths) so it works without trained models.

Image convention accepted by every function (see `to_uint8_rgb`):
- uint8 `[H, W, 3]` in [0, 255] (as decoded from disk), or
- float `[H, W, 3]` in [-1, 1] (the package's pixel convention, e.g. generator outputs),
- `[H, W]` / `[H, W, 1]` grey images of either kind are repeated to 3 channels.
Masks (float in {0, 1}, uint8 0/255, or bool; `[H, W]` or `[H, W, 1]`) must go through `mask_to_rgb`
first: a float mask passed as an image would be read in [-1, 1] and come out grey instead of black.

Figures come back as uint8 `[H, W, 3]` arrays (image grids) or matplotlib `Figure`s (plots);
`save_png` / `save_figure` write them atomically (temp file in the same folder, then `os.replace`).
"""

import dataclasses
import io
import os
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from bgshift_tf import atomic_io

WHITE = (255, 255, 255)
TEXT = (33, 37, 41)
BLANK = (236, 239, 243)
# Border colours of ranked lists: the test reads them back pixel by pixel.
CORRECT = (34, 160, 70)
WRONG = (214, 40, 40)
QUERY = (37, 99, 235)


# ----------------------------------------------------------------------------------------------------
# Pixels and files
# ----------------------------------------------------------------------------------------------------


def to_uint8_rgb(image, name: str = "image") -> np.ndarray:
    """Converts one image to uint8 `[H, W, 3]`.

    Args:
      image: uint8 `[H, W(, 1|3)]` in [0, 255] or float `[H, W(, 1|3)]` in [-1, 1].
      name: what to call the image in error messages.
    Returns:
      uint8 `[H, W, 3]`.
    Raises:
      ValueError: wrong rank/channels, or a float image outside [-1, 1].
    """
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"`{name}` must be [H, W], [H, W, 1] or [H, W, 3]. Received shape: {array.shape}")
    if array.dtype == np.uint8:
        return array
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"`{name}` must be uint8 or float in [-1, 1]. Received dtype: {array.dtype}")
    low, high = float(np.min(array)), float(np.max(array))
    if low < -1.001 or high > 1.001:
        raise ValueError(
            f"float `{name}` must lie in [-1, 1] (the package's pixel convention). "
            f"Received range: [{low:.4g}, {high:.4g}]"
        )
    return np.clip(np.rint((array + 1.0) * 127.5), 0, 255).astype(np.uint8)


def mask_to_rgb(mask, name: str = "mask") -> np.ndarray:
    """Body mask -> uint8 `[H, W, 3]` picture: background black, body white.

    Args:
      mask: float in [0, 1], bool, or uint8 0/255; shape `[H, W]` or `[H, W, 1]`.
    """
    array = np.asarray(mask)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise ValueError(f"`{name}` must be [H, W] or [H, W, 1]. Received shape: {np.asarray(mask).shape}")
    if array.dtype == np.uint8:
        grey = array
    else:
        array = array.astype(np.float32)
        if float(array.min()) < 0.0 or float(array.max()) > 1.0:
            raise ValueError(
                f"float `{name}` must lie in [0, 1]. Received range: [{array.min():.4g}, {array.max():.4g}]"
            )
        grey = np.rint(array * 255.0).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)



def save_png(image, path) -> str:
    """Writes an image (any accepted convention) as PNG, atomically. Returns the path."""
    rgb = to_uint8_rgb(image)
    return atomic_io.atomic_write(path, lambda tmp: Image.fromarray(rgb).save(tmp, format="PNG"))


def save_figure(fig, path, dpi: int = 110) -> str:
    """Writes a matplotlib figure as PNG, atomically, and closes it. Returns the path."""
    try:
        return atomic_io.atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight"))
    finally:
        plt.close(fig)


def figure_to_array(fig, dpi: int = 110) -> np.ndarray:
    """Renders a matplotlib figure to uint8 `[H, W, 3]` and closes it."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"))


def _font(size: int):
    """DejaVu Sans from matplotlib's own data folder (always installed with matplotlib)."""
    path = os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans.ttf")
    try:
        return ImageFont.truetype(path, size)
    except OSError:
        return ImageFont.load_default(size=size)


def _text_size(font, text: str) -> tuple[int, int]:
    left, top, right, bottom = ImageDraw.Draw(Image.new("RGB", (1, 1))).multiline_textbbox(
        (0, 0), text, font=font
    )
    return right - left, bottom - top


# ----------------------------------------------------------------------------------------------------
# Labelled image grids (paper Fig. 1 / 4 / 5 analogues, contact sheets)
# ----------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GridLayout:
    """Pixel geometry of an image grid.

    Width = label_width + cols * cell_w + (cols + 1) * pad; height = header_height + rows * cell_h +
    (rows + 1) * pad. Cell (r, c) starts at x = label_width + pad + c * (cell_w + pad),
    y = header_height + pad + r * (cell_h + pad).
    """

    rows: int
    cols: int
    cell_h: int
    cell_w: int
    pad: int
    label_width: int
    header_height: int

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the whole grid in pixels."""
        return (
            self.header_height + self.rows * self.cell_h + (self.rows + 1) * self.pad,
            self.label_width + self.cols * self.cell_w + (self.cols + 1) * self.pad,
        )

    def cell_box(self, row: int, col: int) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) pixel box of a cell, bottom/right exclusive."""
        top = self.header_height + self.pad + row * (self.cell_h + self.pad)
        left = self.label_width + self.pad + col * (self.cell_w + self.pad)
        return top, left, top + self.cell_h, left + self.cell_w


def layout_grid(
    rows: Sequence[Sequence],
    *,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    scale: float = 1.0,
    pad: int = 4,
    font_size: int = 13,
    label_width: int | None = None,
    cell_size: tuple[int, int] | None = None,
) -> GridLayout:
    """Computes the geometry `image_grid` will use (same arguments)."""
    num_rows = len(rows)
    num_cols = max((len(row) for row in rows), default=0)
    if num_rows == 0 or num_cols == 0:
        raise ValueError(f"`rows` must hold at least one image. Received {num_rows} rows, {num_cols} columns")
    if row_labels is not None and len(row_labels) != num_rows:
        raise ValueError(f"`row_labels` needs one label per row ({num_rows}). Received {len(row_labels)}")
    if col_labels is not None and len(col_labels) != num_cols:
        raise ValueError(f"`col_labels` needs one label per column ({num_cols}). Received {len(col_labels)}")
    if cell_size is None:
        first = next((np.asarray(image) for row in rows for image in row if image is not None), None)
        if first is None:
            raise ValueError("`rows` holds only None cells; pass `cell_size`.")
        cell_size = (round(first.shape[0] * scale), round(first.shape[1] * scale))
    font = _font(font_size)
    if label_width is None:
        label_width = (
            max(_text_size(font, str(label))[0] for label in row_labels) + 2 * pad if row_labels else 0
        )
    header_height = 0
    if col_labels:
        header_height = max(_text_size(font, str(label))[1] for label in col_labels) + 2 * pad
        header_height = max(header_height, font_size + 2 * pad)
    return GridLayout(num_rows, num_cols, cell_size[0], cell_size[1], pad, label_width, header_height)


def image_grid(
    rows: Sequence[Sequence],
    *,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    scale: float = 1.0,
    pad: int = 4,
    font_size: int = 13,
    label_width: int | None = None,
    cell_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Lays images out in a labelled grid.

    Args:
      rows: rows of images (any accepted convention); `None` leaves a light-grey blank cell, short rows
        are padded with blanks.
      row_labels: one label per row, drawn left of the row (may contain "\\n").
      col_labels: one label per column, drawn above it.
      scale: magnification of the first image's size, used as the cell size (nearest-neighbour for
        integer factors, so small crops stay sharp).
      pad: gap in pixels between cells and around the grid.
      font_size: label font size in pixels.
      label_width: width of the row-label column (default: widest label + 2 * pad).
      cell_size: (height, width) of every cell, overriding `scale`.
    Returns:
      uint8 `[H, W, 3]`; geometry given by `layout_grid` with the same arguments.
    """
    layout = layout_grid(
        rows, row_labels=row_labels, col_labels=col_labels, scale=scale, pad=pad, font_size=font_size,
        label_width=label_width, cell_size=cell_size,
    )
    canvas = Image.new("RGB", layout.size[::-1], WHITE)
    draw = ImageDraw.Draw(canvas)
    font = _font(font_size)
    for r in range(layout.rows):
        for c in range(layout.cols):
            top, left, bottom, right = layout.cell_box(r, c)
            image = rows[r][c] if c < len(rows[r]) else None
            if image is None:
                draw.rectangle([left, top, right - 1, bottom - 1], fill=BLANK)
                continue
            tile = Image.fromarray(to_uint8_rgb(image, name=f"rows[{r}][{c}]"))
            if tile.size != (layout.cell_w, layout.cell_h):
                integer = layout.cell_w % tile.size[0] == 0 and layout.cell_h % tile.size[1] == 0
                tile = tile.resize(
                    (layout.cell_w, layout.cell_h),
                    Image.Resampling.NEAREST if integer else Image.Resampling.BILINEAR,
                )
            canvas.paste(tile, (left, top))
    if row_labels:
        for r, label in enumerate(row_labels):
            top, _, bottom, _ = layout.cell_box(r, 0)
            draw.multiline_text(
                (layout.label_width - pad, (top + bottom) / 2), str(label), font=font, fill=TEXT,
                anchor="rm", align="right",
            )
    if col_labels:
        for c, label in enumerate(col_labels):
            _, left, _, right = layout.cell_box(0, c)
            draw.multiline_text(
                ((left + right) / 2, layout.header_height / 2 + pad / 2), str(label), font=font, fill=TEXT,
                anchor="mm", align="center",
            )
    return np.asarray(canvas)


def variant_grid(
    samples: Sequence[Mapping],
    variants: Sequence[str],
    *,
    variant_labels: Mapping[str, str] | None = None,
    scale: float = 2.0,
    pad: int = 4,
) -> np.ndarray:
    """The paper's Fig. 1 / 4 / 5 analogue: one column per sample image, one row per image variant.

    Args:
      samples: one dict per column: `{"label": "synmarket", <variant>: image, ...}`. Variant values are
        images in any accepted convention; a variant named "mask" / ending in "_mask" whose array has
        one channel (or is bool) is drawn as a black/white mask. Missing variants are blank cells.
      variants: row order, e.g. ["original", "parser_mask", "hard_mask", "soft_mask",
        "style_to_synduke", "reconstruction"].
      variant_labels: optional display names per variant (default: the variant with "_" -> " ").
    Returns:
      uint8 `[H, W, 3]` grid, rows labelled with variant names, columns with the samples' labels.
    """
    rows = []
    for variant in variants:
        row = []
        for sample in samples:
            image = sample.get(variant)
            if image is not None:
                array = np.asarray(image)
                if array.dtype == bool or array.ndim == 2 or array.shape[-1] == 1:
                    image = mask_to_rgb(array, name=f"{sample.get('label', '?')}/{variant}")
            row.append(image)
        rows.append(row)
    names = variant_labels or {}
    return image_grid(
        rows,
        row_labels=[names.get(v, v.replace("_", " ")) for v in variants],
        col_labels=[str(sample.get("label", "")) for sample in samples],
        scale=scale,
        pad=pad,
    )


def contact_sheet(
    images_by_domain: Mapping[str, Sequence], *, per_row: int = 10, scale: float = 1.0, pad: int = 3
) -> np.ndarray:
    """Sample images of each domain, one row per domain labelled with its name.

    Args:
      images_by_domain: {domain name: list of images}; at most `per_row` of each are shown.
    Returns:
      uint8 `[H, W, 3]`.
    """
    if not images_by_domain:
        raise ValueError("`images_by_domain` is empty.")
    rows = [list(images)[:per_row] for images in images_by_domain.values()]
    return image_grid(rows, row_labels=list(images_by_domain), scale=scale, pad=pad)


# ----------------------------------------------------------------------------------------------------
# Ranked lists
# ----------------------------------------------------------------------------------------------------


def top_k_matches(distmat, q_pids, g_pids, q_camids, g_camids, k: int = 10):
    """Top-k gallery items per query under the evaluation protocol (SPEC §4).

    Gallery items with the query's pid AND camera are removed; ties keep gallery order (stable sort).

    Args:
      distmat: float `[Q, G]` distances; q_pids/q_camids int `[Q]`; g_pids/g_camids int `[G]`.
    Returns:
      (indices int `[Q, k]` into the gallery, correct bool `[Q, k]`); rows with fewer than k remaining
      gallery items are padded with index -1 / False.
    """
    distmat = np.asarray(distmat)
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    q_camids, g_camids = np.asarray(q_camids), np.asarray(g_camids)
    if distmat.shape != (len(q_pids), len(g_pids)):
        raise ValueError(
            f"`distmat` must be [num_query, num_gallery] = [{len(q_pids)}, {len(g_pids)}]. "
            f"Received shape: {distmat.shape}"
        )
    indices = np.full((len(q_pids), k), -1, dtype=np.int64)
    correct = np.zeros((len(q_pids), k), dtype=bool)
    for q in range(len(q_pids)):
        order = np.argsort(distmat[q], kind="stable")
        keep = ~((g_pids[order] == q_pids[q]) & (g_camids[order] == q_camids[q]))
        top = order[keep][:k]
        indices[q, : len(top)] = top
        correct[q, : len(top)] = g_pids[top] == q_pids[q]
    return indices, correct


def _framed(image, colour, border: int, cell_size: tuple[int, int]) -> np.ndarray:
    """Resizes an image to `cell_size` minus the border, then frames it with `colour`."""
    inner = (cell_size[0] - 2 * border, cell_size[1] - 2 * border)
    tile = Image.fromarray(to_uint8_rgb(image))
    if tile.size != inner[::-1]:
        tile = tile.resize(inner[::-1], Image.Resampling.BILINEAR)
    framed = np.empty((*cell_size, 3), dtype=np.uint8)
    framed[:] = colour
    framed[border:-border, border:-border] = np.asarray(tile)
    return framed


def ranked_lists(
    queries: Sequence[Mapping],
    *,
    top_k: int = 10,
    cell_size: tuple[int, int] = (128, 64),
    border: int = 4,
    pad: int = 4,
) -> np.ndarray:
    """Ranked-list picture: per row a query (blue frame) and its top-k gallery images framed green
    (same identity: right) or red (different identity: wrong), with a legend underneath.

    Args:
      queries: one dict per row: `{"query": image, "gallery": [images], "correct": [bool],
        "label": str (optional, e.g. "q 0012 c3")}`; `gallery` and `correct` are the ranked top-k.
      top_k: number of gallery columns.
      cell_size: (height, width) of every framed cell, border included.
      border: frame thickness in pixels.
    Returns:
      uint8 `[H, W, 3]`. Geometry of the grid part: `layout_grid` with `cell_size`, `pad`, the row
      labels and col labels ["query", "1", ..., "k"]; the legend strip is appended below it.
    """
    rows, labels = [], []
    for i, item in enumerate(queries):
        gallery, correct = list(item["gallery"])[:top_k], list(item["correct"])[:top_k]
        if len(gallery) != len(correct):
            raise ValueError(
                f"queries[{i}]: `gallery` ({len(gallery)}) and `correct` ({len(correct)}) differ in length."
            )
        row = [_framed(item["query"], QUERY, border, cell_size)]
        row += [_framed(g, CORRECT if ok else WRONG, border, cell_size) for g, ok in zip(gallery, correct)]
        rows.append(row)
        labels.append(str(item.get("label", f"query {i + 1}")))
    grid = image_grid(
        rows,
        row_labels=labels,
        col_labels=["query"] + [str(rank + 1) for rank in range(top_k)],
        cell_size=cell_size,
        pad=pad,
    )
    return np.concatenate([grid, _legend(grid.shape[1], pad)], axis=0)


def _legend(width: int, pad: int, font_size: int = 13) -> np.ndarray:
    """Colour key of `ranked_lists`, wrapped onto several lines when the grid is narrow."""
    entries = [(QUERY, "query"), (CORRECT, "right: same identity"), (WRONG, "wrong: other identity")]
    font = _font(font_size)
    line_height = font_size + 2 * pad
    placed, x, y = [], 2 * pad, pad
    for colour, text in entries:
        entry_width = font_size + pad + _text_size(font, text)[0]
        if x > 2 * pad and x + entry_width > width - pad:
            x, y = 2 * pad, y + line_height
        placed.append((x, y, colour, text))
        x += entry_width + 4 * pad
    canvas = Image.new("RGB", (width, y + line_height + pad), WHITE)
    draw = ImageDraw.Draw(canvas)
    for x, y, colour, text in placed:
        draw.rectangle([x, y + pad, x + font_size - 1, y + pad + font_size - 1], fill=colour)
        draw.text((x + font_size + pad, y + pad + font_size / 2), text, font=font, fill=TEXT, anchor="lm")
    return np.asarray(canvas)


# ----------------------------------------------------------------------------------------------------
# GAN loss curves
# ----------------------------------------------------------------------------------------------------


def read_scalars(logdir) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Reads every scalar from the TensorBoard event files under a run's `logs/` folder.

    Handles TF2 `tf.summary.scalar` (tensor values) and TF1 `simple_value`s. Files in sub-folders get
    their folder as a tag prefix (`logs/eval/events...` -> "eval/<tag>"). If a step was written twice
    (a resumed run), the later write wins.

    Args:
      logdir: folder searched recursively for `events.out.tfevents.*` files.
    Returns:
      {tag: (steps int64 `[T]` ascending, values float64 `[T]`)}; empty if there are no event files.
    Raises:
      FileNotFoundError: `logdir` does not exist.
    """
    import tensorflow as tf
    from tensorflow.core.util import event_pb2

    logdir = os.fspath(logdir)
    if not os.path.isdir(logdir):
        raise FileNotFoundError(f"TensorBoard log folder not found: {logdir!r}")
    points: dict[str, dict[int, tuple[float, float]]] = {}
    for folder, _, files in sorted(os.walk(logdir)):
        prefix = os.path.relpath(folder, logdir)
        prefix = "" if prefix == "." else prefix.replace(os.sep, "/") + "/"
        for file_name in sorted(f for f in files if f.startswith("events.out.tfevents")):
            for record in tf.data.TFRecordDataset(os.path.join(folder, file_name)):
                event = event_pb2.Event.FromString(record.numpy())
                for value in event.summary.value:
                    kind = value.WhichOneof("value")
                    if kind == "simple_value":
                        number = float(value.simple_value)
                    elif kind == "tensor" and value.tensor.dtype in (tf.float32.as_datatype_enum,
                                                                   tf.float64.as_datatype_enum):
                        array = tf.make_ndarray(value.tensor)
                        if array.size != 1:
                            continue
                        number = float(array.reshape(()))
                    else:
                        continue
                    series = points.setdefault(prefix + value.tag, {})
                    previous = series.get(event.step)
                    if previous is None or event.wall_time >= previous[0]:
                        series[event.step] = (event.wall_time, number)
    result = {}
    for tag, series in sorted(points.items()):
        steps = np.array(sorted(series), dtype=np.int64)
        result[tag] = (steps, np.array([series[s][1] for s in steps], dtype=np.float64))
    return result


def _as_series(tag: str, curve) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(curve, Mapping):
        steps = np.array(sorted(curve), dtype=np.int64)
        return steps, np.array([curve[s] for s in steps], dtype=np.float64)
    if isinstance(curve, Sequence) and len(curve) == 2:
        steps, values = np.asarray(curve[0]), np.asarray(curve[1], dtype=np.float64)
        if steps.shape == values.shape and steps.ndim == 1:
            return steps, values
    raise ValueError(f"curve {tag!r} must be {{step: value}} or (steps, values) of equal length.")


def _ema(values: np.ndarray, smoothing: float) -> np.ndarray:
    """TensorBoard-style exponential moving average with bias correction."""
    out, running = np.empty_like(values), 0.0
    for i, v in enumerate(values):
        running = smoothing * running + (1 - smoothing) * v
        out[i] = running / (1 - smoothing ** (i + 1))
    return out


def plot_loss_curves(curves: Mapping, *, smoothing: float = 0.6, ncols: int = 3, title: str | None = None):
    """One small panel per loss: the raw curve faint, its moving average bold.

    Args:
      curves: {tag: {step: value}} or {tag: (steps, values)} (the output of `read_scalars`).
      smoothing: EMA factor in [0, 1); 0 draws the raw curve only.
      ncols: panels per row.
    Returns:
      matplotlib Figure (use `save_figure` or `figure_to_array`).
    """
    if not curves:
        raise ValueError("`curves` is empty: nothing to plot.")
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"`smoothing` must be in [0, 1). Received: {smoothing}")
    tags = list(curves)
    ncols = min(ncols, len(tags))
    nrows = -(-len(tags) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 2.5 * nrows), squeeze=False)
    for ax, tag in zip(axes.flat, tags):
        steps, values = _as_series(tag, curves[tag])
        if smoothing > 0 and len(values) > 1:
            ax.plot(steps, values, color="#2563eb", alpha=0.25, linewidth=1)
            ax.plot(steps, _ema(values, smoothing), color="#2563eb", linewidth=1.8)
        else:
            ax.plot(steps, values, color="#2563eb", linewidth=1.5, marker="." if len(values) < 30 else None)
        ax.set_title(tag, fontsize=10)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
        ax.spines[["top", "right"]].set_visible(False)
    for ax in list(axes.flat)[len(tags):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("step", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    return fig
