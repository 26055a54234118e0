"""The main job: from images to a report, as resumable stages (`workflow.stages`) in `<runs_root>/<name>/`.

Stages (in order; each skips itself when complete with the same config):
    world            synthetic world (`data.synthetic.make_world`) or a check of the real data folders
    tfrecords        TFRecord shards per domain (`data.build.build_dataset_tfrecords`)
    train_gan        SBSGAN on all K domains (`training.gan_run.train_sbsgan`)
    generate         soft-mask / hard-mask images of every domain, style transfer source -> each target
                     (`generation.translate.translate_dataset`)
    train_<model>    re-ID models on the source domain (`training.reid.train_reid`): IDE on original,
                     hard-mask, style-transferred, soft-mask images; DA-2S on (soft-mask, style) pairs
    eval_<model>     each model on the target domains and the source (`evaluation.run.evaluate_run`)
    quality          SBSGAN suppression quality against the exact masks (synthetic world only)
    domain_distance  t-SNE domain distances per image variant (`report.domain_analysis`)
    export           SavedModels + TFLite + ONNX with parity (`export.job.export_all`)
    report           `<run_dir>/report.html` (`report.html.write_report`)

Run folder:
    world/ tfrecords/<domain>/ gan/ generated/<domain>_{soft_mask,hard_mask,style_transfer_to_<target>}/ reid/<model>/
    eval/<model>/<domain>.json  quality.json  domain_distance/  saved_models/  report.html
    figures/sbsgan_outputs.png
    stages/<stage>.json (completion manifests)  timings.json

Configuration: a flat dict (keys and defaults: `DEFAULT_CONFIG`). The SBSGAN and re-ID settings come from
the trainers' own flagfiles (`gan_flagfile`, `reid_flagfile`, e.g. configs/gan_demo.flags) plus
`key=value` overrides (`gan_overrides`, `reid_overrides`); data folders and run folders are set here.
"""

import json
import os

import numpy as np

from bgshift_tf import atomic_io
from bgshift_tf.workflow import stages as stages_lib

DEFAULT_CONFIG = {
    "name": "demo",  # run folder name under runs_root
    "runs_root": "runs",
    "data": "synthetic",  # "synthetic" (built-in world) | "real" (folders below)
    "preset": "demo",  # synthetic world preset (data_synthetic.PRESETS): tiny | demo
    "world_seed": 0,
    "world_num_ids": 0,  # 0 = the preset's
    "world_images_per_id": 0,
    # Real data: one entry per domain, in domain-index order.
    "domain_names": [],  # e.g. market1501,dukemtmc,cuhk03
    "domain_datasets": [],  # layouts from data.build.DATASETS, e.g. market1501,dukemtmc,cuhk03_np
    "domain_data_dirs": [],
    "domain_mask_dirs": [],  # "" for a domain without masks (it cannot train SBSGAN then)
    "source": "synmarket",  # training domain of the re-ID models
    "targets": [],  # test domains; empty = every other domain. The first is the style target of DA-2S
    "num_shards": 4,
    "gan_flagfile": "bgshift_tf/configs/gan_demo.flags",
    "gan_overrides": [],  # "key=value" items applied over gan_flagfile
    "reid_flagfile": "bgshift_tf/configs/reid_demo.flags",
    "reid_overrides": [],
    "ide_variants": ["original", "hardmask", "style", "softmask"],
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
}

# Table 2 rows: model key -> (display name, paper row key of report.paper_results.TABLE2).
TABLE2_ROWS = {
    "ide_original": ("Original", "original"),
    "ide_hardmask": ("Hard mask (noisy parser masks)", "hard_mask_jppnet"),
    "ide_style": ("Style-transferred (SBSGAN style branch)", "style_stargan"),
    "ide_softmask_nosc": ("Soft-mask w/o L_sc", "soft_mask_wo_sc"),
    "ide_softmask": ("Soft-mask", "soft_mask"),
}
# Table 3 rows: model key -> (display name, paper row key of TABLE3).
TABLE3_ROWS = {
    "da2s_base": ("Baseline (2 streams, no SE, no ISDC)", "baseline"),
    "da2s_se": ("Baseline + SE block", "baseline_se"),
    "da2s": ("Baseline + SE + ISDC (DA-2S)", "da2s"),
    "da2s_2style": ("DA-2S† (2 × style-transferred)", "da2s_2style"),
    "da2s_2soft": ("DA-2S‡ (2 × soft-mask)", "da2s_2soft"),
}


# === Configuration ===


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
    bad = sorted(set(merged["ide_variants"]) - {"original", "hardmask", "style", "softmask"})
    if bad:
        raise ValueError(f"`ide_variants` must be among original,hardmask,style,softmask. Received: {bad}")
    return merged


def read_flagfile(path, _seen=None) -> dict:
    """An absl flagfile as {name: text value}; nested `--flagfile=` lines are read in place (later wins).

    `--name` alone is "true", `--noname` is "false"; `#` lines and blank lines are ignored.
    """
    seen = _seen or set()
    real = os.path.realpath(path)
    if real in seen:
        raise ValueError(f"flagfile {path!r} includes itself (cycle through {sorted(seen)})")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"flagfile not found: {path!r}")
    values = {}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not line.startswith("--"):
                raise ValueError(f"{path}:{number}: a flag line must start with '--'. Received: {line!r}")
            name, has_value, value = line[2:].partition("=")
            if name == "flagfile":
                values.update(read_flagfile(value, seen | {real}))
            elif has_value:
                values[name] = value
            elif name.startswith("no"):
                values[name[2:]] = "false"
            else:
                values[name] = "true"
    return values


def _typed(key, text, default, source):
    """`text` converted to the type of `default` (bool, int, float, list, str)."""
    if not isinstance(text, str):
        return text
    try:
        if isinstance(default, bool):
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(text)
            return text.lower() in ("true", "1")
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
    except ValueError:
        raise ValueError(f"{source}: `{key}` must be a {type(default).__name__}. Received: {key}={text!r}") from None
    if isinstance(default, list):
        return [v for v in text.split(",") if v]
    return text


def trainer_config(flagfile, overrides, defaults, source_name) -> dict:
    """A trainer's config: `defaults` keys only, from `flagfile` (may be "") then "key=value" `overrides`."""
    raw = read_flagfile(flagfile) if flagfile else {}
    for item in overrides:
        key, has_value, value = item.partition("=")
        if not has_value:
            raise ValueError(f"`{source_name}_overrides` items must be key=value. Received: {item!r}")
        raw[key.strip()] = value.strip()
    unknown = sorted(set(raw) - set(defaults))
    if unknown:
        raise ValueError(f"{source_name} settings {unknown} (from {flagfile!r} / overrides) are not "
                         f"{source_name} trainer keys; known: {sorted(defaults)}")
    return {key: _typed(key, value, defaults[key], flagfile or f"{source_name}_overrides")
            for key, value in raw.items()}


def config_from_flagfile(path, defaults=None) -> dict:
    """Settings of a pipeline flagfile (nested flagfiles included), typed like `defaults` (DEFAULT_CONFIG)."""
    defaults = DEFAULT_CONFIG if defaults is None else defaults
    raw = read_flagfile(path)
    unknown = sorted(set(raw) - set(defaults))
    if unknown:
        raise ValueError(f"flagfile {path!r} sets unknown pipeline flags {unknown}; known: {sorted(defaults)}")
    return {key: _typed(key, value, defaults[key], path) for key, value in raw.items()}


class Context:
    """Resolved settings and every path of one run folder."""

    def __init__(self, config):
        from bgshift_tf.data import synthetic
        from bgshift_tf.training import gan_run, reid

        self.config = config
        self.run_dir = os.path.join(config["runs_root"], config["name"])
        self.world_dir = os.path.join(self.run_dir, "world")
        if config["data"] == "synthetic":
            world = synthetic.resolve_config(config["preset"], **self.world_overrides())
            self.domains = list(world["domains"])
        else:
            self.domains = list(config["domain_names"])
            lengths = {key: len(config[key]) for key in ("domain_names", "domain_datasets", "domain_data_dirs",
                                                         "domain_mask_dirs")}
            if len(set(lengths.values())) != 1 or not self.domains:
                raise ValueError(f"real data needs one entry per domain in each of {sorted(lengths)}. "
                                 f"Received lengths: {lengths}")
        if config["source"] not in self.domains:
            raise ValueError(f"`source` must be one of the domains {self.domains}. "
                             f"Received: source={config['source']!r}")
        self.source = config["source"]
        self.targets = list(config["targets"]) or [d for d in self.domains if d != self.source]
        bad = [t for t in self.targets if t not in self.domains or t == self.source]
        if bad or not self.targets:
            raise ValueError(f"`targets` must be domains other than the source {self.source!r} among "
                             f"{self.domains}. Received: targets={config['targets']}")
        self.target = self.targets[0]
        self.eval_domains = self.targets + [self.source]
        self.gan = trainer_config(config["gan_flagfile"], config["gan_overrides"], gan_run.DEFAULT_CONFIG, "gan")
        self.reid = trainer_config(config["reid_flagfile"], config["reid_overrides"], reid.DEFAULT_CONFIG, "reid")

    def world_overrides(self):
        keys = {"world_num_ids": "num_ids", "world_images_per_id": "images_per_id"}
        return {name: self.config[key] for key, name in keys.items() if self.config[key]}

    def path(self, *parts):
        return os.path.join(self.run_dir, *parts)

    def tfrecords(self, domain):
        return self.path("tfrecords", domain)

    def generated(self, domain, kind, target=None):
        """`generated/<variants.folder_name(domain, variant, target)>` (translate.output_dir)."""
        from bgshift_tf.generation.translate import output_dir

        return output_dir(self.path("generated"), domain, kind, target)

    def gan_dir(self, suffix=""):
        return self.path(f"gan{suffix}")

    def gan_config(self, suffix="", **changes):
        """The SBSGAN trainer config of this run (`changes` for ablations, e.g. lambda_sc=0)."""
        return {**self.gan, **changes, "domain_dirs": [self.tfrecords(d) for d in self.domains],
                "run_dir": self.gan_dir(suffix), "verbose": self.config["verbose"]}

    def reid_dir(self, key):
        return self.path("reid", key)

    def eval_dir(self, key):
        return self.path("eval", key)


def _clear_keras():
    """Frees the previous stage's graphs and models (one process runs every stage)."""
    import keras

    keras.backend.clear_session()


def _stage(name, fn, *, config, deps=(), clean=(), budget=60.0):
    def run():
        _clear_keras()
        return fn()

    return stages_lib.Stage(name, run, config=config, deps=list(deps), clean_paths=list(clean), budget=budget)


# === Data ===


def world_stage(ctx):
    config = ctx.config
    if config["data"] == "synthetic":
        settings = {"preset": config["preset"], "seed": config["world_seed"], **ctx.world_overrides()}

        def fn():
            from bgshift_tf.data.synthetic import make_world

            world = make_world(ctx.world_dir, preset=config["preset"], seed=config["world_seed"],
                               verbose=bool(config["verbose"]), **ctx.world_overrides())
            return {"world_dir": ctx.world_dir, "domains": [d["name"] for d in world["domains"]],
                    "contact_sheet": os.path.join(ctx.world_dir, "contact_sheet.png")}

        return _stage("world", fn, config=settings, clean=[ctx.world_dir], budget=60)
    settings = {key: config[key] for key in ("domain_names", "domain_datasets", "domain_data_dirs",
                                             "domain_mask_dirs")}

    def check_real():
        missing = [p for p in config["domain_data_dirs"] + [m for m in config["domain_mask_dirs"] if m]
                   if not os.path.exists(p)]
        if missing:
            raise FileNotFoundError(f"real-data folders not found: {missing} (flags --domain_data_dirs / "
                                    "--domain_mask_dirs in your flagfile)")
        return {"domains": ctx.domains}

    return _stage("world", check_real, config=settings, budget=1)


def _domain_source(ctx, index, domain):
    """(dataset layout, data folder, mask folder or None) of one domain."""
    config = ctx.config
    if config["data"] == "synthetic":
        from bgshift_tf.data.synthetic import domain_paths

        paths = domain_paths(ctx.world_dir, domain)
        return "market1501", paths["data_dir"], paths["mask_dir"]
    return (config["domain_datasets"][index], config["domain_data_dirs"][index],
            config["domain_mask_dirs"][index] or None)


def tfrecords_stage(ctx):
    def fn():
        from bgshift_tf.data.build import build_dataset_tfrecords

        counts = {}
        for index, domain in enumerate(ctx.domains):
            dataset, data_dir, mask_dir = _domain_source(ctx, index, domain)
            manifest = build_dataset_tfrecords(
                dataset, data_dir, ctx.tfrecords(domain), mask_dir=mask_dir, num_shards=ctx.config["num_shards"],
                domain_index=index, domain_name=domain, progress=bool(ctx.config["verbose"]))
            counts[domain] = {split: entry["num_examples"] for split, entry in manifest["splits"].items()}
        return {"dirs": {d: ctx.tfrecords(d) for d in ctx.domains}, "counts": counts}

    return _stage("tfrecords", fn, config={"num_shards": ctx.config["num_shards"], "domains": ctx.domains},
                  deps=["world"], clean=[ctx.path("tfrecords")], budget=40)


# === SBSGAN and generated images ===


def gan_stage(ctx, suffix="", **changes):
    """`train_gan<suffix>`: SBSGAN on every domain (`changes`: ablation settings such as lambda_sc=0)."""
    gan_config = ctx.gan_config(suffix, **changes)

    def fn():
        from bgshift_tf.training.gan_run import train_sbsgan

        summary = train_sbsgan(gan_config)
        return {"run_dir": gan_config["run_dir"], "final_step": summary["final_step"],
                "seconds": summary.get("seconds"), "losses": summary.get("losses"), "domains": summary["domains"]}

    stage_config = {k: v for k, v in gan_config.items() if k != "verbose"}
    return _stage(f"train_gan{suffix}", fn, config=stage_config, deps=["tfrecords"],
                  clean=[gan_config["run_dir"]], budget=420)


def generate_stage(ctx, suffix="", kinds=("soft_mask", "hard_mask"), with_style=True):
    """`generate<suffix>`: soft-/hard-mask images of every domain's splits (source: train too, the others
    query and gallery) and, `with_style`, the source's train split styled to each target domain."""
    gan_dir = ctx.gan_dir(suffix)
    out_root = ctx.path(f"generated{suffix}")
    batch_size = ctx.config["eval_batch_size"]

    def fn():
        from bgshift_tf.generation.translate import translate_dataset

        outputs, skipped = {}, {}
        verbose = ctx.config["verbose"]
        for domain in ctx.domains:
            splits = None if domain == ctx.source else ["query", "gallery"]
            result = translate_dataset(gan_dir, ctx.tfrecords(domain), out_root, variants=kinds, splits=splits,
                                       batch_size=batch_size, verbose=verbose)
            outputs[domain] = result["outputs"]
            skipped[domain] = result["skipped"]
        for target in ctx.targets if with_style else ():
            result = translate_dataset(gan_dir, ctx.tfrecords(ctx.source), out_root, variants=("style_transfer",),
                                       target_domain=target, splits=["train"], batch_size=batch_size,
                                       verbose=verbose)
            outputs[f"{ctx.source}_to_{target}"] = result["outputs"]["style_transfer"]
        return {"outputs": outputs, "skipped": skipped}

    return _stage(f"generate{suffix}", fn, config={"kinds": list(kinds), "targets": ctx.targets if with_style else []},
                  deps=[f"train_gan{suffix}"], clean=[out_root], budget=90)


def generated_dir(ctx, domain, kind, suffix=""):
    from bgshift_tf.generation.translate import output_dir

    return output_dir(ctx.path(f"generated{suffix}"), domain, kind)


def hardmask_available(ctx, domain):
    """True when the hard-mask folder of `domain` holds query and gallery (every record had a mask)."""
    from bgshift_tf.data import shards

    folder = generated_dir(ctx, domain, "hard_mask")
    try:
        splits = shards.read_manifest(folder)["splits"]
    except FileNotFoundError:
        return False
    return all(split in splits for split in ("query", "gallery"))


# === Re-ID models ===


def reid_model_spec(ctx, key):
    """(train config changes, gan suffix) of a model key: ide_<variant>, ide_softmask_nosc, da2s[...]."""
    source, target = ctx.source, ctx.target
    soft = generated_dir(ctx, source, "soft_mask")
    style = ctx.generated(source, "style_transfer", target)
    specs = {
        "ide_original": ({"model": "ide", "train_dir": ctx.tfrecords(source)}, ""),
        "ide_hardmask": ({"model": "ide", "train_dir": ctx.tfrecords(source), "hard_mask": True}, ""),
        "ide_style": ({"model": "ide", "train_dir": style}, ""),
        "ide_softmask": ({"model": "ide", "train_dir": soft}, ""),
        "ide_softmask_nosc": ({"model": "ide", "train_dir": generated_dir(ctx, source, "soft_mask", "_nosc")},
                              "_nosc"),
        "da2s": ({"model": "da2s", "stream1_dir": soft, "stream2_dir": style, "use_se": True, "use_isdc": True}, ""),
        "da2s_base": ({"model": "da2s", "stream1_dir": soft, "stream2_dir": style, "use_se": False,
                       "use_isdc": False}, ""),
        "da2s_se": ({"model": "da2s", "stream1_dir": soft, "stream2_dir": style, "use_se": True,
                     "use_isdc": False}, ""),
        "da2s_2style": ({"model": "da2s", "stream1_dir": style, "stream2_dir": style, "use_se": True,
                         "use_isdc": True}, ""),
        "da2s_2soft": ({"model": "da2s", "stream1_dir": soft, "stream2_dir": soft, "use_se": True,
                        "use_isdc": True}, ""),
    }
    if key not in specs:
        raise ValueError(f"unknown re-ID model key {key!r}; known: {sorted(specs)}")
    return specs[key]


def reid_stage(ctx, key):
    """`train_<key>`: one re-ID model on the source domain's (generated) images."""
    changes, suffix = reid_model_spec(ctx, key)
    reid_config = {**ctx.reid, **changes, "run_dir": ctx.reid_dir(key), "verbose": ctx.config["verbose"]}
    if reid_config["model"] == "ide":
        reid_config.update(stream1_dir="", stream2_dir="")
    else:
        reid_config.update(train_dir="", hard_mask=False)

    def fn():
        from bgshift_tf.training.reid import train_reid

        summary = train_reid(reid_config)
        return {"run_dir": reid_config["run_dir"], "final_step": summary["final_step"],
                "num_classes": summary["num_classes"], "losses": summary.get("losses")}

    deps = ["tfrecords"] if key in ("ide_original", "ide_hardmask") else [f"generate{suffix}"]
    return _stage(f"train_{key}", fn, config={k: v for k, v in reid_config.items() if k != "verbose"},
                  deps=deps, clean=[reid_config["run_dir"]], budget=200 if key.startswith("da2s") else 140)


def eval_inputs(ctx, key, domain):
    """(query/gallery folder, soft-mask folder or None, both-streams-same-input flag, note) for one model."""
    original = ctx.tfrecords(domain)
    if key == "ide_hardmask":
        if hardmask_available(ctx, domain):
            return generated_dir(ctx, domain, "hard_mask"), None, False, ""
        return original, None, False, f"{domain}: no masks on query/gallery, tested on original images"
    if key == "ide_softmask":
        return generated_dir(ctx, domain, "soft_mask"), None, False, ""
    if key == "ide_softmask_nosc":
        return generated_dir(ctx, domain, "soft_mask", "_nosc"), None, False, ""
    if key == "da2s_2style":
        return original, None, True, ""
    if key == "da2s_2soft":
        return generated_dir(ctx, domain, "soft_mask"), None, True, ""
    if key.startswith("da2s"):
        return original, generated_dir(ctx, domain, "soft_mask"), False, ""
    return original, None, False, ""


def eval_stage(ctx, key):
    """`eval_<key>`: the model on every target domain and on the source (metrics JSON per domain)."""
    config = ctx.config
    _, suffix = reid_model_spec(ctx, key)

    def fn():
        from bgshift_tf.evaluation.run import evaluate_run
        from bgshift_tf.training.reid import load_reid_model

        model = load_reid_model(ctx.reid_dir(key))
        results, notes = {}, []
        for domain in ctx.eval_domains:
            folder, soft, same_input, note = eval_inputs(ctx, key, domain)
            if note:
                notes.append(note)
            embed_fn = None
            if same_input:  # Table 3's one-input variants: the same image in both streams at test time
                def embed_fn(batch):
                    return model.embed((batch["image"], batch["image"]), training=False)
            metrics = evaluate_run(
                ctx.reid_dir(key), query_tfrecords=folder, gallery_tfrecords=folder, soft_mask_query_tfrecords=soft,
                soft_mask_gallery_tfrecords=soft, model=model, embed_fn=embed_fn,
                image_size=tuple(model.image_shape[:2]), distance=config["eval_distance"],
                flip_average=config["eval_flip_average"], batch_size=config["eval_batch_size"],
                out_path=os.path.join(ctx.eval_dir(key), f"{domain}.json"),
                features_cache_dir=os.path.join(ctx.eval_dir(key), f"{domain}_features"),
                progress=bool(config["verbose"]))
            results[domain] = {k: metrics[k] for k in ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP",
                                                       "num_valid_queries", "num_queries", "convention")
                               if k in metrics}
            results[domain]["query_folder"] = folder
        return {"metrics": results, "notes": notes}

    settings = {"domains": ctx.eval_domains, "distance": config["eval_distance"],
                "flip_average": config["eval_flip_average"], "batch_size": config["eval_batch_size"]}
    deps = [f"train_{key}", "generate"] + (["generate_nosc"] if suffix else [])
    return _stage(f"eval_{key}", fn, config=settings, deps=deps, clean=[ctx.eval_dir(key)], budget=40)


# === Analyses ===


def quality_stage(ctx):
    """Suppression quality of soft-mask and hard-mask images vs the exact masks (synthetic world)."""
    max_images = ctx.config["quality_max_images"]

    def fn():
        from bgshift_tf.generation.quality import evaluate_suppression

        results = {}
        for domain in ctx.domains:
            split = "train" if domain == ctx.source else "query"
            generated = {"soft_mask": generated_dir(ctx, domain, "soft_mask")}
            if hardmask_available(ctx, domain) or domain == ctx.source:
                generated["hard_mask"] = generated_dir(ctx, domain, "hard_mask")
            results[domain] = {"split": split, "metrics": evaluate_suppression(
                ctx.world_dir, ctx.tfrecords(domain), generated, split=split,
                batch_size=ctx.config["eval_batch_size"], max_images=max_images)}
        atomic_io.write_json(ctx.path("quality.json"), results)
        return {"quality": results}

    return _stage("quality", fn, config={"max_images": max_images}, deps=["generate"],
                  clean=[ctx.path("quality.json")], budget=30)


def domain_distance_stage(ctx):
    num = ctx.config["tsne_num_per_domain"]

    def fn():
        from bgshift_tf.data import variants
        from bgshift_tf.report.domain_analysis import analyze_tfrecord_dirs

        summary = analyze_tfrecord_dirs(
            [ctx.tfrecords(d) for d in ctx.domains], variants=list(variants.ALL), out_dir=ctx.path("domain_distance"),
            domain_names=ctx.domains, split="train", num_per_domain=num, gan_run_dir=ctx.gan_dir(),
            style_target=ctx.domains.index(ctx.target), seed=0)
        return {"summary_json": ctx.path("domain_distance", "domain_distance.json"), "figure": summary["figure"]}

    return _stage("domain_distance", fn, config={"num_per_domain": num, "style_target": ctx.target},
                  deps=["train_gan"], clean=[ctx.path("domain_distance")], budget=60)


def export_model_key(ctx):
    """The re-ID model exported for serving: DA-2S when trained, else the soft-mask IDE, else the first."""
    for key in ("da2s", "ide_softmask"):
        if key in main_model_keys(ctx.config):
            return key
    return main_model_keys(ctx.config)[0]


def export_stage(ctx):
    config = ctx.config
    key = export_model_key(ctx)
    export_dir = ctx.path("saved_models")
    settings = {"tflite": config["export_tflite"], "onnx": config["export_onnx"], "model": key}

    def fn():
        from bgshift_tf.export.job import export_all

        results = export_all(ctx.gan_dir(), ctx.reid_dir(key), export_dir, version=1, overwrite=True,
                             tflite_variants=tuple(config["export_tflite"]), onnx=config["export_onnx"],
                             representative_tfrecords=ctx.tfrecords(ctx.source), num_representative=8)
        return {"export_dir": export_dir, "results": results}

    return _stage("export", fn, config=settings, deps=["train_gan", f"train_{key}"], clean=[export_dir],
                  budget=120)


# === Report ===


def main_model_keys(config):
    """Model keys the main job trains, in Table 2 then Table 3 order."""
    keys = [f"ide_{variant}" for variant in ("original", "hardmask", "style", "softmask")
            if variant in config["ide_variants"]]
    return keys + (["da2s"] if config["da2s"] else [])


def report_stage(ctx, model_keys, extra_generators=None, deps_extra=()):
    """`report`: `<run_dir>/report.html` from every finished stage's outputs (see `build_report_data`)."""
    extra_generators = dict(extra_generators or {})
    deps = ["world", "tfrecords", "train_gan", "generate", "domain_distance", "export"]
    deps += [f"eval_{key}" for key in model_keys] + list(deps_extra)
    if ctx.config["data"] == "synthetic":
        deps.append("quality")
    settings = {"models": list(model_keys), "extra_generators": extra_generators,
                "num_ranked_queries": ctx.config["num_ranked_queries"],
                "num_grid_samples": ctx.config["num_grid_samples"]}

    def fn():
        from bgshift_tf.report.html import write_report

        data = build_report_data(ctx, model_keys, extra_generators)
        path = write_report(ctx.path("report.html"), data)
        return {"report": path}

    return _stage("report", fn, config=settings, deps=deps, clean=[ctx.path("report.html"), ctx.path("figures")],
                  budget=40)


def _metrics_row(metrics):
    return {"mAP": metrics["mAP"], "R-1": metrics["rank1"], "R-5": metrics["rank5"], "R-10": metrics["rank10"]}


def read_eval(ctx, key):
    """{domain: metrics} of `eval_<key>` (None when that stage has not completed)."""
    manifest = stages_lib.read_manifest(ctx.run_dir, f"eval_{key}")
    return None if manifest is None else manifest["outputs"]["metrics"]


def reid_tables(ctx, model_keys):
    """Report `reid` entry: Table 2/3 analogues on source -> primary target, and all pairs as extra tables."""
    evals = {key: read_eval(ctx, key) for key in model_keys}
    setting = f"{ctx.source} → {ctx.target}"
    table2 = [{"name": TABLE2_ROWS[k][0], "paper_key": TABLE2_ROWS[k][1], **_metrics_row(evals[k][ctx.target])}
              for k in model_keys if k in TABLE2_ROWS and evals[k]]
    table3 = [{"name": TABLE3_ROWS[k][0], "paper_key": TABLE3_ROWS[k][1],
               **{c: _metrics_row(evals[k][ctx.target])[c] for c in ("mAP", "R-1")}}
              for k in model_keys if k in TABLE3_ROWS and evals[k]]
    rows = []
    for key in model_keys:
        for domain, metrics in (evals[key] or {}).items():
            rows.append([key, f"{ctx.source} → {domain}" + (" (source, reference)" if domain == ctx.source else ""),
                         100 * metrics["mAP"], 100 * metrics["rank1"], 100 * metrics["rank5"],
                         100 * metrics["rank10"], 100 * metrics["mINP"],
                         f"{metrics['num_valid_queries']}/{metrics['num_queries']}"])
    convention = next((m[ctx.target]["convention"] for m in evals.values() if m), "")
    return {
        "table2": {"setting": setting, "rows": table2},
        "table3": {"setting": setting, "rows": table3},
        "convention": convention,
        "extra_tables": [{"title": "Every model on every test domain (%)",
                          "columns": ["Model", "Train → test", "mAP", "R-1", "R-5", "R-10", "mINP", "valid queries"],
                          "rows": rows,
                          "caption": f"Trained on {ctx.source}; the source row is the in-domain reference. "
                                     f"{convention}"}],
    }


def _eval_images(folder, split, image_size, indices):
    """{index: image float [H,W,3] in [-1,1]} of the records at `indices` (stored order) of a split."""
    from bgshift_tf.data import input as data_input
    from bgshift_tf.data import shards

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


def ranked_list_figures(ctx, key, num_queries):
    """Ranked lists of model `key` on the primary target, from the evaluation's cached features."""
    from bgshift_tf.evaluation import rank
    from bgshift_tf.evaluation.distance import pairwise_distance
    from bgshift_tf.report import grids

    cache = os.path.join(ctx.eval_dir(key), f"{ctx.target}_features")
    query, gallery = (_cached_features(os.path.join(cache, f"{split}_features.npz")) for split in ("query", "gallery"))
    distmat = pairwise_distance(query["features"], gallery["features"], metric=ctx.config["eval_distance"])
    indices, correct = rank.top_k_matches(distmat, query["pids"], gallery["pids"], query["camids"],
                                             gallery["camids"], k=10)
    chosen = np.linspace(0, len(query["pids"]) - 1, num=min(num_queries, len(query["pids"]))).round().astype(int)
    folder = ctx.tfrecords(ctx.target)
    size = (ctx.gan["image_height"], ctx.gan["image_width"])
    query_images = _eval_images(folder, "query", size, chosen)
    gallery_images = _eval_images(folder, "gallery", size, [i for q in chosen for i in indices[q] if i >= 0])
    rows = [{"query": query_images[q], "gallery": [gallery_images[i] for i in indices[q] if i >= 0],
             "correct": [bool(c) for i, c in zip(indices[q], correct[q]) if i >= 0],
             "label": f"q {int(query['pids'][q]):04d} c{int(query['camids'][q])}"} for q in chosen]
    return [{"image": grids.ranked_lists(rows, top_k=10),
             "title": f"{key}: {ctx.source} → {ctx.target}, top 10",
             "caption": "Original images shown; green = same identity, red = other identity. Gallery items of "
                        "the query's own identity and camera are excluded (evaluation protocol)."}]


def suppression_grid(ctx, extra_generators):
    """Fig. 1/4/5 analogue: per domain a few images as original, parser mask, hard mask, soft mask, style
    transfer to every domain and reconstruction; extra generators (ablations) add a soft-mask row each."""
    import tensorflow as tf

    from bgshift_tf.data.images import hard_mask
    from bgshift_tf.report import figures, grids
    from bgshift_tf.report.domain_analysis import sample_domain
    from bgshift_tf.training.gan import load_generator

    generator = load_generator(ctx.gan_dir())
    extras = {label: load_generator(path) for label, path in extra_generators.items()}
    size = tuple(generator.image_size)
    samples = []
    for index, domain in enumerate(ctx.domains):
        sample = sample_domain(ctx.tfrecords(domain), split="train", image_size=size,
                               num_images=ctx.config["num_grid_samples"], seed=1)
        images = tf.constant(sample["image"])
        soft = generator.soft_mask(images).numpy()
        columns = {"original": sample["image"], "parser_mask": sample["mask"],
                   "hard_mask": hard_mask(sample["image"], sample["mask"]), "soft_mask": soft}
        for label, extra in extras.items():
            columns[f"soft_mask_{label}"] = extra.soft_mask(images).numpy()
        for k, name in enumerate(ctx.domains):
            columns[f"to_{name}"] = generator.style_transfer(images, tf.fill([len(images)], k)).numpy()
        columns["reconstruction"] = generator.style_transfer(tf.constant(soft), tf.fill([len(images)], index)).numpy()
        for i in range(len(images)):
            # One label per domain: the columns are narrower than a domain name at 64 px.
            samples.append({"label": domain if i == 0 else "", **{name: values[i] for name, values in columns.items()}})
    variants = (["original", "parser_mask", "hard_mask", "soft_mask"] + [f"soft_mask_{k}" for k in extras]
                + [f"to_{name}" for name in ctx.domains] + ["reconstruction"])
    labels = {"reconstruction": "soft mask → source\n(reconstruction)",
              **{f"soft_mask_{k}": f"soft mask\n{k}" for k in extras}}
    scale = 1.0 if size[0] >= 128 else 2.0
    grid = grids.variant_grid(samples, variants, variant_labels=labels, scale=scale)
    # Also a file beside the report, for viewing or sharing without the HTML.
    figures.save_png(grid, ctx.path("figures", "sbsgan_outputs.png"))
    return [{"image": grid,
             "title": "SBSGAN outputs per domain",
             "caption": "Columns: training images of each domain. Rows: original, the noisy parser mask, hard mask "
                        "(black background), SBSGAN soft mask G(x, D̄), style transfer G(x, D_k) to each domain, "
                        "and the soft-mask image mapped back to its own domain."}]


def _signatures(version_dir):
    """{signature: {"inputs": {name: "dtype [shape]"}, "outputs": {...}}} of an exported SavedModel."""
    import tensorflow as tf

    loaded = tf.saved_model.load(version_dir)

    def spec(value):
        if value.shape.rank is None:
            return f"{value.dtype.name} [unknown rank]"
        shape = ",".join("-1" if d is None else str(d) for d in value.shape.as_list())
        return f"{value.dtype.name} [{shape}]"

    result = {}
    for name, function in loaded.signatures.items():
        _, inputs = function.structured_input_signature
        result[name] = {"inputs": {k: spec(v) for k, v in inputs.items()},
                        "outputs": {k: spec(v) for k, v in function.structured_outputs.items()}}
    return result


def export_entries(ctx):
    manifest = stages_lib.read_manifest(ctx.run_dir, "export")
    if manifest is None:
        return []
    entries = []
    for kind in ("generator", "embedder"):
        summary = manifest["outputs"]["results"].get(kind)
        if not summary:
            continue
        parity = {}
        for per_format in summary["parity"].values():
            for fmt, values in per_format.items():
                parity[fmt] = max(parity.get(fmt, 0.0), float(values["max_abs"]))
        formats = ["saved_model"] + [f"tflite ({v})" for v in sorted({v for s in summary["tflite"].values()
                                                                        for v in s})]
        formats += ["onnx"] if summary["onnx"] else []
        entries.append({"name": f"{summary['model_name']} ({kind})", "path": summary["saved_model"],
                        "formats": formats, "signatures": _signatures(summary["saved_model"]),
                        "parity": parity, "tolerance": 1e-3})
    return entries


def build_report_data(ctx, model_keys, extra_generators=None):
    """The report-data dict of `report.html.write_report` from the run folder."""
    from bgshift_tf.report import figures

    config = ctx.config
    flags = {k: v for k, v in config.items()}
    flags.update({f"gan.{k}": v for k, v in ctx.gan.items()})
    flags.update({f"reid.{k}": v for k, v in ctx.reid.items()})
    timings = [row for row in stages_lib.read_timings(ctx.run_dir) if row["status"] != "not run"]
    data_text = (f"built-in synthetic world ({config['preset']} preset)" if config["data"] == "synthetic"
                 else "real datasets")
    data = {
        "run_name": config["name"],
        "summary": (f"SBSGAN + DA-2S on the {data_text}: "
                    f"domains {', '.join(ctx.domains)}; re-ID models trained on {ctx.source}, tested on "
                    f"{', '.join(ctx.targets)} (and {ctx.source} for reference)."),
        "flags": flags,
        "timings": timings,
        "notes": [],
    }
    if config["data"] == "synthetic":
        data["contact_sheets"] = [{"image": os.path.abspath(os.path.join(ctx.world_dir, "contact_sheet.png")),
                                   "title": "Synthetic world",
                                   "caption": "Per domain: image | parser mask | parser vs exact mask (white both, "
                                              "red body missed by the parser, cyan parser false positive)."}]
    data["suppression_grids"] = suppression_grid(ctx, extra_generators or {})
    curves = {tag: series for tag, series in figures.read_scalars(os.path.join(ctx.gan_dir(), "logs")).items()
              if tag.startswith("losses/")}
    if curves:
        data["loss_curves"] = [{"image": figures.plot_loss_curves(curves, title="SBSGAN losses"),
                                "title": "SBSGAN losses (TensorBoard scalars)",
                                "caption": "Faint: raw values; bold: moving average."}]
    summary_path = ctx.path("domain_distance", "domain_distance.json")
    if os.path.isfile(summary_path):
        with open(summary_path) as f:
            summary = json.load(f)
        data["domain_distance"] = {"figures": [{"image": os.path.abspath(summary["figure"]),
                                                "title": "t-SNE of each image variant",
                                                "caption": f"Features: {summary.get('features')}; style transfer "
                                                           f"maps every domain to {ctx.target}."}],
                                   "summary": summary}
    quality = stages_lib.read_manifest(ctx.run_dir, "quality")
    if quality is not None:
        rows = []
        for domain, entry in quality["outputs"]["quality"].items():
            for name, metrics in entry["metrics"].items():
                rows.append([domain, entry["split"], name, metrics["num_images"], metrics["fg_psnr"],
                             metrics["fg_l1"], metrics["bg_energy"]])
        data["suppression_quality"] = {
            "title": "Foreground kept, background suppressed (exact body masks of the synthetic world)",
            "columns": ["Domain", "Split", "Images", "N", "FG PSNR (dB)", "FG L1", "BG energy"], "rows": rows,
            "caption": "FG PSNR / L1: output vs input inside the exact body mask (higher PSNR / lower L1 = "
                       "person kept). BG energy: mean brightness outside it in [0, 1] (0 = black; 'original' "
                       "= no suppression)."}
    data["reid"] = reid_tables(ctx, model_keys)
    for key in model_keys:
        manifest = stages_lib.read_manifest(ctx.run_dir, f"eval_{key}")
        if manifest is not None:
            data["notes"] += [f"{key}: {note}" for note in manifest["outputs"].get("notes", [])]
    ranked_key = "da2s" if "da2s" in model_keys else model_keys[0]
    if read_eval(ctx, ranked_key) and config["num_ranked_queries"] > 0:
        data["ranked_lists"] = ranked_list_figures(ctx, ranked_key, config["num_ranked_queries"])
    data["exports"] = export_entries(ctx)
    data["notes"].append("Our numbers come from a small synthetic world and short CPU schedules; compare the "
                         "ordering of the rows with the paper's, not the values.")
    changed = gan_settings_not_from_paper(ctx.gan)
    if changed:
        data["notes"].append("SBSGAN settings of this run that differ from the paper's (paper in brackets): "
                             + ", ".join(changed) + ". BUILD_NOTES.md, \"Demo quality\", says why.")
    return data


# The SBSGAN settings of the paper (gan_run.DEFAULT_CONFIG holds them) that the report compares a run against.
_PAPER_GAN_KEYS = ("image_height", "image_width", "batch_size", "epochs", "learning_rate", "n_critic",
                   "lambda_adv", "lambda_cls", "lambda_rec", "lambda_idc", "lambda_bgs", "lambda_sc", "lambda_gp",
                   "num_soft_mask", "base_filters", "num_res_blocks", "d_base_filters", "d_num_layers")


def gan_settings_not_from_paper(gan_config):
    """["lambda_bgs 50 [5]", ...]: the paper settings a GAN trainer config changes (max_steps counts too)."""
    from bgshift_tf.training.gan_run import DEFAULT_CONFIG

    changed = [f"{key} {gan_config[key]:g} [{DEFAULT_CONFIG[key]:g}]" for key in _PAPER_GAN_KEYS
               if key in gan_config and gan_config[key] != DEFAULT_CONFIG[key]]
    if gan_config.get("max_steps", 0) > 0:
        changed.append(f"max_steps {gan_config['max_steps']} [epochs {DEFAULT_CONFIG['epochs']}]")
    return changed


# === The job ===


def main_job_stages(ctx):
    """The main job's stage list for a `Context`."""
    keys = main_model_keys(ctx.config)
    stages = [world_stage(ctx), tfrecords_stage(ctx), gan_stage(ctx), generate_stage(ctx)]
    stages += [reid_stage(ctx, key) for key in keys]
    stages += [eval_stage(ctx, key) for key in keys]
    if ctx.config["data"] == "synthetic":
        stages.append(quality_stage(ctx))
    stages += [domain_distance_stage(ctx), export_stage(ctx), report_stage(ctx, keys)]
    return stages


def run_main_job(config, *, force=(), log=None) -> dict:
    """Runs the main job on `config` (keys of DEFAULT_CONFIG); returns `run_stages`' results + paths."""
    ctx = Context(merge_config(config))
    atomic_io.write_json(ctx.path("pipeline_config.json"), ctx.config)
    results = stages_lib.run_stages(ctx.run_dir, main_job_stages(ctx), force=tuple(force), log=log)
    return {"run_dir": ctx.run_dir, "report": ctx.path("report.html"), "stages": results}
