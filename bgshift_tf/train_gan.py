"""Trains SBSGAN on K TFRecord folders (one per domain); resumes from --run_dir if it has checkpoints.

Usage:
    python -m bgshift_tf.train_gan --flagfile=bgshift_tf/configs/gan_demo.flags
    python -m bgshift_tf.train_gan --flagfile=bgshift_tf/configs/gan_paper.flags \
        --domain_dirs=tfrecords/market1501,tfrecords/dukemtmc,tfrecords/cuhk03 --run_dir=runs/sbsgan
    # two replicas on a CPU-only machine:
    python -m bgshift_tf.train_gan --flagfile=bgshift_tf/configs/gan_demo.flags --strategy=mirrored --cpu_replicas=2
    # several hosts: TF_CONFIG on each, then --strategy=multi_worker

Writes <run_dir>/config.json, checkpoints/ and logs/ (TensorBoard: `tensorboard --logdir <run_dir>/logs`).
"""

import dataclasses

from absl import flags

from bgshift_tf.core import errors, flag_checks
from bgshift_tf.models.layers import UPSAMPLE_MODES
from bgshift_tf.training import gan_run, interrupts, run_flags
from bgshift_tf.training.losses import LossWeights

_D = gan_run.DEFAULT_CONFIG

flags.DEFINE_list("domain_dirs", _D["domain_dirs"], "TFRecord folders, one per domain, in domain-index order.")
flags.DEFINE_string("split", _D["split"], "Split of the TFRecord folders to train on.")
flags.DEFINE_integer("image_height", _D["image_height"], "Image height (multiple of 2**d_num_layers).")
flags.DEFINE_integer("image_width", _D["image_width"], "Image width (multiple of 2**d_num_layers).")
flags.DEFINE_integer("batch_size", _D["batch_size"], "Global batch size (all replicas together).",
                     lower_bound=1)
flags.DEFINE_integer("epochs", _D["epochs"], "Epochs over all domains' images (one D update per batch).",
                     lower_bound=1)
flags.DEFINE_integer("max_steps", _D["max_steps"], "If > 0, train this many iterations instead of --epochs.",
                     lower_bound=0)
flags.DEFINE_float("learning_rate", _D["learning_rate"], "Adam learning rate of G and D.")
flags.DEFINE_float("beta1", _D["beta1"], "Adam beta_1.")
flags.DEFINE_float("beta2", _D["beta2"], "Adam beta_2.")
for _weight in dataclasses.fields(LossWeights):
    flags.DEFINE_float(_weight.name, _weight.default, _weight.metadata["help"], lower_bound=0)
flags.DEFINE_integer("n_critic", _D["n_critic"], "D updates per G update.", lower_bound=1)
flags.DEFINE_integer("num_soft_mask", _D["num_soft_mask"], "Soft-mask images per global batch (0 = K + 1).",
                     lower_bound=0)
flags.DEFINE_integer("base_filters", _D["base_filters"], "Generator width (64 in the paper).",
                     lower_bound=1)
flags.DEFINE_integer("num_res_blocks", _D["num_res_blocks"], "Generator residual blocks (6 in the paper).",
                     lower_bound=0)
flags.DEFINE_integer("d_base_filters", _D["d_base_filters"], "Discriminator width (64 in the paper).",
                     lower_bound=1)
flags.DEFINE_integer("d_num_layers", _D["d_num_layers"], "Discriminator stride-2 convs (6 in the paper).",
                     lower_bound=1)
flags.DEFINE_enum("upsample", _D["upsample"], list(UPSAMPLE_MODES),
                  "Decoder upsampling: transposed (4x4/2 deconv, the paper's), or nearest / bilinear resize + 3x3 conv.")
flags.DEFINE_boolean("skips", _D["skips"], "U-Net skip connections from G's encoder to its decoders (not the "
                     "paper's: sharper bodies at short budgets).")
flags.DEFINE_float("g_ema_decay", _D["g_ema_decay"],
                   "If > 0 (< 1), keep a moving average of G's weights with this decay for generation and export.")
flags.DEFINE_float("lr_decay_start", _D["lr_decay_start"], "Fraction of training (0, 1] after which both learning "
                   "rates decay linearly to 0 (1 = constant, the paper's; StarGAN: 0.5).")
flags.DEFINE_integer("steps_per_call", _D["steps_per_call"],
                     "Training iterations per graph call (losses checked and logged once per call).",
                     lower_bound=1)
flags.DEFINE_integer("shuffle_buffer", _D["shuffle_buffer"], "Shuffle buffer per domain.",
                     lower_bound=1)
flags.DEFINE_string("run_dir", _D["run_dir"], "Run directory (config.json, checkpoints/, logs/).")
flags.DEFINE_integer("image_every", _D["image_every"], "Write TensorBoard image grids every N iterations (0 = never).",
                     lower_bound=0)
run_flags.define_run_flags(_D)
flags.DEFINE_integer("num_preview", _D["num_preview"], "Preview images per domain in the image grids.",
                     lower_bound=1)
flags.DEFINE_integer("seed", _D["seed"], "Seed of the data order, targets and gradient-penalty draws.")

flag_checks.in_range("learning_rate", lower=0, lower_open=True)
for _rate in ("beta1", "beta2", "g_ema_decay"):
    flag_checks.in_range(_rate, lower=0, upper=1, upper_open=True)
flag_checks.in_range("lr_decay_start", lower=0, upper=1, lower_open=True)
flag_checks.multiple_of(["image_height", "image_width"], lambda values: 2 ** values["d_num_layers"],
                        "the discriminator halves the image --d_num_layers times", depends_on=["d_num_layers"])
flag_checks.input_path("domain_dirs", kind="dir")
flag_checks.output_dir("run_dir")

FLAGS = flags.FLAGS


def main(argv):
    del argv
    with interrupts.exit_on_interrupt("train_gan"):
        summary = gan_run.train_sbsgan({name: FLAGS[name].value for name in gan_run.DEFAULT_CONFIG})
    print(f"Trained {summary['final_step']} steps ({summary['steps_run']} in this run, "
          f"{summary['steps_per_second']:.2f} steps/s); checkpoint: {summary['checkpoint']}")


if __name__ == "__main__":
    errors.run(main, "train_gan")
