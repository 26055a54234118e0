"""absl flags for the main job's settings, shared by `python -m bgshift_tf.pipeline` and `.experiments`.

One flag per key of `main_job.DEFAULT_CONFIG` (same name, type and default), plus `--force_stage`.
"""

from absl import flags

from bgshift_tf.workflow import main_job

_HELP = {
    "name": "Run folder name under --runs_root.",
    "runs_root": "Parent folder of the run folders.",
    "data": "synthetic (the built-in world) or real (--domain_* flags).",
    "preset": "Synthetic world size preset: tiny (tests) or demo.",
    "world_seed": "Synthetic world seed.",
    "world_num_ids": "Identities per synthetic domain (0 = the preset's).",
    "world_images_per_id": "Mean images per synthetic identity (0 = the preset's).",
    "domain_names": "Real data: domain names in domain-index order (e.g. market1501,dukemtmc,cuhk03).",
    "domain_datasets": "Real data: layout per domain (market1501, dukemtmc, cuhk03_np).",
    "domain_data_dirs": "Real data: dataset root folder per domain.",
    "domain_mask_dirs": "Real data: body-mask folder per domain (mirrors the image folders).",
    "source": "Domain the re-ID models train on.",
    "targets": "Test domains (default: all others); the first is the style-transfer target of DA-2S.",
    "num_shards": "TFRecord shards per split.",
    "gan_flagfile": "SBSGAN trainer flagfile (train_gan flags; data and run folders are set by the pipeline).",
    "gan_overrides": "key=value SBSGAN settings over --gan_flagfile (e.g. max_steps=200).",
    "reid_flagfile": "Re-ID trainer flagfile (train_reid flags; data and run folders are set by the pipeline).",
    "reid_overrides": "key=value re-ID settings over --reid_flagfile (e.g. epochs=6).",
    "ide_variants": "IDE training images: any of original,hardmask,style,softmask.",
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
}


def define_flags():
    """Defines the settings flags and `--force_stage`; returns the `--force_stage` FlagHolder."""
    for key, default in main_job.DEFAULT_CONFIG.items():
        if isinstance(default, bool):
            flags.DEFINE_bool(key, default, _HELP[key])
        elif isinstance(default, int):
            flags.DEFINE_integer(key, default, _HELP[key])
        elif isinstance(default, list):
            flags.DEFINE_list(key, default, _HELP[key])
        else:
            flags.DEFINE_string(key, default, _HELP[key])
    return flags.DEFINE_list("force_stage", [], "Stages to redo even if complete (their dependents re-run too).")


def config_from_flags():
    """The main-job config dict from the parsed flags."""
    return {key: flags.FLAGS[key].value for key in main_job.DEFAULT_CONFIG}
