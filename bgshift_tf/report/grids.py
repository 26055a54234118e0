"""Labelled image grids for the run report: variant grids (paper Fig. 1 / 4 / 5 analogues), plain
image grids and ranked lists.

Images follow `data.images.to_uint8_rgb`'s convention (uint8 in [0, 255] or float in [-1, 1]); masks go
through `data.images.mask_to_rgb`. Every function returns uint8 `[H, W, 3]`; `figures.save_png` writes it.
"""

import dataclasses
import os
from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from bgshift_tf.data.images import mask_to_rgb, to_uint8_rgb
from bgshift_tf.report.figures import save_png

WHITE = (255, 255, 255)
TEXT = (33, 37, 41)
BLANK = (236, 239, 243)
# Border colours of ranked lists: the test reads them back pixel by pixel.
CORRECT = (34, 160, 70)
WRONG = (214, 40, 40)
QUERY = (37, 99, 235)


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
    pad: int = 4,
    font_size: int = 13,
    **sizing,
) -> np.ndarray:
    """Lays images out in a labelled grid.

    Args:
      rows: rows of images (any accepted convention); `None` leaves a light-grey blank cell, short rows
        are padded with blanks.
      row_labels: one label per row, drawn left of the row (may contain "\\n").
      col_labels: one label per column, drawn above it.
      pad: gap in pixels between cells and around the grid.
      font_size: label font size in pixels.
      **sizing: passed to `layout_grid` (keyword-only there, so a misspelt one fails):
        scale: magnification of the first image's size, used as the cell size (nearest-neighbour for
          integer factors, so small crops stay sharp); default 1.
        label_width: width of the row-label column (default: widest label + 2 * pad).
        cell_size: (height, width) of every cell, overriding `scale`.
    Returns:
      uint8 `[H, W, 3]`; geometry given by `layout_grid` with the same arguments.
    """
    layout = layout_grid(rows, row_labels=row_labels, col_labels=col_labels, pad=pad, font_size=font_size, **sizing)
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


# ----------------------------------------------------------------------------------------------------
# Ranked lists
# ----------------------------------------------------------------------------------------------------


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


def mask_contact_sheet(images, masks, labels, path, cell_size=(128, 64)) -> str:
    """Writes an image | mask contact sheet (one row per image, `labels` on the left) as PNG; returns `path`.
    What `data.segment.make_masks` draws beside its masks (its `contact_sheet` argument)."""
    rows = [[image, mask_to_rgb(mask)] for image, mask in zip(images, masks)]
    grid = image_grid(rows, row_labels=labels, col_labels=["image", "mask"], cell_size=cell_size)
    return save_png(grid, path)
