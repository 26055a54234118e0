"""The report's figures that need the trained models (the `figures` stage), written as files.

`write_figures(ctx, ...)` writes `<run_dir>/figures/`:
    sbsgan_outputs.png   Fig. 1/4/5 analogue: per domain a few images as original, parser mask, hard mask,
                         soft mask (+ one row per ablation SBSGAN), style transfer to every domain, reconstruction
    ranked_lists.png     top-10 ranked lists of one model on the primary target (from its feature cache),
                         served by an exact FAISS index of the gallery (`evaluation.gallery.index_top_k`)
    figures.json         {"suppression_grids": [entry], "ranked_lists": [entry]}, entry = {"image": file name,
                         "title", "caption"} (ranked lists also "index": {"kind", "distance", "size",
                         "exact"}); `workflow.report_data` reads it.
The generators are loaded in the run's compute precision (`ctx.precision`).
"""

import os

import numpy as np
import tensorflow as tf

from bgshift_tf.core import atomic_io
from bgshift_tf.data import input as data_input
from bgshift_tf.data import shards
from bgshift_tf.data.images import hard_mask
from bgshift_tf.evaluation import gallery as gallery_lib
from bgshift_tf.evaluation.domain_distance import sample_domain
from bgshift_tf.report import figures, grids
from bgshift_tf.training.gan_checkpoint import load_generator

GRID_FILE = "sbsgan_outputs.png"
RANKED_FILE = "ranked_lists.png"


def _eval_images(folder, split, image_size, indices):
    """{index: image float [H,W,3] in [-1,1]} of the records at `indices` (stored order) of a split."""
    wanted, found, offset = set(int(i) for i in indices), {}, 0
    for batch in data_input.make_eval_dataset(shards.shard_files(folder, split), image_size=image_size,
                                              batch_size=256):
        images = batch["image"].numpy()
        for i in range(len(images)):
            if offset + i in wanted:
                found[offset + i] = images[i]
        offset += len(images)
        if len(found) == len(wanted):
            break
    return found


def _cached_features(path):
    """features float [N, D], pids, camids int [N] from an `evaluate_run` feature-cache file."""
    with np.load(path) as cached:
        return {name: cached[name] for name in ("features", "pids", "camids")}


def ranked_list_figure(ctx, key, num_queries):
    """(image, entry) of the ranked lists of model `key` on the primary target, from its cached features."""
    cache = os.path.join(ctx.eval_dir(key), f"{ctx.target}_features")
    query, gallery = (_cached_features(os.path.join(cache, f"{split}_features.npz")) for split in ("query", "gallery"))
    indices, correct, index = gallery_lib.index_top_k(query, gallery, distance=ctx.config["eval_distance"], k=10)
    chosen = np.linspace(0, len(query["pids"]) - 1, num=min(num_queries, len(query["pids"]))).round().astype(int)
    folder = ctx.tfrecords(ctx.target)
    size = (ctx.gan["image_height"], ctx.gan["image_width"])
    query_images = _eval_images(folder, "query", size, chosen)
    gallery_images = _eval_images(folder, "gallery", size, [i for q in chosen for i in indices[q] if i >= 0])
    rows = [{"query": query_images[q], "gallery": [gallery_images[i] for i in indices[q] if i >= 0],
             "correct": [bool(c) for i, c in zip(indices[q], correct[q]) if i >= 0],
             "label": f"q {int(query['pids'][q]):04d} c{int(query['camids'][q])}"} for q in chosen]
    return grids.ranked_lists(rows, top_k=10), {
        "image": RANKED_FILE, "title": f"{key}: {ctx.source} → {ctx.target}, top 10",
        "caption": f"Original images shown; green = same identity, red = other identity. Gallery items of "
                   f"the query's own identity and camera are excluded (evaluation protocol). Served by an exact "
                   f"FAISS index ({index['kind']}, {index['distance']}) of {index['size']:,} gallery images.",
        "index": {key: index[key] for key in ("kind", "distance", "size", "exact")}}


def _grid_columns(ctx, generator, extras, index, sample):
    """{row name: images [N,H,W,C]} of one domain's sample in the SBSGAN grid."""
    images = tf.constant(sample["image"])
    soft = generator.soft_mask(images).numpy()
    columns = {"original": sample["image"], "parser_mask": sample["mask"],
               "hard_mask": hard_mask(sample["image"], sample["mask"]), "soft_mask": soft}
    for label, extra in extras.items():
        columns[f"soft_mask_{label}"] = extra.soft_mask(images).numpy()
    for k, name in enumerate(ctx.domains):
        columns[f"to_{name}"] = generator.style_transfer(images, tf.fill([len(images)], k)).numpy()
    columns["reconstruction"] = generator.style_transfer(tf.constant(soft), tf.fill([len(images)], index)).numpy()
    return columns


def suppression_grid(ctx, extra_generators):
    """(image, entry) of the Fig. 1/4/5 analogue; `extra_generators` {label: gan run dir} add a soft-mask row each."""
    generator = load_generator(ctx.gan_dir(), ctx.precision)
    extras = {label: load_generator(path, ctx.precision) for label, path in extra_generators.items()}
    size = tuple(generator.image_size)
    samples = []
    for index, domain in enumerate(ctx.domains):
        sample = sample_domain(ctx.tfrecords(domain), split="train", image_size=size,
                               num_images=ctx.config["num_grid_samples"], seed=1)
        columns = _grid_columns(ctx, generator, extras, index, sample)
        for i in range(len(sample["image"])):
            # One label per domain: the columns are narrower than a domain name at 64 px.
            samples.append({"label": domain if i == 0 else "", **{name: values[i] for name, values in columns.items()}})
    rows = (["original", "parser_mask", "hard_mask", "soft_mask"] + [f"soft_mask_{k}" for k in extras]
            + [f"to_{name}" for name in ctx.domains] + ["reconstruction"])
    labels = {"reconstruction": "soft mask → source\n(reconstruction)",
              **{f"soft_mask_{k}": f"soft mask\n{k}" for k in extras}}
    scale = 1.0 if size[0] >= 128 else 2.0
    return grids.variant_grid(samples, rows, variant_labels=labels, scale=scale), {
        "image": GRID_FILE, "title": "SBSGAN outputs per domain",
        "caption": "Columns: training images of each domain. Rows: original, the noisy parser mask, hard mask "
                   "(black background), SBSGAN soft mask G(x, D̄), style transfer G(x, D_k) to each domain, "
                   "and the soft-mask image mapped back to its own domain."}


def write_figures(ctx, extra_generators, ranked_key) -> str:
    """Writes the figures and `figures.json` into `ctx.figures_dir()`; returns the index path."""
    index = {}
    grid, entry = suppression_grid(ctx, extra_generators)
    figures.save_png(grid, os.path.join(ctx.figures_dir(), GRID_FILE))
    index["suppression_grids"] = [entry]
    if ctx.config["num_ranked_queries"] > 0:
        image, entry = ranked_list_figure(ctx, ranked_key, ctx.config["num_ranked_queries"])
        figures.save_png(image, os.path.join(ctx.figures_dir(), RANKED_FILE))
        index["ranked_lists"] = [entry]
    atomic_io.write_json(ctx.figures_index(), index)
    return ctx.figures_index()
