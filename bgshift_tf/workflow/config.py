"""The main job's settings: `DEFAULT_CONFIG`, its checks, and flagfiles read with absl's own parser.

Configuration is a flat dict (keys and defaults: `DEFAULT_CONFIG`, one absl flag each, help in `HELP`).
The SBSGAN and re-ID settings come from the trainers' own flagfiles (`gan_flagfile`, `reid_flagfile`,
e.g. configs/gan_demo.flags) plus `key=value` overrides (`gan_overrides`, `reid_overrides`): they are
parsed by an `absl.flags.FlagValues` holding one flag per key of the trainer's DEFAULT_CONFIG
(`gan_run.DEFAULT_CONFIG`, `training.reid.DEFAULT_CONFIG`), so nested `--flagfile=` lines, `--name` /
`--noname` booleans and list values mean exactly what they mean on a trainer's command line.

`precision` (a `core.precision` setting) is the compute precision of every stage that runs a network
(training, generation, evaluation, domain analysis, export, figures). It is the trainers' `precision` too,
over whatever their flagfiles say, unless `gan_overrides` / `reid_overrides` set `precision=` themselves.
"""

import os

from absl import flags

from bgshift_tf.core import flag_checks
from bgshift_tf.core import precision as precision_lib
from bgshift_tf.data import segment, variants

DEFAULT_CONFIG = {
    "name": "demo",  # run folder name under runs_root
    "runs_root": "runs",
    "data": "synthetic",  # "synthetic" (built-in world) | "real" (folders below)
    "preset": "demo",  # synthetic world preset (data_synthetic.PRESETS): tiny | demo | study
    "world_seed": 0,
    "world_num_ids": 0,  # 0 = the preset's
    "world_images_per_id": 0,
    # Real data: one entry per domain, in domain-index order.
    "domain_names": [],  # e.g. market1501,dukemtmc,cuhk03
    "domain_datasets": [],  # layouts from data.build.DATASETS, e.g. market1501,dukemtmc,cuhk03_np
    "domain_data_dirs": [],
    "domain_mask_dirs": [],  # "" = no masks (it cannot train SBSGAN then); "auto" = the `masks` stage makes them
    "mask_segmenter": segment.DEFAULT_SEGMENTER,  # `make_masks --segmenter` of the "auto" domains
    "mask_person_classes": [str(segment.PASCAL_VOC_PERSON)],
    "source": "synmarket",  # training domain of the re-ID models
    "targets": [],  # test domains; empty = every other domain. The first is the style target of DA-2S
    "num_shards": 4,
    "precision": "float32",  # core.precision.PRECISIONS; the trainers' too unless *_overrides set it
    "gan_flagfile": "bgshift_tf/configs/gan_demo.flags",
    "gan_overrides": [],  # "key=value" items applied over gan_flagfile
    "reid_flagfile": "bgshift_tf/configs/reid_demo.flags",
    "reid_overrides": [],
    "ide_variants": list(variants.ALL),
    "da2s": True,
    "eval_flip_average": False,
    "eval_distance": "euclidean",
    "eval_batch_size": 64,
    "quality_max_images": 0,  # 0 = all
    "tsne_num_per_domain": 200,
    "export_tflite": ["float32"],
    "export_onnx": True,
    "num_ranked_queries": 4,
    "num_grid_samples": 3,  # images per domain in the Fig. 1/4/5 grid
    "verbose": 1,
    "seeds": [],  # experiments job: training seeds, one trained copy of everything each; empty = one run as today
    "part_dir": "",  # experiments job: write each seed's study part <part_dir>/seed_<k>.json (workflow.study_part)
}

HELP = {
    "name": "Run folder name under --runs_root.",
    "runs_root": "Parent folder of the run folders.",
    "data": "synthetic (the built-in world) or real (--domain_* flags).",
    "preset": "Synthetic world size preset: tiny (tests), demo or study (configs/study.flags).",
    "world_seed": "Synthetic world seed.",
    "world_num_ids": "Identities per synthetic domain (0 = the preset's).",
    "world_images_per_id": "Mean images per synthetic identity (0 = the preset's).",
    "domain_names": "Real data: domain names in domain-index order (e.g. market1501,dukemtmc,cuhk03).",
    "domain_datasets": "Real data: layout per domain (market1501, dukemtmc, cuhk03_np, cuhk03_classic).",
    "domain_data_dirs": "Real data: dataset root folder per domain.",
    "domain_mask_dirs": "Real data: body-mask folder per domain (mirrors the image folders); `auto` = made by "
                        "the `masks` stage (make_masks) into <run>/masks/<domain>; empty = none.",
    "mask_segmenter": "Segmenter of the `auto` mask domains: keras-hub preset name, kaggle:// or hf:// handle, or "
                      "a local preset folder (make_masks --segmenter).",
    "mask_person_classes": "Class ids of the segmenter that count as body (make_masks --person_classes).",
    "source": "Domain the re-ID models train on.",
    "targets": "Test domains (default: all others); the first is the style-transfer target of DA-2S.",
    "num_shards": "TFRecord shards per split.",
    "precision": f"{precision_lib.FLAG_HELP} Used by every stage that runs a network; it replaces the trainer "
                 "flagfiles' precision unless --gan_overrides / --reid_overrides set precision=...",
    "gan_flagfile": "SBSGAN trainer flagfile (train_gan flags; data and run folders are set by the pipeline).",
    "gan_overrides": "key=value SBSGAN settings over --gan_flagfile (e.g. max_steps=200).",
    "reid_flagfile": "Re-ID trainer flagfile (train_reid flags; data and run folders are set by the pipeline).",
    "reid_overrides": "key=value re-ID settings over --reid_flagfile (e.g. epochs=6).",
    "ide_variants": f"IDE training images: any of {','.join(variants.ALL)}.",
    "da2s": "Train and evaluate DA-2S on (soft-mask, style-transferred) pairs.",
    "eval_flip_average": "Average features with the mirrored image's.",
    "eval_distance": "euclidean or cosine.",
    "eval_batch_size": "Batch size of evaluation and image generation.",
    "quality_max_images": "Images per domain for the suppression-quality measure (0 = all).",
    "tsne_num_per_domain": "Images per domain in the t-SNE domain-distance analysis.",
    "export_tflite": "TFLite variants to convert (float32, float16, dynamic_int8, int8); empty = none.",
    "export_onnx": "Also convert to ONNX and check it in onnxruntime.",
    "num_ranked_queries": "Queries shown in the report's ranked lists.",
    "num_grid_samples": "Images per domain in the report's SBSGAN image grid.",
    "verbose": "1 = progress bars from the trainers and data jobs, 0 = stage lines only.",
    "seeds": "Experiments job: training seeds (e.g. 0,1,2); every SBSGAN and re-ID model is trained once per "
             "seed on the same world, in <run>/seed_<k>/. Empty = one run in the run folder itself.",
    "part_dir": "Experiments job: after the stages, write each seed's study part <part_dir>/seed_<k>.json "
                "(docs/study in configs/study.flags; merged by python -m bgshift_tf.results). Empty = none.",
}


def define_flags(defaults, flag_values, helps=None):
    """Defines on `flag_values` one absl flag per key of `defaults`, typed like its default value."""
    helps = helps or {}
    for key, default in defaults.items():
        help_text = helps.get(key, key)
        if isinstance(default, bool):
            flags.DEFINE_bool(key, default, help_text, flag_values=flag_values)
        elif isinstance(default, int):
            flags.DEFINE_integer(key, default, help_text, flag_values=flag_values)
        elif isinstance(default, float):
            flags.DEFINE_float(key, default, help_text, flag_values=flag_values)
        elif isinstance(default, (list, tuple)):
            flags.DEFINE_list(key, list(default), help_text, flag_values=flag_values)
        else:
            flags.DEFINE_string(key, default, help_text, flag_values=flag_values)


def parse_flags(defaults, args, source) -> dict:
    """{key: typed value} of the flags that `args` (e.g. ["--flagfile=x.flags", "--epochs=3"]) set, parsed
    by absl against one flag per key of `defaults`; errors name `source` (the flagfile or overrides)."""
    flag_values = flags.FlagValues()
    define_flags(defaults, flag_values)
    try:
        flag_checks.flagfile_chain(args)  # absl would skip a flagfile that includes itself
        flag_values(["parse_flags", *args])
    except flags.UnrecognizedFlagError as error:
        raise ValueError(f"{source} sets {error.flagname!r}, which is not one of its keys; "
                         f"known: {sorted(defaults)}") from None
    except flags.Error as error:
        raise ValueError(f"{source}: {error}") from None
    return {key: flag_values[key].value for key in defaults if flag_values[key].present}


def trainer_config(flagfile, overrides, defaults, source_name, precision=None) -> dict:
    """A trainer's config: `defaults` keys only, from `flagfile` (may be "") then "key=value" `overrides`;
    a `precision` (the pipeline's) replaces the flagfile's unless `overrides` set it."""
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"`{source_name}_overrides` items must be key=value. Received: {item!r}")
    override_keys = {item.partition("=")[0].strip() for item in overrides}
    unknown = sorted(override_keys - set(defaults))
    if unknown:
        raise ValueError(f"`{source_name}_overrides` sets {unknown}, not {source_name} trainer keys; "
                         f"known: {sorted(defaults)}")
    args = [f"--flagfile={flagfile}"] if flagfile else []
    args += [f"--{key.strip()}={value.strip()}" for key, _, value in (item.partition("=") for item in overrides)]
    source = f"{source_name} flagfile {flagfile!r} (or one it includes)" if flagfile else f"{source_name}_overrides"
    parsed = parse_flags(defaults, args, source)
    if precision is not None and "precision" not in override_keys:
        parsed["precision"] = precision
    return parsed


def config_from_flagfile(path, defaults=None) -> dict:
    """Settings of a pipeline flagfile (nested flagfiles included), typed like `defaults` (DEFAULT_CONFIG)."""
    defaults = DEFAULT_CONFIG if defaults is None else defaults
    return parse_flags(defaults, [f"--flagfile={path}"], f"pipeline flagfile {path!r} (or one it includes)")


def merge_config(config, defaults=None):
    """`defaults` (DEFAULT_CONFIG) updated with `config`, checked; errors name the key and echo the value."""
    defaults = DEFAULT_CONFIG if defaults is None else defaults
    unknown = sorted(set(config) - set(defaults))
    if unknown:
        raise ValueError(f"unknown pipeline settings {unknown}; known: {sorted(defaults)}")
    merged = {**defaults, **config}
    for key, value in merged.items():
        if isinstance(defaults[key], list):
            merged[key] = [str(v) for v in value] if not isinstance(value, str) else [
                v for v in value.split(",") if v]
    if merged["data"] not in ("synthetic", "real"):
        raise ValueError(f'`data` (flag --data) must be "synthetic" or "real". Received: data={merged["data"]!r}')
    if not merged["name"] or os.sep in merged["name"]:
        raise ValueError(f"`name` (flag --name) must be a plain folder name. Received: name={merged['name']!r}")
    if merged["precision"] not in precision_lib.PRECISIONS:
        raise ValueError(f"`precision` (flag --precision) must be one of {', '.join(precision_lib.PRECISIONS)}. "
                         f"Received: precision={merged['precision']!r}")
    bad = sorted(set(merged["ide_variants"]) - set(variants.ALL))
    if bad:
        raise ValueError(f"`ide_variants` (flag --ide_variants) must be among {','.join(variants.ALL)}. "
                         f"Received: {bad}")
    if not all(c.isdigit() for c in merged["mask_person_classes"]) or not merged["mask_person_classes"]:
        raise ValueError("`mask_person_classes` (flag --mask_person_classes) must be class ids (integers >= 0). "
                         f"Received: {merged['mask_person_classes']}")
    if not all(s.isdigit() for s in merged["seeds"]) or len(set(merged["seeds"])) != len(merged["seeds"]):
        raise ValueError("`seeds` (flag --seeds) must be distinct integers >= 0. "
                         f"Received: {merged['seeds']}")
    if merged["part_dir"] and not merged["seeds"]:
        raise ValueError("`part_dir` (flag --part_dir) writes one study part per seed: it needs --seeds. "
                         f"Received: part_dir={merged['part_dir']!r}, seeds=[]")
    return merged
