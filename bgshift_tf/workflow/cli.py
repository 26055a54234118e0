"""absl flags for the main job's settings, shared by `python -m bgshift_tf.pipeline` and `.experiments`.

One flag per key of `config.DEFAULT_CONFIG` (same name, type and default; help in `config.HELP`), plus
`--force_stage`.
"""

from absl import flags

from bgshift_tf.workflow import config


def define_flags():
    """Defines the settings flags and `--force_stage`; returns the `--force_stage` FlagHolder."""
    config.define_flags(config.DEFAULT_CONFIG, flags.FLAGS, config.HELP)
    return flags.DEFINE_list("force_stage", [], "Stages to redo even if complete (their dependents re-run too).")


def config_from_flags():
    """The main-job config dict from the parsed flags."""
    return {key: flags.FLAGS[key].value for key in config.DEFAULT_CONFIG}
