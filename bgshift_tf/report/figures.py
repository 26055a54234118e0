"""Figures for the run report: atomic PNG writers and GAN loss curves (the image grids, contact sheets
and ranked lists live in `report.grids`; pixel conversion in `data.images`).

Everything here takes plain inputs (numpy arrays, dicts, paths) so it works without trained models.

Image convention accepted by every function (see `data.images.to_uint8_rgb`):
- uint8 `[H, W, 3]` in [0, 255] (as decoded from disk), or
- float `[H, W, 3]` in [-1, 1] (the package's pixel convention, e.g. generator outputs),
- `[H, W]` / `[H, W, 1]` grey images of either kind are repeated to 3 channels.
Masks (float in {0, 1}, uint8 0/255, or bool; `[H, W]` or `[H, W, 1]`) must go through
`data.images.mask_to_rgb` first: a float mask passed as an image would be read in [-1, 1] and come out
grey instead of black.

Plots come back as matplotlib `Figure`s, pictures as uint8 `[H, W, 3]` arrays;
`save_png` / `save_figure` write them atomically (temp file in the same folder, then `os.replace`).
"""

import io
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from bgshift_tf.core import atomic_io  # noqa: E402
from bgshift_tf.data import images  # noqa: E402

# ----------------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------------


def save_png(image, path) -> str:
    """Writes an image (any accepted convention) as PNG, atomically. Returns the path."""
    rgb = images.to_uint8_rgb(image)
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


# ----------------------------------------------------------------------------------------------------
# GAN loss curves
# ----------------------------------------------------------------------------------------------------


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
      curves: {tag: {step: value}} or {tag: (steps, values)} (the output of `training.summaries.read_scalars`).
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
