"""The data stages of a job (`workflow.stages`): the world, the masks of "auto" domains and the TFRecord
shards, built from a run layout (`workflow.run_layout.RunLayout`); the main job (`workflow.main_job`) and the
GAN ablation (`workflow.gan_ablation`) both start with them.

    world      synthetic world (`data.synthetic.make_world`) or a check of the real data folders
    masks      real data only, for domains whose mask folder is "auto": body masks of the train split from a
               segmenter (`data.segment.make_masks`) into `masks/<domain>`
    tfrecords  TFRecord shards per domain (`data.build.build_dataset_tfrecords`)
"""

import os

from bgshift_tf.data import build, segment, synthetic
from bgshift_tf.report import grids
from bgshift_tf.workflow.run_layout import AUTO_MASKS
from bgshift_tf.workflow.stages import keras_stage


def world_stage(ctx):
    config = ctx.config
    if config["data"] == "synthetic":
        settings = {"preset": config["preset"], "seed": config["world_seed"], **ctx.world_overrides()}

        def fn():
            world = synthetic.make_world(ctx.world_dir, preset=config["preset"], seed=config["world_seed"],
                                         verbose=bool(config["verbose"]), **ctx.world_overrides())
            return {"world_dir": ctx.world_dir, "domains": [d["name"] for d in world["domains"]],
                    "contact_sheet": os.path.join(ctx.world_dir, "contact_sheet.png")}

        return keras_stage("world", fn, config=settings, clean=[ctx.world_dir], budget=60)
    settings = {key: config[key] for key in ("domain_names", "domain_datasets", "domain_data_dirs",
                                             "domain_mask_dirs")}

    def check_real():
        missing = [p for p in config["domain_data_dirs"] + [m for m in config["domain_mask_dirs"]
                                                             if m not in ("", AUTO_MASKS)]
                   if not os.path.exists(p)]
        if missing:
            raise FileNotFoundError(f"real-data folders not found: {missing} (flags --domain_data_dirs / "
                                    "--domain_mask_dirs in your flagfile)")
        return {"domains": ctx.domains}

    return keras_stage("world", check_real, config=settings, budget=1)


def _domain_source(ctx, index, domain):
    """(dataset layout, data folder, mask folder or None) of one domain."""
    config = ctx.config
    if config["data"] == "synthetic":
        paths = synthetic.domain_paths(ctx.world_dir, domain)
        return ctx.dataset(domain), paths["data_dir"], paths["mask_dir"]
    mask_dir = config["domain_mask_dirs"][index]
    return (ctx.dataset(domain), config["domain_data_dirs"][index],
            ctx.masks(domain) if mask_dir == AUTO_MASKS else mask_dir or None)


def masks_stage(ctx):
    """`masks`: body masks of the train split of every "auto" domain (`data.segment.make_masks`)."""
    config = ctx.config
    classes = [int(c) for c in config["mask_person_classes"]]

    def fn():
        summaries = {}
        for domain in ctx.auto_mask_domains():
            index = ctx.domains.index(domain)
            summaries[domain] = segment.make_masks(
                config["domain_data_dirs"][index], config["domain_datasets"][index], ctx.masks(domain),
                segmenter=config["mask_segmenter"], person_classes=classes, progress=bool(config["verbose"]),
                contact_sheet=grids.mask_contact_sheet)
        return {"dirs": {d: ctx.masks(d) for d in summaries}, "summaries": summaries}

    settings = {"domains": ctx.auto_mask_domains(), "segmenter": config["mask_segmenter"], "person_classes": classes}
    return keras_stage("masks", fn, config=settings, deps=["world"], clean=[ctx.path("masks")], budget=600)


def tfrecords_stage(ctx):
    def fn():
        counts = {}
        for index, domain in enumerate(ctx.domains):
            dataset, data_dir, mask_dir = _domain_source(ctx, index, domain)
            manifest = build.build_dataset_tfrecords(
                dataset, data_dir, ctx.tfrecords(domain), mask_dir=mask_dir, num_shards=ctx.config["num_shards"],
                domain_index=index, domain_name=domain, progress=bool(ctx.config["verbose"]))
            counts[domain] = {split: entry["num_examples"] for split, entry in manifest["splits"].items()}
        return {"dirs": {d: ctx.tfrecords(d) for d in ctx.domains}, "counts": counts}

    return keras_stage("tfrecords", fn, config={"num_shards": ctx.config["num_shards"], "domains": ctx.domains},
                       deps=["world", "masks"] if ctx.auto_mask_domains() else ["world"], clean=[ctx.path("tfrecords")],
                       budget=40)
