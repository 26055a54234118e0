"""The absl flags every trainer entry point shares (`train_gan`, `train_reid`): precision, distribution,
checkpoint and summary cadence, progress. Defaults come from the trainer's own DEFAULT_CONFIG."""

from absl import flags

from bgshift_tf.core import precision
from bgshift_tf.training.strategy import STRATEGIES


def define_run_flags(defaults):
    """Defines --precision, --strategy, --cpu_replicas, --intra_op_threads, --inter_op_threads, --checkpoint_every, --keep_checkpoints,
    --summary_every and --verbose with the values of `defaults` (a trainer's DEFAULT_CONFIG)."""
    precision.define_flag(defaults["precision"])
    flags.DEFINE_enum("strategy", defaults["strategy"], list(STRATEGIES),
                      "tf.distribute strategy: default (one device), mirrored (one host), multi_worker (TF_CONFIG).")
    flags.DEFINE_integer("cpu_replicas", defaults["cpu_replicas"],
                         "Split the CPU into this many logical devices (0 = no; mirrored on CPU).",
                         lower_bound=0)
    flags.DEFINE_integer("intra_op_threads", defaults["intra_op_threads"],
                         "TF intra-op threads (0 = TF's default); set before TF starts.", lower_bound=0)
    flags.DEFINE_integer("inter_op_threads", defaults["inter_op_threads"],
                         "TF inter-op threads (0 = TF's default); on a 2-core AVX2 CPU --intra_op_threads=1 "
                         "--inter_op_threads=2 trained SBSGAN 1.05-1.11x faster (BUILD_NOTES).", lower_bound=0)
    flags.DEFINE_integer("checkpoint_every", defaults["checkpoint_every"], "Save a checkpoint every N iterations.",
                         lower_bound=1)
    flags.DEFINE_integer("keep_checkpoints", defaults["keep_checkpoints"], "Checkpoints to keep.", lower_bound=1)
    flags.DEFINE_integer("summary_every", defaults["summary_every"],
                         "Write loss / learning-rate summaries every N iterations.", lower_bound=1)
    flags.DEFINE_integer("verbose", defaults["verbose"], "1 = progress bar, 0 = quiet, 2 = also tracebacks of "
                         "user errors.", lower_bound=0)
