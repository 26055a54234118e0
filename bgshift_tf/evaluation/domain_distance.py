"""Domain-distance analysis (the paper's Fig. 6), computed: features of each domain's images per image
variant, Barnes-Hut t-SNE per variant, domain centres, and L1 distances between them. `report.tsne` draws
the result and `report.domain_analysis` writes it (what `python -m bgshift_tf.visualize` runs).

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

From TFRecord folders (`measure_tfrecord_dirs`): for each domain folder, a seeded random sample of images
is read (`data.input.make_eval_dataset`), turned into each requested image variant (`data.variants.ALL`),
converted to features, and handed to `domain_distance`. Variants:
- "original": the images as stored;
- "hard_mask": `(x + 1) * m - 1` with the stored parser mask (every sampled image needs one);
- "soft_mask": the SBSGAN soft-mask image G(x, D̄) (needs `gan_run_dir`);
- "style_transfer": every domain except `style_target` transferred to domain `style_target` with
  G(x, D_k); the target domain's own images stay original (the paper's Fig. 6: Market transferred to
  Duke, compared with Duke) (needs `gan_run_dir`).
Features: downsampled pixels (`image_features`), or the re-ID embedding of `reid_run_dir` (IDE:
`embed(x)`; DA-2S: `embed((x, x))`, the variant fed to both streams). The generator and the re-ID model compute
in `precision` (a `core.precision` setting); their outputs are float32 in every precision.
"""

import itertools
import os
from collections.abc import Mapping

import numpy as np
import tensorflow as tf
from PIL import Image
from tqdm import tqdm

from bgshift_tf.data import input as data_input
from bgshift_tf.data import shards
from bgshift_tf.data import variants as image_variants
from bgshift_tf.data.images import hard_mask, to_model_range, to_uint8_rgb
from bgshift_tf.models.reid import DA2S
from bgshift_tf.training.gan_checkpoint import load_generator
from bgshift_tf.training.reid import load_reid_model


def image_features(images, size: tuple[int, int] = (32, 16)) -> np.ndarray:
    """Downsampled pixels as feature vectors.

    Args:
      images: `[N, H, W, 3]` uint8 in [0, 255] or float in [-1, 1] (or a list of such images).
      size: (height, width) after box-filter downsampling.
    Returns:
      float32 `[N, size_h * size_w * 3]` in [-1, 1].
    """
    rows = []
    for i, image in enumerate(images):
        rgb = Image.fromarray(to_uint8_rgb(image, name=f"images[{i}]"))
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
    # Imported here: scikit-learn takes ~1 s to import and only the t-SNE needs it.
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


# === From TFRecord folders ===


def sample_domain(tfrecord_dir, *, split: str, image_size, num_images: int, seed: int, batch_size: int = 64):
    """A seeded uniform random sample (reservoir sampling over the stored order) of one folder's split.

    Returns:
      {"image": float32 `[N, H, W, 3]` in [-1, 1], "mask": float32 `[N, H, W, 1]` in {0, 1},
       "has_mask": int64 `[N]`}, N = min(num_images, images in the split).
    """
    files = shards.shard_files(tfrecord_dir, split)
    dataset = data_input.make_eval_dataset(files, image_size=tuple(image_size), batch_size=batch_size)
    rng = np.random.default_rng(seed)
    kept: list[tuple] = []
    seen = 0
    for batch in dataset:
        images = batch["image"].numpy()
        masks, has_mask = batch["mask"].numpy(), batch["has_mask"].numpy()
        for i in range(len(images)):
            item = (images[i], masks[i], has_mask[i])
            if seen < num_images:
                kept.append(item)
            else:
                slot = rng.integers(0, seen + 1)
                if slot < num_images:
                    kept[slot] = item
            seen += 1
    if not kept:
        raise ValueError(f"TFRecord folder {os.fspath(tfrecord_dir)!r} has no images in split {split!r}")
    return {
        "image": np.stack([k[0] for k in kept]).astype(np.float32),
        "mask": np.stack([k[1] for k in kept]).astype(np.float32),
        "has_mask": np.array([k[2] for k in kept], dtype=np.int64),
    }


def _batched(fn, array, batch_size=32):
    return np.concatenate([np.asarray(fn(array[i : i + batch_size])) for i in range(0, len(array), batch_size)])


def variant_images(sample: dict, variant: str, *, domain: int, domain_name: str, generator=None,
                   style_target: int = 1) -> np.ndarray:
    """One variant of a domain's sampled images, float32 `[N, H, W, 3]` in [-1, 1]."""
    images = sample["image"]
    if variant == image_variants.ORIGINAL:
        return images
    if variant == image_variants.HARD_MASK:
        if not np.all(sample["has_mask"] == 1):
            missing = int(np.sum(sample["has_mask"] != 1))
            raise ValueError(
                f"variant 'hard_mask' needs masks, but {missing} sampled images of domain {domain_name!r} "
                "have none (build its TFRecords with --mask_dir)"
            )
        return hard_mask(images, sample["mask"])
    image_variants.check([variant], what="variant")
    if generator is None:
        raise ValueError(f"variant {variant!r} needs a trained SBSGAN: pass --gan_run_dir")
    if variant == image_variants.SOFT_MASK:
        return _batched(lambda x: generator.soft_mask(x, training=False), images)
    if domain == style_target:
        return images
    return _batched(
        lambda x: generator.style_transfer(x, np.full([len(x)], style_target, np.int32), training=False), images
    )


def _reid_features(model, images: np.ndarray) -> np.ndarray:
    height, width = model.image_shape[:2]
    if images.shape[1:3] != (height, width):
        images = tf.image.resize(images, (height, width)).numpy()
    if isinstance(model, DA2S):
        return _batched(lambda x: model.embed((x, x), training=False), images)
    return _batched(lambda x: model.embed(x, training=False), images)


def measure_tfrecord_dirs(
    tfrecord_dirs,
    *,
    variants,
    domain_names=None,
    split: str = "train",
    num_per_domain: int = 200,
    image_size=(64, 32),
    feature_size=(32, 16),
    seed: int = 0,
    perplexity: float = 30.0,
    gan_run_dir: str | None = None,
    reid_run_dir: str | None = None,
    style_target: int = 1,
    precision: str = "float32",
) -> tuple[dict, dict]:
    """Runs the domain-distance analysis of TFRecord folders (`report.domain_analysis.analyze_tfrecord_dirs`
    draws and writes it).

    Args:
      tfrecord_dirs: one TFRecord folder per domain; the position is the domain index.
      variants: names from `data.variants.ALL`.
      domain_names: display names (default: the folders' base names).
      image_size: (H, W) images are read at; replaced by the generator's size with `gan_run_dir`.
      feature_size: (H, W) of the downsampled-pixel features (unused with `reid_run_dir`).
      precision: compute precision of the generator and the re-ID model (`core.precision.PRECISIONS`).
    Returns:
      (result, summary): the `domain_distance` result (with embeddings), and its JSON summary
      (`to_json` of the result plus "features", "split", "tfrecord_dirs").
    """
    tfrecord_dirs = [os.fspath(d) for d in tfrecord_dirs]
    if len(tfrecord_dirs) < 2:
        raise ValueError(f"`tfrecord_dirs` needs at least 2 domain folders. Received: {tfrecord_dirs}")
    names = list(domain_names or [os.path.basename(os.path.normpath(d)) for d in tfrecord_dirs])
    if len(names) != len(tfrecord_dirs) or len(set(names)) != len(names):
        raise ValueError(f"`domain_names` must be one unique name per folder. Received: {names}")
    variants = image_variants.check(variants)
    if not 0 <= style_target < len(tfrecord_dirs):
        raise ValueError(f"`style_target` must index one of the {len(tfrecord_dirs)} folders. Received: {style_target}")
    generator = None
    if gan_run_dir:
        generator = load_generator(gan_run_dir, precision)
        image_size = tuple(generator.image_size)
    reid_model = None
    if reid_run_dir:
        reid_model = load_reid_model(reid_run_dir, precision)

    features = {variant: {} for variant in variants}
    for domain, (folder, name) in enumerate(tqdm(list(zip(tfrecord_dirs, names)), desc="domains", unit="domain")):
        sample = sample_domain(folder, split=split, image_size=image_size, num_images=num_per_domain, seed=seed)
        for variant in variants:
            images = variant_images(sample, variant, domain=domain, domain_name=name, generator=generator,
                                    style_target=style_target)
            features[variant][name] = (
                _reid_features(reid_model, images) if reid_model is not None
                else image_features(images, size=tuple(feature_size))
            )
    result = domain_distance(features, seed=seed, perplexity=perplexity)
    summary = {
        **to_json(result),
        "features": f"re-ID embedding of {reid_run_dir}" if reid_model is not None
        else f"pixels downsampled to {tuple(feature_size)}",
        "split": split,
        "tfrecord_dirs": tfrecord_dirs,
    }
    return result, summary
