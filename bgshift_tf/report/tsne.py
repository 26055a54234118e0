"""Domain-distance figure (the paper's Fig. 6): the t-SNE panels of an `evaluation.domain_distance`
result, one per image variant, with the domain centres and their distances.
"""

from collections.abc import Mapping, Sequence

import numpy as np


_COLOURS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
_MARKERS = ("o", "^", "s", "D", "v", "P")


def plot_domain_distance(result: Mapping, *, variants: Sequence[str] | None = None, ncols: int = 4):
    """Scatter plot per variant: points coloured by domain, centres marked 'C-<domain>', and the
    distances in each panel's title (2-D L1 and feature-space separation; the mean over pairs if K > 2).

    Args:
      result: output of `domain_distance` (with embeddings).
      variants: panel order (default: all, in result order).
    Returns:
      matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    variants = list(variants or result["variants"])
    domains = result["domains"]
    ncols = min(ncols, len(variants))
    nrows = -(-len(variants) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 3.6 * nrows), squeeze=False)
    pairs = result["pairs"]
    # Centres of similar domains coincide: stagger their labels so they stay readable.
    offsets = [(6, 6), (6, -14), (-14, 16), (-14, -22)]
    for ax, variant in zip(axes.flat, variants):
        entry = result["variants"][variant]
        for i, domain in enumerate(domains):
            colour, marker = _COLOURS[i % len(_COLOURS)], _MARKERS[i % len(_MARKERS)]
            points = np.asarray(entry["embedding"][domain])
            ax.scatter(points[:, 0], points[:, 1], s=9, c=colour, marker=marker, alpha=0.45, linewidths=0,
                       label=domain)
            cx, cy = entry["centres_2d"][domain]
            ax.scatter([cx], [cy], s=110, c=colour, marker=marker, edgecolors="black", linewidths=1.2,
                       zorder=3)
            ax.annotate(f"C-{domain}", (cx, cy), xytext=offsets[i % len(offsets)], textcoords="offset points",
                        fontsize=8, weight="bold", color=colour)
        l1_2d = np.mean([entry["l1_2d"][p] for p in pairs])
        separation = np.mean([entry["separation"][p] for p in pairs])
        scope = "" if len(pairs) == 1 else f" (mean of {len(pairs)} pairs)"
        ax.set_title(f"{variant}\n2-D L1 {l1_2d:.2f} · separation {separation:.2f}{scope}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[len(variants):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7, loc="lower left", markerscale=1.5, frameon=False)
    fig.tight_layout()
    return fig
