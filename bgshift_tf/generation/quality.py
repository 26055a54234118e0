"""How well soft-mask and hard-mask images suppress the background, measured on the synthetic world.

The synthetic world stores the exact body mask of every image (`<world>/<domain>/masks_exact/<split
folder>/<stem>.png`), which the parser masks used in training only approximate. With it:
- foreground preservation inside the exact mask: `fg_psnr` (dB; inf when identical) and `fg_l1` (mean
  absolute difference), between the output and the input image, both in [0, 1] units;
- background suppression outside the exact mask: `bg_energy` = mean of (y + 1) / 2 over background
  pixels and channels (0 = perfectly black, the input's value when nothing is suppressed);
- foreground the parser MISSED (exact mask AND NOT parser mask: bags, limbs, the paper's Fig. 4/5
  argument): `missed_psnr` and `missed_l1` between output and input in that region, same units. Hard-mask
  images made from the parser masks blacken this region by construction; soft-mask images can keep it.
Pixel values are float32 in [-1, 1]; masks {0, 1}. Means are over all pixels of all images (not means
of per-image values), so a few small people do not dominate.
"""

import os

import numpy as np
from PIL import Image

from bgshift_tf.data import images, shards, variants
from bgshift_tf.data import input as data_input
from bgshift_tf.data.synthetic import domain_paths

_SUM_KEYS = ("fg_sq_err", "fg_abs_err", "fg_values", "bg_energy", "bg_values",
             "missed_sq_err", "missed_abs_err", "missed_values")


def _region_sums(prefix, region, diff):
    """Squared / absolute error sums of `diff` over a {0,1} `region` (same shape) and its size."""
    return {f"{prefix}_sq_err": float(np.sum(region * diff**2)),
            f"{prefix}_abs_err": float(np.sum(region * np.abs(diff))), f"{prefix}_values": float(region.sum())}


def suppression_sums(inputs, outputs, exact_masks, parser_masks=None):
    """Sums behind the metrics for one batch.

    Args:
        inputs, outputs: float [B,H,W,3] in [-1,1].
        exact_masks: {0,1} [B,H,W,1], the true body.
        parser_masks: {0,1} [B,H,W,1], the noisy masks hard-mask images are made from; None -> no
            missed-region sums (they stay 0 and the missed metrics come out NaN).
    """
    inputs, outputs = np.asarray(inputs, np.float64), np.asarray(outputs, np.float64)
    if inputs.shape != outputs.shape:
        raise ValueError(f"inputs and outputs differ in shape: {inputs.shape} vs {outputs.shape}")
    masks = np.broadcast_to(np.asarray(exact_masks, np.float64), inputs.shape)
    missed = np.zeros_like(masks)
    if parser_masks is not None:
        parser = np.asarray(parser_masks, np.float64)
        if parser.shape != np.shape(exact_masks):
            raise ValueError(f"parser_masks and exact_masks differ in shape: {parser.shape} vs "
                             f"{np.shape(exact_masks)}")
        missed = masks * (1.0 - np.broadcast_to(parser, inputs.shape))
    diff = (outputs - inputs) / 2.0  # in [0, 1] units
    background = 1.0 - masks
    return {**_region_sums("fg", masks, diff), **_region_sums("missed", missed, diff),
            "bg_energy": float(np.sum(background * (outputs + 1.0) / 2.0)), "bg_values": float(background.sum())}


def _psnr(sq_err, values):
    if not values:
        return float("nan")
    mse = sq_err / values
    return float("inf") if mse == 0 else float(10.0 * np.log10(1.0 / mse))


def finish(sums):
    """Metrics from accumulated sums: {"fg_psnr", "fg_l1", "bg_energy", "missed_psnr", "missed_l1",
    "fg_values", "bg_values", "missed_values"} (NaN where a region is empty)."""
    fg, bg, missed = sums["fg_values"], sums["bg_values"], sums["missed_values"]
    return {"fg_psnr": _psnr(sums["fg_sq_err"], fg), "fg_l1": sums["fg_abs_err"] / fg if fg else float("nan"),
            "bg_energy": sums["bg_energy"] / bg if bg else float("nan"),
            "missed_psnr": _psnr(sums["missed_sq_err"], missed),
            "missed_l1": sums["missed_abs_err"] / missed if missed else float("nan"),
            "fg_values": fg, "bg_values": bg, "missed_values": missed}


def suppression_metrics(inputs, outputs, exact_masks, parser_masks=None):
    """Metrics of one set of arrays (see the module docstring and `suppression_sums`)."""
    return finish(suppression_sums(inputs, outputs, exact_masks, parser_masks))


def _exact_mask(world_dir, domain_name, split, filename, image_size):
    folder = domain_paths(world_dir, domain_name)["exact_mask_dir"]
    path = os.path.join(folder, images.split_folder(split), os.path.splitext(filename)[0] + ".png")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No exact mask {path!r} for image {filename!r} (world_dir={world_dir!r})")
    with Image.open(path) as image:
        mask = (np.asarray(image.convert("L")) > 127).astype(np.float32)[..., None]
    return images.resize(mask, image_size, "nearest").numpy()


def evaluate_suppression(world_dir, original_dir, generated_dirs, *, split="train", batch_size=32, max_images=0):
    """Foreground preservation and background suppression of generated TFRecord folders vs the originals.

    Args:
        world_dir: the synthetic world folder (for `masks_exact`).
        original_dir: TFRecord folder of the original images (the generator's input).
        generated_dirs: {variant: TFRecord folder} written by `translate_dataset` from `original_dir`
            (variants from `data.variants.GENERATED`, e.g. {"soft_mask": ..., "hard_mask": ...}); same
            record order and file names.
        split: split to measure; max_images: stop after the batch that reaches this many images (0 = all).

    Returns:
        {variant: metrics} for every generated folder plus "original" (the input itself: its `bg_energy`
        is the no-suppression reference). The missed region uses the parser masks stored in
        `original_dir`'s records; images without a stored mask add nothing to it.
    """
    variants.check(generated_dirs, allowed=variants.GENERATED, what="generated_dirs")
    first = next(iter(generated_dirs.values()))
    image_size = data_input.stored_image_size(shards.shard_files(first, split))
    readers = {name: iter(data_input.make_record_batches(shards.shard_files(d, split), image_size=image_size,
                                                         batch_size=batch_size))
               for name, d in {"original": original_dir, **generated_dirs}.items()}
    sums = {name: dict.fromkeys(_SUM_KEYS, 0.0) for name in readers}
    seen = 0
    for originals in readers["original"]:
        batches = {name: next(reader) for name, reader in readers.items() if name != "original"}
        filenames = [n.decode() for n in originals["filename"].numpy()]
        for name, batch in batches.items():
            theirs = [n.decode() for n in batch["filename"].numpy()]
            if theirs != filenames:
                raise ValueError(f"generated folder {generated_dirs[name]!r} is not in the order of "
                                 f"{original_dir!r}: {theirs[:3]} vs {filenames[:3]}")
        masks = np.stack([
            _exact_mask(world_dir, d.decode(), s.decode(), f, image_size)
            for d, s, f in zip(originals["domain_name"].numpy(), originals["split"].numpy(), filenames)])
        inputs = originals["pixels"].numpy()
        # Records without a parser mask count as "parser found everything": no missed region.
        has_mask = originals["has_mask"].numpy().reshape(-1, 1, 1, 1) > 0
        parser = np.where(has_mask, originals["mask01"].numpy(), 1.0)
        for name, batch in {"original": originals, **batches}.items():
            sums_now = suppression_sums(inputs, batch["pixels"].numpy(), masks, parser)
            for key, value in sums_now.items():
                sums[name][key] += value
        seen += len(filenames)
        if max_images and seen >= max_images:
            break
    return {name: {**finish(s), "num_images": seen} for name, s in sums.items()}
