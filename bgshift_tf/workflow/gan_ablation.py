"""SBSGAN recipe ablations on the synthetic world: each trial's settings trained per seed at one budget, its
soft-mask images measured against the exact masks (the library behind `python -m bgshift_tf.gan_ablation`).

- `run_ablation(pipeline_config, trials, seeds, out_path, max_images=256, log=print) -> dict`:
  1. the world and its TFRecords through the pipeline's own `world` and `tfrecords` stages (reused when
     complete), in `<runs_root>/<name>/`;
  2. for each trial (name -> "key=value" SBSGAN settings over the pipeline's gan flagfile and
     gan_overrides) and seed: `train_sbsgan` into `<run>/ablation/<trial>_s<seed>/` (resumed when cut
     short) with `seed` as the trainer's seed;
  3. the trained generator (its weight average when it keeps one) makes soft-mask images of the first
     `max_images` images of `split` (default train; 0 = all) of every domain; they go through the JPEG encoding generated records use
     (`generation.translate.encode_image`), so the figures are those of `quality.json`'s soft-mask rows;
     `generation.quality` measures them (fg_psnr, fg_ssim, bg_energy, checkerboard, ...) per domain;
  4. `out_path` (JSON, rewritten atomically after every trial and seed, so a cut-short run keeps what
     finished and skips it when re-run): {"cpu", "budget": the shared settings, "trials": {trial:
     {"settings", "seeds": {seed: {"cpu", "seconds", "steps", "per_domain": {domain: metrics}, "mean": {metric:
     mean over domains}}}}}}. An `out_path` whose budget (flagfile, overrides, precision, split, max_images)
     differs from this run's is refused before anything trains: its figures are not comparable.
Re-measuring a trained trial on another split: the same trials and seeds with another `out_path` and `split`
(the runs are complete, so `train_sbsgan` resumes at its last step and only the measurement runs).
Trials differ only in their settings: same world, same budget (iterations), same measurement.
"""

import json
import os
import time

import numpy as np
import tensorflow as tf

from bgshift_tf.core import atomic_io
from bgshift_tf.data import input as data_input
from bgshift_tf.data import shards
from bgshift_tf.generation import quality
from bgshift_tf.generation.translate import encode_image
from bgshift_tf.training.gan_checkpoint import load_generator
from bgshift_tf.training.gan_run import DEFAULT_CONFIG as GAN_DEFAULTS
from bgshift_tf.training.gan_run import train_sbsgan
from bgshift_tf.workflow import data_stages, provenance, stages
from bgshift_tf.workflow.config import trainer_config
from bgshift_tf.workflow.run_layout import RunLayout

METRICS = ("fg_psnr", "fg_ssim", "fg_l1", "bg_energy", "checkerboard")


def parse_trials(specs):
    """["name:key=value;key=value", "base:"] -> {name: ["key=value", ...]}; errors name the bad item."""
    trials = {}
    for spec in specs:
        name, sep, settings = spec.partition(":")
        if not sep or not name or name in trials:
            raise ValueError(f"a trial is 'name:key=value;...' with a new name. Received: {spec!r}")
        trials[name] = [item for item in settings.split(";") if item]
    return trials


def _jpeg_round_trip(pixels):
    """[-1,1] float images -> what a generated record stores and a reader gets back, [-1,1]."""
    uint8 = np.clip(np.round((np.asarray(pixels) + 1.0) * 127.5), 0, 255).astype(np.uint8)
    decoded = [tf.io.decode_jpeg(encode_image(image)).numpy() for image in uint8]
    return np.stack(decoded).astype(np.float32) / 127.5 - 1.0


def measure_soft_mask(generator, ctx, image_size, max_images, batch_size=64, split="train"):
    """{domain: quality metrics of the generator's soft-mask images of that domain's first `max_images`
    images of `split` (0 = all)}."""
    results = {}
    for domain in ctx.domains:
        sums = dict.fromkeys(quality.SUM_KEYS, 0.0)
        for originals, _, masks in quality.paired_batches(ctx.world_dir, ctx.tfrecords(domain), {}, split=split,
                                                          batch_size=batch_size, max_images=max_images,
                                                          image_size=image_size):
            inputs = originals["pixels"].numpy()
            soft = _jpeg_round_trip(generator.soft_mask(inputs))
            for key, value in quality.suppression_sums(inputs, soft, masks).items():
                sums[key] += value
        results[domain] = {k: v for k, v in quality.finish(sums).items() if k in METRICS}
    return results


def _read(out_path):
    if not os.path.isfile(out_path):
        return None
    with open(out_path) as f:
        return json.load(f)


def check_budget(out_path, held, budget):
    """ValueError naming `out_path` and the differing keys when the result file `held` was measured under
    another budget than `budget` (files from before a key existed lack it: split "train")."""
    if held is None or "budget" not in held:
        return
    old = {"split": "train", **held["budget"]}
    differing = sorted(key for key in set(old) | set(budget) if old.get(key) != budget.get(key))
    if differing:
        raise ValueError(f"{out_path!r} was measured with another budget ("
                         + ", ".join(f"{key}: {old.get(key)!r} there, {budget.get(key)!r} now" for key in differing)
                         + "): use another --out")


def run_ablation(pipeline_config, trials, seeds, out_path, max_images=256, log=print, split="train"):
    """Trains and measures every (trial, seed); see the module docstring. Returns the result dict."""
    # 1. The result file's budget must be this run's; then the world and TFRecords (the pipeline's stages,
    #    reused when complete).
    ctx = RunLayout(pipeline_config)
    budget = {"gan_flagfile": pipeline_config["gan_flagfile"], "gan_overrides": list(pipeline_config["gan_overrides"]),
              "precision": ctx.precision, "max_images": max_images, "split": split}
    result = _read(out_path) or {"trials": {}}
    check_budget(out_path, result, budget)
    stages.run_stages(ctx.data_dir, [data_stages.world_stage(ctx), data_stages.tfrecords_stage(ctx)], log=log)
    base = trainer_config(pipeline_config["gan_flagfile"], pipeline_config["gan_overrides"], GAN_DEFAULTS, "gan",
                          precision=ctx.precision)
    cpu = provenance.this_cpu()
    result.update(cpu=cpu, budget=budget)
    for name, settings in trials.items():
        entry = result["trials"].setdefault(name, {"settings": settings, "seeds": {}})
        if entry["settings"] != settings:
            raise ValueError(f"{out_path!r} holds trial {name!r} with settings {entry['settings']}, not "
                             f"{settings}: use another --out or trial name")
        for seed in seeds:
            if str(seed) in entry["seeds"]:
                continue
            # 2. Train (resumes a cut-short run).
            overrides = trainer_config("", settings, GAN_DEFAULTS, "gan")
            run_dir = ctx.path("ablation", f"{name}_s{seed}")
            config = {**ctx.gan_config(), **base, **overrides, "seed": int(seed), "run_dir": run_dir,
                      "domain_dirs": [ctx.tfrecords(d) for d in ctx.domains]}
            log(f"[ablation] {name} seed {seed}: {' '.join(settings) or '(flagfile settings)'}")
            started = time.perf_counter()
            summary = train_sbsgan(config)
            seconds = time.perf_counter() - started
            # 3. Measure.
            generator = load_generator(run_dir, ctx.precision)
            per_domain = measure_soft_mask(generator, ctx, (config["image_height"], config["image_width"]),
                                           max_images, split=split)
            mean = {k: float(np.mean([m[k] for m in per_domain.values()])) for k in METRICS}
            entry["seeds"][str(seed)] = {"cpu": cpu, "seconds": round(seconds, 1), "steps": summary["final_step"],
                                         "per_domain": per_domain, "mean": mean}
            log(f"[ablation] {name} seed {seed}: {seconds:.0f} s, " + ", ".join(f"{k} {v:.3f}" for k, v in mean.items()))
            # 4. Keep what finished.
            atomic_io.write_json(out_path, result)
    return result
