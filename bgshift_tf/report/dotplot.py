"""Inline SVG dot plots of the report (no plotting library, no script): one dot per seed, the 95% CI as a
bar with a tick at the mean, and an optional reference marker (the paper's value, or 0 for a difference).

Every plot of one table column is drawn on one shared axis (`axis_for`), so rows can be compared by eye.
Hovering a dot shows its seed and value (an SVG <title>), which also serves screen readers.
"""

from collections.abc import Iterable, Mapping

from bgshift_tf.report.html_blocks import esc

WIDTH, HEIGHT = 108, 22
_PAD = 6  # px kept free at both ends, so dots at the axis ends stay whole
# Reference kind -> colour: the paper's value in the report's "paper" orange, zero in neutral grey.
REFERENCE_COLOURS = {"paper": "#c2410c", "zero": "#6b7280"}


def axis_for(values: Iterable) -> tuple[float, float]:
    """(low, high) covering every finite number of `values` (None skipped), padded by 5% of the span."""
    numbers = [float(v) for v in values if v is not None and float(v) == float(v)]
    if not numbers:
        return 0.0, 1.0
    low, high = min(numbers), max(numbers)
    pad = 0.05 * (high - low) or 1.0
    return low - pad, high + pad


def dot_plot(points: Mapping, *, axis: tuple[float, float], interval=None, mean=None, reference=None,
             reference_kind: str = "paper", unit: str = "%") -> str:
    """An inline <svg> of one row's per-seed values.

    Args:
      points: {seed: value}, or {seed: (value, tooltip suffix)} to add e.g. the seed's bootstrap CI to its title.
      axis: (low, high) of the shared axis (`axis_for`); values outside are drawn at the nearest end.
      interval: (lo, hi) of the 95% CI, or None.
      mean: the mean (a tick across the CI bar), or None.
      reference: the reference value (a diamond and a thin vertical line), or None.
      reference_kind: a key of REFERENCE_COLOURS ("paper" or "zero").
      unit: appended to the numbers of the tooltips.
    """
    if reference_kind not in REFERENCE_COLOURS:
        raise ValueError(f"`reference_kind` must be one of {sorted(REFERENCE_COLOURS)}. "
                         f"Received: reference_kind={reference_kind!r}")
    low, high = axis
    if not high > low:
        raise ValueError(f"a dot plot's axis must have low < high. Received: axis={axis!r}")

    def x(value):
        fraction = min(max((float(value) - low) / (high - low), 0.0), 1.0)
        return _PAD + fraction * (WIDTH - 2 * _PAD)

    middle = HEIGHT / 2
    parts = [f'<line x1="{_PAD}" x2="{WIDTH - _PAD}" y1="{middle}" y2="{middle}" stroke="#e5e7eb"/>']
    if reference is not None:
        colour, rx = REFERENCE_COLOURS[reference_kind], x(reference)
        label = "paper, real data" if reference_kind == "paper" else "no difference"
        parts.append(
            f'<g class="ref {reference_kind}"><title>{esc(label)}: {float(reference):.1f}{esc(unit)}</title>'
            f'<line x1="{rx:.1f}" x2="{rx:.1f}" y1="2" y2="{HEIGHT - 2}" stroke="{colour}" stroke-dasharray="2 2"/>'
            f'<path d="M{rx:.1f} 0l3 3-3 3-3-3z" fill="{colour}"/></g>'
        )
    if interval is not None and None not in interval:
        lo, hi = (x(v) for v in interval)
        parts.append(f'<line class="ci" x1="{lo:.1f}" x2="{hi:.1f}" y1="{middle}" y2="{middle}" stroke="#93c5fd" '
                     f'stroke-width="6" stroke-linecap="round"><title>95% CI {float(interval[0]):.1f} to '
                     f'{float(interval[1]):.1f}{esc(unit)}</title></line>')
    if mean is not None:
        mx = x(mean)
        parts.append(f'<line class="mean" x1="{mx:.1f}" x2="{mx:.1f}" y1="{middle - 6}" y2="{middle + 6}" '
                     f'stroke="#1e3a8a" stroke-width="2"/>')
    for i, (seed, point) in enumerate(points.items()):
        value, suffix = point if isinstance(point, tuple) else (point, "")
        if value is None:
            continue
        cy = middle + ((i % 3) - 1) * 3  # small vertical offsets so equal values stay distinguishable
        parts.append(f'<circle class="seed" cx="{x(value):.1f}" cy="{cy:.1f}" r="2.6" fill="#1d4ed8" '
                     f'fill-opacity=".75"><title>seed {esc(seed)}: {float(value):.1f}{esc(unit)}{esc(suffix)}'
                     "</title></circle>")
    return (f'<svg class="dots" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
            f'aria-label="{len(points)} seeds">' + "".join(parts) + "</svg>")
