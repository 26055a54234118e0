"""The main job: from images to a report, as resumable stages (`workflow.stages`) in a run folder
(`workflow.run_layout`).

Stages (in order; each skips itself when complete with the same config; the data stages world, masks and
tfrecords are built in `workflow.data_stages`):
    world            synthetic world (`data.synthetic.make_world`) or a check of the real data folders
    masks            real data only, for domains whose mask folder is "auto": body masks of the train split
                     from a segmenter (`data.segment.make_masks`) into `masks/<domain>`
    tfrecords        TFRecord shards per domain (`data.build.build_dataset_tfrecords`)
    train_gan<s>     SBSGAN on all K domains (`training.gan_run.train_sbsgan`); one per SBSGAN the models
                     need (`model_table.Sbsgan`, e.g. `train_gan_nosc`; `train_gan_2dom_<target>` on the
                     source and one target)
    generate<s>      soft-mask / hard-mask images of the SBSGAN's domains, style transfer source -> each target
                     (`generation.translate.translate_dataset`)
    train_<model>    re-ID models on the source domain (`training.reid.train_reid`), one per `model_table` key
                     (`train_<model>_<target>` per target for a per-target SBSGAN's model)
    eval_<model>     each model on the target domains and the source (`evaluation.run.evaluate_run`); a
                     per-target model on its own target only
    quality          SBSGAN image quality against the exact masks (synthetic world only): soft-/hard-mask
                     suppression (`generation.quality`) and the style transfers (`generation.quality_style`;
                     identity kept by the features of `model_table.IDENTITY_MODEL` when the run trains it)
    domain_distance  t-SNE domain distances per image variant (`report.domain_analysis`)
    export           SavedModels + TFLite + ONNX with parity (`export.job.export_all`)
    <extra stages>   e.g. the experiments job's `tables`
    figures          the report's images from the trained models (`workflow.report_figures`)
    report           `<run_dir>/report.html` from files only (`workflow.report_data`, `report.html`)

The stages that run a network (train_gan*, generate*, train_*, eval_*, quality (the IDE of identity kept),
domain_distance, export, figures) compute in `ctx.precision` (the `precision` setting, resolved) and carry it
in their stage config, so changing it re-runs them (and what depends on them) and nothing else.
"""

import os

from bgshift_tf.core import atomic_io
from bgshift_tf.data import images, shards
from bgshift_tf.data import input as data_input
from bgshift_tf.data import variants
from bgshift_tf.evaluation.run import compiled_embed, evaluate_run
from bgshift_tf.export.job import export_all
from bgshift_tf.export.saved_model import signatures as saved_model_signatures
from bgshift_tf.generation import quality_style
from bgshift_tf.generation.quality import evaluate_suppression
from bgshift_tf.generation.translate import translate_dataset
from bgshift_tf.report import domain_analysis
from bgshift_tf.report.html import write_report
from bgshift_tf.training.gan_run import train_sbsgan
from bgshift_tf.training.reid import load_reid_model, train_reid
from bgshift_tf.workflow import config as config_lib
from bgshift_tf.workflow import model_table, report_data, report_figures
from bgshift_tf.workflow.data_stages import masks_stage, tfrecords_stage, world_stage
from bgshift_tf.workflow.run_layout import RunLayout
from bgshift_tf.workflow.stages import keras_stage, run_stages


# === SBSGAN and generated images ===


def gan_stage(ctx, sbsgan=model_table.PAPER_SBSGAN):
    """`train_gan<suffix>`: SBSGAN on its domains (all, or the source and its target), with its ablation changes."""
    domains = sbsgan.trained_domains(ctx.domains, ctx.source)
    gan_config = ctx.gan_config(sbsgan.suffix, domains, **dict(sbsgan.changes))

    def fn():
        summary = train_sbsgan(gan_config)
        return {"run_dir": gan_config["run_dir"], "final_step": summary["final_step"],
                "seconds": summary.get("seconds"), "losses": summary.get("losses"), "domains": summary["domains"]}

    stage_config = {k: v for k, v in gan_config.items() if k != "verbose"}
    return keras_stage(f"train_gan{sbsgan.suffix}", fn, config=stage_config, deps=["tfrecords"],
                       clean=[gan_config["run_dir"]], budget=420)


def _translate(ctx, sbsgan, domain, variant_list, **kwargs):
    """`translate_dataset` of `domain` into `generated<suffix>/`; {variant: folder} (`ctx.images`' names)."""
    result = translate_dataset(ctx.gan_dir(sbsgan.suffix), ctx.tfrecords(domain), ctx.generated_root(sbsgan.suffix),
                               variants=variant_list, batch_size=ctx.config["eval_batch_size"],
                               verbose=ctx.config["verbose"], precision=ctx.precision, **kwargs)
    return result["outputs"]


def generate_stage(ctx, sbsgan=model_table.PAPER_SBSGAN):
    """`generate<suffix>`: soft-/hard-mask images of the splits of every domain the SBSGAN trained on (source:
    train too, the others query and gallery; a per-target SBSGAN's models are tested on their target only,
    so its source gets the train split alone) and, when the SBSGAN generates style transfer, the source's
    train split styled to each target domain."""
    per_domain = [v for v in sbsgan.variants if v != variants.STYLE_TRANSFER]
    targets = ctx.targets if variants.STYLE_TRANSFER in sbsgan.variants else []
    source_splits = None if sbsgan.domains == model_table.ALL_DOMAINS else ["train"]

    def fn():
        outputs = {}
        for domain in sbsgan.trained_domains(ctx.domains, ctx.source):
            splits = source_splits if domain == ctx.source else ["query", "gallery"]
            outputs[domain] = _translate(ctx, sbsgan, domain, per_domain, splits=splits)
        for target in targets:
            outputs[variants.folder_name(ctx.source, variants.STYLE_TRANSFER, target)] = _translate(
                ctx, sbsgan, ctx.source, [variants.STYLE_TRANSFER], target_domain=target,
                splits=["train"])[variants.STYLE_TRANSFER]
        return {"outputs": outputs}

    settings = {"variants": list(sbsgan.variants), "targets": targets, "precision": ctx.precision,
                **({"source_splits": source_splits} if source_splits else {})}
    return keras_stage(f"generate{sbsgan.suffix}", fn, config=settings,
                       deps=[f"train_gan{sbsgan.suffix}"], clean=[ctx.generated_root(sbsgan.suffix)], budget=90)


# === Re-ID models ===


def train_stage_name(key, target=None):
    """`train_<key>`, or `train_<key>_<target>` for a per-target model."""
    return f"train_{key}" if target is None else f"train_{key}_{target}"


def reid_stage(ctx, key, target=None):
    """`train_<key>[_<target>]`: one re-ID model on the source domain's (generated) images."""
    spec = model_table.model(key)
    reid_config = model_table.reid_train_config(ctx, key, target)

    def fn():
        summary = train_reid(reid_config)
        return {"run_dir": reid_config["run_dir"], "final_step": summary["final_step"],
                "num_classes": summary["num_classes"], "losses": summary.get("losses"), "curve": summary.get("curve")}

    deps = [f"generate{spec.sbsgan.on(target).suffix}"] if spec.generated_variants() else ["tfrecords"]
    return keras_stage(train_stage_name(key, target), fn,
                       config={k: v for k, v in reid_config.items() if k != "verbose"}, deps=deps,
                       clean=[reid_config["run_dir"]], budget=200 if spec.network == "da2s" else 140)


def _evaluate(ctx, key, model, domain, run_dir):
    """(metrics of `key` on `domain`, note): writes `eval/<key>/<domain>.json` and its feature cache (keyed by
    the checkpoint of `run_dir`, the training run of `model`)."""
    config = ctx.config
    folder, second, same_input, note = model_table.eval_inputs(ctx, key, domain)
    embed_fn = None
    if same_input:  # Table 3's one-input variants: the same image in both streams at test time
        embed = compiled_embed(model, two_inputs=True)

        def embed_fn(batch):
            return embed(batch["image"], batch["image"])
    metrics = evaluate_run(
        run_dir, query_tfrecords=folder, gallery_tfrecords=folder, soft_mask_query_tfrecords=second,
        soft_mask_gallery_tfrecords=second, model=model, embed_fn=embed_fn,
        image_size=tuple(model.image_shape[:2]), distance=config["eval_distance"],
        mode=model_table.eval_mode(ctx, domain), flip_average=config["eval_flip_average"], batch_size=config["eval_batch_size"],
        out_path=os.path.join(ctx.eval_dir(key), f"{domain}.json"),
        features_cache_dir=os.path.join(ctx.eval_dir(key), f"{domain}_features"),
        progress=bool(config["verbose"]))
    return {**{k: metrics[k] for k in model_table.EVAL_METRICS if k in metrics}, "query_folder": folder}, note


def eval_stage(ctx, key):
    """`eval_<key>`: the model on every target domain and on the source (metrics JSON per domain); a
    per-target model, each of its runs on its own target."""
    config = ctx.config
    spec = model_table.model(key)
    domains = list(ctx.targets) if spec.per_target() else ctx.eval_domains

    def fn():
        results, notes = {}, []
        shared = None if spec.per_target() else load_reid_model(ctx.reid_dir(key), ctx.precision)
        for domain in domains:
            run_dir = ctx.reid_dir(key, domain if spec.per_target() else None)
            model = load_reid_model(run_dir, ctx.precision) if spec.per_target() else shared
            results[domain], note = _evaluate(ctx, key, model, domain, run_dir)
            notes += [note] if note else []
        return {"metrics": results, "notes": notes}

    settings = {"domains": domains, "distance": config["eval_distance"],
                "flip_average": config["eval_flip_average"], "batch_size": config["eval_batch_size"],
                "precision": ctx.precision}
    suffixes = [spec.sbsgan.on(domain).suffix for domain in domains]
    deps = [train_stage_name(key, target) for target in model_table.train_targets(ctx, key)] + ["generate"]
    deps += [f"generate{suffix}" for suffix in dict.fromkeys(suffixes) if suffix]
    return keras_stage(f"eval_{key}", fn, config=settings, deps=deps, clean=[ctx.eval_dir(key)], budget=40)


# === Analyses and export ===


def _resizing_embed_fn(model):
    """Images float32 [B,h,w,3] in [-1, 1] -> features of the IDE `model`, resized (bilinear) to its input size."""
    embed = compiled_embed(model, two_inputs=False)
    size = tuple(model.image_shape[:2])
    return lambda pixels: embed(images.resize(pixels, size))


def _style_quality(ctx, identity_key, max_images):
    """({domain: the domain classifier's held-out figures}, {target: style-transfer figures source -> target})
    of `generation.quality_style`; identity figures from `identity_key`'s features (None: not measured)."""
    transfers = {target: ctx.images(ctx.source, variants.STYLE_TRANSFER, target=target) for target in ctx.targets}
    image_size = data_input.stored_image_size(shards.shard_files(next(iter(transfers.values())), "train"))
    classifier, info = quality_style.domain_classifier_on_originals(
        ctx.world_dir, {domain: ctx.tfrecords(domain) for domain in ctx.domains}, image_size,
        batch_size=ctx.config["eval_batch_size"])
    classifier_rows = {domain: {**entry, "heldout_accuracy_all_domains": info["heldout_accuracy"],
                                "fit_split": info["fit_split"], "heldout_split": info["heldout_split"]}
                       for domain, entry in info["per_domain"].items()}
    embed_fn = (_resizing_embed_fn(load_reid_model(ctx.reid_dir(identity_key), ctx.precision))
                if identity_key else None)
    styles = {target: {"from": ctx.source, "split": "train", "identity_model": identity_key,
                       **quality_style.evaluate_style_transfer(
                           ctx.world_dir, ctx.tfrecords(ctx.source), folder, classifier=classifier,
                           domains=ctx.domains, target=target, embed_fn=embed_fn, split="train",
                           batch_size=ctx.config["eval_batch_size"], max_images=max_images)}
              for target, folder in transfers.items()}
    return classifier_rows, styles


def quality_stage(ctx, model_keys=()):
    """`quality`: soft-/hard-mask images vs the exact masks per domain, and the source's style transfers to
    each target (target share, identity kept by `model_table.IDENTITY_MODEL` when among `model_keys`,
    checkerboard), into
    quality.json: {domain: {"split", "metrics": {variant: metrics}, "domain_classifier": {...},
    "style_transfer": {...} (targets only)}}."""
    max_images = ctx.config["quality_max_images"]
    identity_key = model_table.identity_model_key(model_keys)

    def fn():
        results = {}
        for domain in ctx.domains:
            split = "train" if domain == ctx.source else "query"
            generated = {variants.SOFT_MASK: ctx.images(domain, variants.SOFT_MASK)}
            if model_table.hardmask_available(ctx, domain) or domain == ctx.source:
                generated[variants.HARD_MASK] = ctx.images(domain, variants.HARD_MASK)
            results[domain] = {"split": split, "metrics": evaluate_suppression(
                ctx.world_dir, ctx.tfrecords(domain), generated, split=split,
                batch_size=ctx.config["eval_batch_size"], max_images=max_images)}
        classifier_rows, styles = _style_quality(ctx, identity_key, max_images)
        for domain in ctx.domains:
            results[domain]["domain_classifier"] = classifier_rows[domain]
            if domain in styles:
                results[domain]["style_transfer"] = styles[domain]
        atomic_io.write_json(ctx.path("quality.json"), results)
        return {"quality": results}

    settings = {"max_images": max_images, "identity_model": identity_key, "precision": ctx.precision,
                "classifier_images": quality_style.CLASSIFIER_IMAGES}
    deps = ["generate"] + ([train_stage_name(identity_key)] if identity_key else [])
    return keras_stage("quality", fn, config=settings, deps=deps, clean=[ctx.path("quality.json")], budget=60)


def domain_distance_stage(ctx):
    num = ctx.config["tsne_num_per_domain"]

    def fn():
        summary = domain_analysis.analyze_tfrecord_dirs(
            [ctx.tfrecords(d) for d in ctx.domains], variants=list(variants.ALL),
            out_dir=ctx.path("domain_distance"), domain_names=ctx.domains, split="train", num_per_domain=num,
            gan_run_dir=ctx.gan_dir(), style_target=ctx.domains.index(ctx.target), seed=0, precision=ctx.precision)
        return {"summary_json": ctx.path("domain_distance", "domain_distance.json"), "figure": summary["figure"]}

    return keras_stage("domain_distance", fn, config={"num_per_domain": num, "style_target": ctx.target,
                                                      "precision": ctx.precision},
                       deps=["train_gan"], clean=[ctx.path("domain_distance")], budget=60)


def export_stage(ctx, model_keys):
    config = ctx.config
    key = model_table.export_model_key(model_keys)
    export_dir = ctx.path("saved_models")
    settings = {"tflite": config["export_tflite"], "onnx": config["export_onnx"], "model": key,
                "precision": ctx.precision}

    def fn():
        results = export_all(ctx.gan_dir(), ctx.reid_dir(key), export_dir, version=1, overwrite=True,
                             variants={"tflite": tuple(config["export_tflite"]),
                                       "onnx": ("float32",) if config["export_onnx"] else ()},
                             representative_tfrecords=ctx.tfrecords(ctx.source), num_representative=8,
                             precision=ctx.precision)
        # Recorded here so that the report reads them from the manifest instead of loading the models.
        signatures = {kind: saved_model_signatures(results[kind]["saved_model"])
                      for kind in ("generator", "embedder") if results.get(kind)}
        return {"export_dir": export_dir, "results": results, "signatures": signatures}

    return keras_stage("export", fn, config=settings, deps=["train_gan", f"train_{key}"], clean=[export_dir],
                       budget=120)


# === Figures and report ===


def figures_stage(ctx, model_keys):
    """`figures`: the report's images made with the trained models, as PNGs + `figures/figures.json`."""
    ablations = [s for s in model_table.sbsgans(model_keys, ctx.targets) if s.label]
    extra_generators = {s.label: ctx.gan_dir(s.suffix) for s in ablations}
    ranked_key = model_table.ranked_lists_model_key(model_keys)
    settings = {"extra_generators": extra_generators, "ranked_key": ranked_key,
                "num_ranked_queries": ctx.config["num_ranked_queries"],
                "num_grid_samples": ctx.config["num_grid_samples"], "precision": ctx.precision}

    def fn():
        return {"index": report_figures.write_figures(ctx, extra_generators, ranked_key)}

    deps = ["tfrecords"] + [f"train_gan{s.suffix}" for s in [model_table.PAPER_SBSGAN] + ablations]
    return keras_stage("figures", fn, config=settings, deps=deps + [f"eval_{ranked_key}"], clean=[ctx.figures_dir()],
                       budget=30)


def report_stage(ctx, model_keys, extra_deps=()):
    """`report`: `<run_dir>/report.html` from every finished stage's files (see `report_data`)."""
    deps = ["world", "tfrecords", "train_gan", "generate", "domain_distance", "export", "figures"]
    deps += [f"eval_{key}" for key in model_keys] + list(extra_deps)
    if ctx.config["data"] == "synthetic":
        deps.append("quality")

    def fn():
        return {"report": write_report(ctx.report(), report_data.build_report_data(ctx, model_keys))}

    return keras_stage("report", fn, config={"models": list(model_keys)}, deps=deps, clean=[ctx.report()], budget=20)


# === The job ===


def main_job_stages(ctx, extra_models=(), extra_stages=()):
    """The main job's stage list: the models of `ctx.config` plus `extra_models` (model-table keys), every
    SBSGAN they need, and `extra_stages` (stages built on those) before the figures and the report."""
    keys = model_table.ordered(model_table.main_model_keys(ctx.config["ide_variants"], ctx.config["da2s"])
                               + list(extra_models))
    stages = [world_stage(ctx)] + ([masks_stage(ctx)] if ctx.auto_mask_domains() else []) + [tfrecords_stage(ctx)]
    for sbsgan in model_table.sbsgans(keys, ctx.targets):
        stages += [gan_stage(ctx, sbsgan), generate_stage(ctx, sbsgan)]
    stages += [reid_stage(ctx, key, target) for key in keys for target in model_table.train_targets(ctx, key)]
    stages += [eval_stage(ctx, key) for key in keys]
    if ctx.config["data"] == "synthetic":
        stages.append(quality_stage(ctx, keys))
    stages += [domain_distance_stage(ctx), export_stage(ctx, keys), *extra_stages, figures_stage(ctx, keys),
               report_stage(ctx, keys, extra_deps=[stage.name for stage in extra_stages])]
    return stages


def layout(config) -> RunLayout:
    """The run layout of `config` (keys of `config.DEFAULT_CONFIG`), checked."""
    return RunLayout(config_lib.merge_config(config))


def run_main_job(config, *, force=(), log=None) -> dict:
    """Runs the main job on `config` (keys of DEFAULT_CONFIG); returns `run_stages`' results + paths."""
    ctx = layout(config)
    atomic_io.write_json(ctx.path("pipeline_config.json"), ctx.config)
    results = run_stages(ctx.run_dir, main_job_stages(ctx), force=tuple(force), log=log)
    return {"run_dir": ctx.run_dir, "report": ctx.report(), "stages": results}
