"""How well soft-mask and hard-mask images suppress the background, measured on the synthetic world.

The synthetic world stores the exact body mask of every image (`<world>/<domain>/masks_exact/<split
folder>/<stem>.png`), which the parser masks used in training only approximate. With it:
- foreground preservation inside the exact mask: `fg_psnr` (dB; inf when identical) and `fg_l1` (mean
  absolute difference), between the output and the input image, both in [0, 1] units;
- background suppression outside the exact mask: `bg_energy` = mean of (y + 1) / 2 over background
  pixels and channels (0 = perfectly black, the input's value when nothing is suppressed);
- structure inside the exact mask: `fg_ssim`, the mean over body pixels of the SSIM map (Wang et al. 2004:
  C1 = 0.01^2, C2 = 0.03^2, a Gaussian window of sigma 1.5 truncated to 7x7, averaged over the three
  channels) between output and input in [0, 1]. Each window's means, variances and covariance are taken
  over its body pixels only (normalised convolution with the mask), so the background, which a good
  soft-mask image blackens, does not enter: a copy of the body gives exactly 1 whatever the background;
- a checkerboard score (`checkerboard`): how much of an image's non-DC spectral power sits at the period-2
  frequencies, relative to the input images. Each image and channel has its mean removed and is multiplied
  by a periodic 2-D Hann window (against leakage from the borders); the power of its 2-D DFT is summed over
  three windows centred on the Nyquist bins (H/2, 0) (rows alternate), (0, W/2) (columns alternate) and
  (H/2, W/2) (a checkerboard), each `max(1, n // 32)` bins to either side along an axis of n pixels so that
  a pattern whose strength varies over the image is still caught. This period-2 power is divided by the
  power outside the DC bin (both summed over the images), and the output's share by the input's:
  1.0 = the same share as the originals, > 1 = added period-2 artefacts (transposed-convolution
  checkerboards), < 1 = smoother than the originals. H and W must be even;
- foreground the parser MISSED (exact mask AND NOT parser mask: bags, limbs, the paper's Fig. 4/5
  argument): `missed_psnr` and `missed_l1` between output and input in that region, same units. Hard-mask
  images made from the parser masks blacken this region by construction; soft-mask images can keep it.
Pixel values are float32 in [-1, 1]; masks {0, 1}. Means are over all pixels of all images (not means
of per-image values), so a few small people do not dominate.
"""

import os

import numpy as np
from PIL import Image
from scipy import ndimage

from bgshift_tf.data import images, shards, variants
from bgshift_tf.data import input as data_input
from bgshift_tf.data.synthetic import domain_paths

SUM_KEYS = ("fg_sq_err", "fg_abs_err", "fg_values", "bg_energy", "bg_values",
             "missed_sq_err", "missed_abs_err", "missed_values", "ssim_sum", "ssim_pixels",
             "period2_power", "ac_power", "input_period2_power", "input_ac_power")
SSIM_SIGMA, SSIM_RADIUS = 1.5, 3  # Gaussian window: sigma 1.5 px, 7x7
SSIM_C1, SSIM_C2 = 0.01**2, 0.03**2  # for a dynamic range of 1


def _region_sums(prefix, region, diff):
    """Squared / absolute error sums of `diff` over a {0,1} `region` (same shape) and its size."""
    return {f"{prefix}_sq_err": float(np.sum(region * diff**2)),
            f"{prefix}_abs_err": float(np.sum(region * np.abs(diff))), f"{prefix}_values": float(region.sum())}


def _check_images(name, values):
    values = np.asarray(values, np.float64)
    if values.ndim != 4:
        raise ValueError(f"`{name}` must be [B, H, W, C] images. Received: shape {values.shape}")
    return values


def masked_ssim_map(x, y, mask):
    """SSIM map of `x` vs `y` with every window restricted to `mask` (see the module docstring).

    Args:
        x, y: float [B,H,W,C] in [0, 1].
        mask: {0,1} [B,H,W,1], the region whose pixels enter each window's statistics.

    Returns:
        float64 [B,H,W]: the SSIM of each pixel's window averaged over channels, 0 outside `mask`.
    """
    x, y = _check_images("x", x), _check_images("y", y)
    mask = np.asarray(mask, np.float64)
    if x.shape != y.shape or mask.shape != x.shape[:3] + (1,):
        raise ValueError(f"x, y and mask must be [B,H,W,C], [B,H,W,C], [B,H,W,1]. Received: {x.shape}, "
                         f"{y.shape}, {mask.shape}")

    def blur(values):
        return ndimage.gaussian_filter(values, sigma=(0, SSIM_SIGMA, SSIM_SIGMA, 0), mode="constant",
                                       truncate=SSIM_RADIUS / SSIM_SIGMA)

    weight = blur(mask)
    weight = np.where(weight > 0, weight, 1.0)

    def mean(values):
        return blur(mask * values) / weight

    mean_x, mean_y = mean(x), mean(y)
    # Not clipped at 0, so that x == y gives the same value in numerator and denominator (SSIM exactly 1).
    var_x, var_y, cov = mean(x * x) - mean_x**2, mean(y * y) - mean_y**2, mean(x * y) - mean_x * mean_y
    ssim = ((2 * mean_x * mean_y + SSIM_C1) * (2 * cov + SSIM_C2)
            / ((mean_x**2 + mean_y**2 + SSIM_C1) * (var_x + var_y + SSIM_C2)))
    return ssim.mean(axis=-1) * mask[..., 0]


def period2_band(height, width):
    """bool [height, width]: the DFT bins of the three period-2 windows of the module docstring."""
    if height % 2 or width % 2:
        raise ValueError(f"the checkerboard score needs an even image size (a Nyquist bin). Received: "
                         f"{height}x{width}")
    rows, cols = np.arange(height)[:, None], np.arange(width)[None, :]
    reach_h, reach_w = max(1, height // 32), max(1, width // 32)

    def near(index, center, size, reach):
        distance = np.abs(index - center)
        return np.minimum(distance, size - distance) <= reach  # circular: bin 0 neighbours bin n - 1

    row_nyquist, col_nyquist = near(rows, height // 2, height, reach_h), near(cols, width // 2, width, reach_w)
    row_zero, col_zero = near(rows, 0, height, reach_h), near(cols, 0, width, reach_w)
    return (row_nyquist & col_zero) | (row_zero & col_nyquist) | (row_nyquist & col_nyquist)


def period2_power(images01):
    """(power in `period2_band`, power outside the DC bin) of float [B,H,W,C] images, summed over images
    and channels (units: squared pixel values x pixels^2). Each image and channel has its mean removed and
    is multiplied by a 2-D periodic Hann window first, so that the jump between opposite borders (the DFT
    treats the image as periodic) does not leak power into the period-2 bins; the window moves a pure
    period-2 pattern's power by one bin at most, which the band's reach covers."""
    images01 = _check_images("images01", images01)
    height, width = images01.shape[1:3]
    window = np.outer(np.hanning(height + 1)[:-1], np.hanning(width + 1)[:-1])[None, :, :, None]
    centred = (images01 - images01.mean(axis=(1, 2), keepdims=True)) * window
    power = np.abs(np.fft.fft2(centred, axes=(1, 2))) ** 2
    band = period2_band(height, width)
    return float(power[:, band, :].sum()), float(power.sum() - power[:, 0, 0, :].sum())


def checkerboard_score(period2, ac, input_period2, input_ac):
    """(period2 / ac) / (input_period2 / input_ac): the output's period-2 share over the input's (NaN
    when a share is undefined)."""
    if not ac or not input_ac or not input_period2:
        return float("nan")
    return float((period2 / ac) / (input_period2 / input_ac))


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
    inputs01, outputs01 = (inputs + 1.0) / 2.0, (outputs + 1.0) / 2.0
    period2, ac = period2_power(outputs01)
    input_period2, input_ac = period2_power(inputs01)
    return {**_region_sums("fg", masks, diff), **_region_sums("missed", missed, diff),
            "bg_energy": float(np.sum(background * outputs01)), "bg_values": float(background.sum()),
            "ssim_sum": float(masked_ssim_map(outputs01, inputs01, masks[..., :1]).sum()),
            "ssim_pixels": float(masks[..., 0].sum()), "period2_power": period2, "ac_power": ac,
            "input_period2_power": input_period2, "input_ac_power": input_ac}


def _add_sums(total, batch):
    """Adds one batch's `suppression_sums` into the running `total` (same keys), in place."""
    for key, value in batch.items():
        total[key] += value


def _psnr(sq_err, values):
    if not values:
        return float("nan")
    mse = sq_err / values
    return float("inf") if mse == 0 else float(10.0 * np.log10(1.0 / mse))


def finish(sums):
    """Metrics from accumulated sums: {"fg_psnr", "fg_ssim", "fg_l1", "bg_energy", "checkerboard",
    "missed_psnr", "missed_l1", "fg_values", "bg_values", "missed_values"} (NaN where a region is empty)."""
    fg, bg, missed = sums["fg_values"], sums["bg_values"], sums["missed_values"]
    return {"fg_psnr": _psnr(sums["fg_sq_err"], fg),
            "fg_ssim": sums["ssim_sum"] / sums["ssim_pixels"] if sums["ssim_pixels"] else float("nan"),
            "fg_l1": sums["fg_abs_err"] / fg if fg else float("nan"),
            "bg_energy": sums["bg_energy"] / bg if bg else float("nan"),
            "checkerboard": checkerboard_score(sums["period2_power"], sums["ac_power"],
                                               sums["input_period2_power"], sums["input_ac_power"]),
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


def paired_batches(world_dir, original_dir, other_dirs, *, split, batch_size=32, max_images=0, image_size=None):
    """Batches of a TFRecord folder and of folders made from it, in lockstep, with the exact body masks.

    Args:
        world_dir: the synthetic world folder (for `masks_exact`).
        original_dir: TFRecord folder of the original images.
        other_dirs: {name: TFRecord folder} written from `original_dir` (same record order and file names).
        split: split to read; max_images: stop after the batch that reaches this many images (0 = all).
        image_size: (H, W) to read at; None = the stored size of the first of `other_dirs`.

    Yields:
        (originals, {name: batch}, exact masks float32 [B,H,W,1]); batches as `make_record_batches` gives
        them. ValueError naming the folder when one is not in the originals' order.
    """
    if image_size is None:
        if not other_dirs:
            raise ValueError(f"`image_size` is needed to read {original_dir!r} alone")
        image_size = data_input.stored_image_size(shards.shard_files(next(iter(other_dirs.values())), split))
    readers = {name: iter(data_input.make_record_batches(shards.shard_files(d, split), image_size=image_size,
                                                         batch_size=batch_size))
               for name, d in {"original": original_dir, **other_dirs}.items()}
    seen = 0
    for originals in readers.pop("original"):
        batches = {name: next(reader) for name, reader in readers.items()}
        filenames = [n.decode() for n in originals["filename"].numpy()]
        for name, batch in batches.items():
            theirs = [n.decode() for n in batch["filename"].numpy()]
            if theirs != filenames:
                raise ValueError(f"generated folder {other_dirs[name]!r} is not in the order of "
                                 f"{original_dir!r}: {theirs[:3]} vs {filenames[:3]}")
        masks = np.stack([
            _exact_mask(world_dir, d.decode(), s.decode(), f, image_size)
            for d, s, f in zip(originals["domain_name"].numpy(), originals["split"].numpy(), filenames)])
        yield originals, batches, masks
        seen += len(filenames)
        if max_images and seen >= max_images:
            return


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
    sums = {name: dict.fromkeys(SUM_KEYS, 0.0) for name in ["original", *generated_dirs]}
    seen = 0
    for originals, batches, masks in paired_batches(world_dir, original_dir, generated_dirs, split=split,
                                                    batch_size=batch_size, max_images=max_images):
        inputs = originals["pixels"].numpy()
        # Records without a parser mask count as "parser found everything": no missed region.
        has_mask = originals["has_mask"].numpy().reshape(-1, 1, 1, 1) > 0
        parser = np.where(has_mask, originals["mask01"].numpy(), 1.0)
        for name, batch in {"original": originals, **batches}.items():
            _add_sums(sums[name], suppression_sums(inputs, batch["pixels"].numpy(), masks, parser))
        seen += len(inputs)
    return {name: {**finish(s), "num_images": seen} for name, s in sums.items()}


def blurred(batch, factor=2):
    """float [B,H,W,C] -> float32, the same size: area-downsampled by `factor`, bilinearly upsampled back
    (H and W multiples of `factor`). A fixed reconstruction that keeps only the coarse detail."""
    batch = np.asarray(batch, np.float32)
    b, h, w, c = batch.shape
    if h % factor or w % factor:
        raise ValueError(f"image size {h}x{w} is not a multiple of factor={factor}")
    small = batch.reshape(b, h // factor, factor, w // factor, factor, c).mean(axis=(2, 4))
    return images.resize(small, (h, w), "bilinear").numpy()


def blur_reference(world_dir, original_dir, *, split, image_size, factor=2, batch_size=64, max_images=0):
    """`suppression_metrics` of the originals against `blurred(originals, factor)`, read at `image_size`:
    how much foreground PSNR / SSIM a world's images lose to a fixed blur. Soft-mask images are partly
    such a reconstruction, so this tells how hard one world's bodies are to copy against another's (the
    study renders at 64x32, the demo at 128x64 and is read at 64x32). {metric: value, "num_images"}."""
    sums, seen = dict.fromkeys(SUM_KEYS, 0.0), 0
    for originals, _, masks in paired_batches(world_dir, original_dir, {}, split=split, batch_size=batch_size,
                                              max_images=max_images, image_size=image_size):
        inputs = originals["pixels"].numpy()
        _add_sums(sums, suppression_sums(inputs, blurred(inputs, factor), masks))
        seen += len(inputs)
    return {**finish(sums), "num_images": seen}

