"""Domain-distance analysis (the paper's Fig. 6): Barnes-Hut t-SNE per image variant, domain centres,
and L1 distances between them.

The paper embeds images of two domains with Barnes-Hut t-SNE, marks each domain's centre ('C-') and
reports the L1 distance between centres in the 2-D embedding (e.g. hard-mask 10.19, soft-mask 10.90).
We report that number too ("2-D", ``l1_2d``), but t-SNE preserves neighbourhoods, not distances between
clusters, and its scale depends on the number of points and the perplexity: compare it only between
variants of the same run. The numbers computed in the original feature space are the trustworthy ones:
- ``l1_feature``: L1 distance between the domain centres divided by the feature dimension (the mean
  absolute difference per feature; for pixel features in [-1, 1] it is in [0, 2]);
- ``separation``: L1 distance between the centres divided by the mean L1 distance of the points to
  their own centre (a scale-free gap/spread ratio: ~0 for identical domains, >1 for clearly apart).

Inputs are plain arrays: ``features_by_variant = {variant: {domain: float [N_d, D]}}``, e.g. downsampled
pixels from `image_features` or re-ID embeddings.
"""

import itertools
from collections.abc import Mapping, Sequence

import numpy as np

from bgshift_tf.data.images import to_model_range
from bgshift_tf.report import figures


def image_features(images, size: tuple[int, int] = (32, 16)) -> np.ndarray:
    """Downsampled pixels as feature vectors.

    Args:
      images: `[N, H, W, 3]` uint8 in [0, 255] or float in [-1, 1] (or a list of such images).
      size: (height, width) after box-filter downsampling.
    Returns:
      float32 `[N, size_h * size_w * 3]` in [-1, 1].
    """
    from PIL import Image

    rows = []
    for i, image in enumerate(images):
        rgb = Image.fromarray(figures.to_uint8_rgb(image, name=f"images[{i}]"))
        small = np.asarray(rgb.resize((size[1], size[0]), Image.Resampling.BOX), dtype=np.float32)
        rows.append(to_model_range(small.reshape(-1)))
    if not rows:
        raise ValueError("`images` is empty.")
    return np.stack(rows)


def pair_name(a: str, b: str) -> str:
    """Key of a domain pair in the result dicts: "a vs b"."""
    return f"{a} vs {b}"


def _check_features(features_by_variant):
    if not features_by_variant:
        raise ValueError("`features_by_variant` is empty.")
    domains = None
    for variant, by_domain in features_by_variant.items():
        if len(by_domain) < 2:
            raise ValueError(f"variant {variant!r} needs at least 2 domains. Received: {list(by_domain)}")
        if domains is None:
            domains = list(by_domain)
        elif list(by_domain) != domains:
            raise ValueError(f"variant {variant!r} has domains {list(by_domain)}, others have {domains}")
        dims = set()
        for domain, array in by_domain.items():
            array = np.asarray(array)
            if array.ndim != 2 or len(array) < 2:
                raise ValueError(
                    f"features[{variant!r}][{domain!r}] must be [N >= 2, D]. Received shape: {array.shape}"
                )
            if not np.all(np.isfinite(array)):
                raise ValueError(f"features[{variant!r}][{domain!r}] holds NaN or Inf.")
            dims.add(array.shape[1])
        if len(dims) != 1:
            raise ValueError(f"variant {variant!r}: domains differ in feature size {sorted(dims)}")
    return domains


def _embed(points: np.ndarray, *, seed: int, perplexity: float, pca_dims: int, max_iter: int,
           threads: int) -> np.ndarray:
    """PCA to at most `pca_dims` (the usual t-SNE preprocessing), then 2-D Barnes-Hut t-SNE."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    points = points.astype(np.float64)
    dims = min(pca_dims, points.shape[0] - 1, points.shape[1])
    if dims < points.shape[1]:
        points = PCA(n_components=dims, random_state=seed).fit_transform(points)
    # t-SNE needs perplexity < number of points; the usual rule keeps it below (N - 1) / 3.
    perplexity = float(min(perplexity, max(1.0, (points.shape[0] - 1) / 3.0)))
    tsne = TSNE(
        n_components=2, method="barnes_hut", perplexity=perplexity, init="pca", learning_rate="auto",
        max_iter=max_iter, random_state=seed,
    )
    # scikit-learn's Barnes-Hut gradient runs on OpenMP threads, which spin-wait: on a machine busy with
    # other jobs 2 threads made a 50-point embedding 40x slower (23 s vs 0.6 s) than one thread.
    with threadpool_limits(limits=threads, user_api="openmp"):
        return tsne.fit_transform(points)


def _spread(points: np.ndarray, centre: np.ndarray) -> float:
    return float(np.mean(np.sum(np.abs(points - centre), axis=1)))


def domain_distance(
    features_by_variant: Mapping[str, Mapping[str, np.ndarray]],
    *,
    seed: int = 0,
    perplexity: float = 30.0,
    pca_dims: int = 50,
    max_iter: int = 1000,
    threads: int = 1,
) -> dict:
    """t-SNE embedding and domain-centre distances per image variant.

    Each variant gets its own t-SNE of all its domains' points (as in the paper's Fig. 6).

    Args:
      features_by_variant: {variant: {domain: float `[N_d, D]`}}; every variant has the same domains in
        the same order, and D is shared within a variant.
      seed: seeds PCA and t-SNE; the same inputs and seed give the same result.
      perplexity: t-SNE perplexity (capped at (N - 1) / 3 for small N).
      pca_dims: features are first reduced to this many principal components.
      max_iter: t-SNE iterations (>= 250).
      threads: OpenMP threads for t-SNE (1 is fast at these sizes and robust on a busy machine).
    Returns:
      {"seed", "perplexity", "domains": [names], "pairs": ["a vs b", ...], "variants": {variant: {
        "num_points": {domain: N_d},
        "embedding": {domain: float `[N_d, 2]`}, "centres_2d": {domain: [x, y]},
        "l1_2d": {pair: float},          # L1 between 2-D centres (the paper's number; within-run only)
        "l1_feature": {pair: float},     # L1 between feature-space centres / D
        "separation": {pair: float},     # feature-space centre L1 / mean point-to-own-centre L1
      }}}. `to_json` drops the embeddings.
    """
    domains = _check_features(features_by_variant)
    pairs = list(itertools.combinations(domains, 2))
    result = {
        "seed": seed,
        "perplexity": perplexity,
        "domains": domains,
        "pairs": [pair_name(a, b) for a, b in pairs],
        "variants": {},
    }
    for variant, by_domain in features_by_variant.items():
        arrays = {d: np.asarray(by_domain[d], dtype=np.float64) for d in domains}
        stacked = np.concatenate([arrays[d] for d in domains])
        embedded = _embed(stacked, seed=seed, perplexity=perplexity, pca_dims=pca_dims, max_iter=max_iter,
                          threads=threads)
        bounds = np.cumsum([0] + [len(arrays[d]) for d in domains])
        embedding = {d: embedded[bounds[i] : bounds[i + 1]] for i, d in enumerate(domains)}
        centres_2d = {d: embedding[d].mean(axis=0) for d in domains}
        centres = {d: arrays[d].mean(axis=0) for d in domains}
        spreads = {d: _spread(arrays[d], centres[d]) for d in domains}
        entry = {
            "num_points": {d: len(arrays[d]) for d in domains},
            "embedding": embedding,
            "centres_2d": {d: [float(v) for v in centres_2d[d]] for d in domains},
            "l1_2d": {}, "l1_feature": {}, "separation": {},
        }
        for a, b in pairs:
            key = pair_name(a, b)
            gap = float(np.sum(np.abs(centres[a] - centres[b])))
            entry["l1_2d"][key] = float(np.sum(np.abs(centres_2d[a] - centres_2d[b])))
            entry["l1_feature"][key] = gap / stacked.shape[1]
            entry["separation"][key] = gap / max((spreads[a] + spreads[b]) / 2.0, 1e-12)
        result["variants"][variant] = entry
    return result


def to_json(result: Mapping) -> dict:
    """`domain_distance` result without the per-point embeddings (JSON-able)."""
    return {
        **{k: v for k, v in result.items() if k != "variants"},
        "variants": {
            variant: {k: v for k, v in entry.items() if k != "embedding"}
            for variant, entry in result["variants"].items()
        },
    }


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
