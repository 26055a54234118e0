"""Domain-distance analysis straight from TFRecord folders (what `python -m bgshift_tf.visualize` runs).

For each domain folder, a seeded random sample of images is read (`data.input.make_eval_dataset`),
turned into each requested image variant (`data.variants.ALL`), converted to features, and handed to
`report.tsne.domain_distance`. Variants:
- "original": the images as stored;
- "hard_mask": `(x + 1) * m - 1` with the stored parser mask (every sampled image needs one);
- "soft_mask": the SBSGAN soft-mask image G(x, D̄) (needs `gan_run_dir`);
- "style_transfer": every domain except `style_target` transferred to domain `style_target` with
  G(x, D_k); the target domain's own images stay original (the paper's Fig. 6: Market transferred to
  Duke, compared with Duke) (needs `gan_run_dir`).
Features: downsampled pixels (`tsne.image_features`), or the re-ID embedding of `reid_run_dir` (IDE:
`embed(x)`; DA-2S: `embed((x, x))`, the variant fed to both streams). The generator and the re-ID model compute
in `precision` (a `training.precision` setting); their outputs are float32 in every precision.
"""

import json
import os

import numpy as np
from tqdm import tqdm

from bgshift_tf import atomic_io
from bgshift_tf.data.images import hard_mask
from bgshift_tf.data import variants as image_variants
from bgshift_tf.report import figures, tsne


def sample_domain(tfrecord_dir, *, split: str, image_size, num_images: int, seed: int, batch_size: int = 64):
    """A seeded uniform random sample (reservoir sampling over the stored order) of one folder's split.

    Returns:
      {"image": float32 `[N, H, W, 3]` in [-1, 1], "mask": float32 `[N, H, W, 1]` in {0, 1},
       "has_mask": int64 `[N]`}, N = min(num_images, images in the split).
    """
    from bgshift_tf.data import input as data_input
    from bgshift_tf.data import shards

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
    import tensorflow as tf

    from bgshift_tf.models.reid import DA2S

    height, width = model.image_shape[:2]
    if images.shape[1:3] != (height, width):
        images = tf.image.resize(images, (height, width)).numpy()
    if isinstance(model, DA2S):
        return _batched(lambda x: model.embed((x, x), training=False), images)
    return _batched(lambda x: model.embed(x, training=False), images)


def analyze_tfrecord_dirs(
    tfrecord_dirs,
    *,
    variants,
    out_dir,
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
) -> dict:
    """Runs the domain-distance analysis and writes `<out_dir>/domain_distance.{png,json}`.

    Args:
      tfrecord_dirs: one TFRecord folder per domain; the position is the domain index.
      variants: names from `data.variants.ALL`.
      domain_names: display names (default: the folders' base names).
      image_size: (H, W) images are read at; replaced by the generator's size with `gan_run_dir`.
      feature_size: (H, W) of the downsampled-pixel features (unused with `reid_run_dir`).
      precision: compute precision of the generator and the re-ID model (`training.precision.PRECISIONS`).
    Returns:
      the JSON written (`tsne.to_json` of the result plus "features", "split", "tfrecord_dirs",
      "figure" = the PNG path).
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
        from bgshift_tf.training.gan import load_generator

        generator = load_generator(gan_run_dir, precision)
        image_size = tuple(generator.image_size)
    reid_model = None
    if reid_run_dir:
        from bgshift_tf.training.reid import load_reid_model

        reid_model = load_reid_model(reid_run_dir, precision)

    features = {variant: {} for variant in variants}
    for domain, (folder, name) in enumerate(tqdm(list(zip(tfrecord_dirs, names)), desc="domains", unit="domain")):
        sample = sample_domain(folder, split=split, image_size=image_size, num_images=num_per_domain, seed=seed)
        for variant in variants:
            images = variant_images(sample, variant, domain=domain, domain_name=name, generator=generator,
                                    style_target=style_target)
            features[variant][name] = (
                _reid_features(reid_model, images) if reid_model is not None
                else tsne.image_features(images, size=tuple(feature_size))
            )
    result = tsne.domain_distance(features, seed=seed, perplexity=perplexity)
    os.makedirs(out_dir, exist_ok=True)
    figure_path = figures.save_figure(tsne.plot_domain_distance(result), os.path.join(out_dir, "domain_distance.png"))
    summary = {
        **tsne.to_json(result),
        "features": f"re-ID embedding of {reid_run_dir}" if reid_model is not None
        else f"pixels downsampled to {tuple(feature_size)}",
        "split": split,
        "tfrecord_dirs": tfrecord_dirs,
        "figure": figure_path,
    }
    atomic_io.write_text(os.path.join(out_dir, "domain_distance.json"), json.dumps(summary, indent=2))
    return summary
