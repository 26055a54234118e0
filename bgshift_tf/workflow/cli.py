"""absl flags for the main job's settings, shared by `python -m bgshift_tf.pipeline` and `.experiments`.

One flag per key of `config.DEFAULT_CONFIG` (same name, type and default; help in `config.HELP`), plus
`--force_stage`. Their ranges, choices and paths are checked when the command line is parsed
(`bgshift_tf.core.flag_checks`), so a bad value ends the command before the first stage.
"""

from absl import flags

from bgshift_tf.core import flag_checks, precision
from bgshift_tf.core.distance import METRICS
from bgshift_tf.data import variants
from bgshift_tf.data.build import DATASETS
from bgshift_tf.data.synthetic import PRESETS
from bgshift_tf.export.tflite import VARIANTS as TFLITE_VARIANTS
from bgshift_tf.workflow import config

_AT_LEAST = {"num_shards": 1, "eval_batch_size": 1, "tsne_num_per_domain": 1, "num_grid_samples": 1,
             "num_ranked_queries": 0, "quality_max_images": 0, "world_num_ids": 0, "world_images_per_id": 0,
             "verbose": 0}
_CHOICES = {"data": ("synthetic", "real"), "preset": sorted(PRESETS), "precision": precision.PRECISIONS,
            "eval_distance": METRICS}
_LIST_CHOICES = {"ide_variants": variants.ALL, "export_tflite": TFLITE_VARIANTS, "domain_datasets": DATASETS}


def _mask_dirs_exist(values):
    missing = [v for v in values or () if v not in ("", "auto") and flag_checks.check_input(v, "dir")]
    if missing:
        raise flags.ValidationError(f"{', '.join(missing)}: no such folder (or use `auto` or leave it empty)")
    return True


def _register_checks():
    for key, lower in _AT_LEAST.items():
        flag_checks.in_range(key, lower=lower)
    for key, choices in _CHOICES.items():
        flags.register_validator(key, lambda value, choices=choices: value in choices,
                                 f"must be one of {', '.join(choices)}")
    for key, choices in _LIST_CHOICES.items():
        flag_checks.list_choices(key, choices)
    flag_checks.input_path("gan_flagfile", "reid_flagfile", kind="file")
    flag_checks.input_path("domain_data_dirs")
    flags.register_validator("domain_mask_dirs", _mask_dirs_exist)
    flag_checks.output_dir("runs_root", "part_dir")


def define_flags():
    """Defines the settings flags and `--force_stage`; returns the `--force_stage` FlagHolder."""
    config.define_flags(config.DEFAULT_CONFIG, flags.FLAGS, config.HELP)
    _register_checks()
    return flags.DEFINE_list("force_stage", [], "Stages to redo even if complete (their dependents re-run too).")


def config_from_flags():
    """The main-job config dict from the parsed flags."""
    return {key: flags.FLAGS[key].value for key in config.DEFAULT_CONFIG}
