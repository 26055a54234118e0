"""Batch inference on Apache Beam over exported SavedModels: SBSGAN images or re-ID feature shards.

Usage:
    python -m bgshift_tf.batch_infer --job=features --model=saved_models/da2s_embedder \
        --in_dir=tfrecords/synduke --out_dir=runs/features/synduke --splits=query,gallery
    python -m bgshift_tf.batch_infer --job=soft_mask --model=saved_models/sbsgan_generator/1 \
        --in_dir=tfrecords/synmarket --out_dir=tfrecords/generated/synmarket_soft_mask
    python -m bgshift_tf.batch_infer --job=style_transfer --target_domain=1 --model=... --in_dir=... --out_dir=...
    # Another runner: its own Beam flags follow ours unchanged (here Dataflow; Flink: --flink_master=HOST:8081):
    python -m bgshift_tf.batch_infer --job=features --model=... --in_dir=... --out_dir=... \
        --runner=DataflowRunner --project=P --region=europe-west1 --temp_location=gs://B/tmp

Jobs (`export.beam_jobs`): soft_mask / style_transfer write the TFRecord folder `generate` writes for that
variant (same schema, shards, order and manifest); features writes feature shards (`data.feature_shards`),
the input of `python -m bgshift_tf.search build`. --model is an export's model folder (its highest version,
as TF Serving picks) or one version folder. The output manifest is written last, once every shard is; an
--out_dir that already has one needs --overwrite.

Any flag this program does not define is a Beam pipeline option, passed to `PipelineOptions` unchanged (on
the command line; not inside a --flagfile). The default runner, DirectRunner, runs Beam's in-process
FnApiRunner (never Prism, which downloads a binary). Each shard written is logged.
"""

import logging
import sys

from absl import flags

from bgshift_tf.core import errors, flag_checks
from bgshift_tf.export import beam_jobs

_JOB = flags.DEFINE_enum("job", None, list(beam_jobs.JOBS), "soft_mask | style_transfer (generator export) | "
                         "features (embedder export).", required=True)
_MODEL = flags.DEFINE_string("model", None, "Exported SavedModel: model folder (highest version) or version "
                             "folder.", required=True)
_IN_DIR = flags.DEFINE_string("in_dir", None, "Input TFRecord folder (manifest.json + shards).", required=True)
_OUT_DIR = flags.DEFINE_string("out_dir", None, "Output shard folder (its manifest is written last).",
                               required=True)
_SPLITS = flags.DEFINE_list("splits", None, "Splits to process (default: all in the input manifest).")
_TARGET = flags.DEFINE_integer("target_domain", None, "style_transfer: the target domain index, in "
                               "[0, num_domains) of the export.")
_MIN_BATCH = flags.DEFINE_integer("min_batch_size", 1, "RunInference's smallest batch.", lower_bound=1)
_MAX_BATCH = flags.DEFINE_integer("max_batch_size", 32, "RunInference's largest batch (images per signature "
                                  "call).", lower_bound=1)
_RUNNER = flags.DEFINE_string("runner", beam_jobs.DIRECT_RUNNER, "Beam runner: DirectRunner (in-process "
                              "FnApiRunner), DataflowRunner, FlinkRunner, SparkRunner, ...")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Redo an --out_dir that already has a manifest.")
flag_checks.input_path("model", "in_dir", kind="dir")
flag_checks.output_dir("out_dir")
flags.register_multi_flags_validator(
    ["min_batch_size", "max_batch_size"], lambda v: v["min_batch_size"] <= v["max_batch_size"],
    message="--min_batch_size must be <= --max_batch_size")

# absl's own flags that the registry may not list before app.run defines them.
_ABSL_SPECIAL = frozenset({"flagfile", "undefok", "help", "helpshort", "helpfull", "helpxml", "?", "verbose"})
_PIPELINE_ARGS = []


def split_pipeline_args(argv, known=None):
    """(argv with this program's flags, Beam's pipeline options): every flag absl does not define is Beam's,
    with its value when that is the next argument (`--project P`); the order is kept.

    Args:
      argv: the command line, program name first.
      known: flag names of this program (default: every flag absl defines, its special ones included).
    """
    known = set(flags.FLAGS) | _ABSL_SPECIAL if known is None else set(known)
    ours, beam_args = list(argv[:1]), []
    args = list(argv[1:])
    position = 0
    while position < len(args):
        arg = args[position]
        position += 1
        if arg == "--":
            ours.extend(args[position - 1:])
            break
        name = arg.lstrip("-").split("=", 1)[0]
        if not arg.startswith("-") or name in known or (name.startswith("no") and name[2:] in known):
            ours.append(arg)
            continue
        beam_args.append(arg)
        if "=" not in arg and position < len(args) and not args[position].startswith("-"):
            beam_args.append(args[position])
            position += 1
    return ours, beam_args


def _log_progress():
    """Shows `beam_jobs`' per-shard lines (INFO) on stderr whatever absl's verbosity."""
    logger = logging.getLogger(beam_jobs.__name__)
    logger.setLevel(logging.INFO)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("batch_infer: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False


def main(argv):
    if len(argv) > 1:
        raise errors.ArgumentError(f"unexpected arguments {argv[1:]}: every input is a --flag")
    _log_progress()
    manifest = beam_jobs.run_job(
        _JOB.value, model=_MODEL.value, in_dir=_IN_DIR.value, out_dir=_OUT_DIR.value, splits=_SPLITS.value,
        target_domain=_TARGET.value, min_batch_size=_MIN_BATCH.value, max_batch_size=_MAX_BATCH.value,
        overwrite=_OVERWRITE.value, runner=_RUNNER.value, pipeline_args=_PIPELINE_ARGS)
    for split, entry in manifest["splits"].items():
        print(f"{_JOB.value} {split}: {entry['num_examples']} records in {entry['num_shards']} shards -> "
              f"{_OUT_DIR.value}")


if __name__ == "__main__":
    sys.argv, _PIPELINE_ARGS[:] = split_pipeline_args(sys.argv)
    errors.run(main, "batch_infer")
