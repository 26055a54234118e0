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

from bgshift_tf.core import config_flags, errors, flag_checks
from bgshift_tf.models.generator import ATTENTION_MODES
from bgshift_tf.models.layers import UPSAMPLE_MODES
from bgshift_tf.training import gan_run, interrupts, run_flags
from bgshift_tf.training.losses import LossWeights

_D = gan_run.DEFAULT_CONFIG

# The trainer's own flags: one per key of DEFAULT_CONFIG, its default and type from there. The shared run
# flags (precision, strategy, cadence, verbose) come from run_flags, the loss weights from LossWeights.
_HELP = {
    "domain_dirs": "TFRecord folders, one per domain, in domain-index order.",
    "split": "Split of the TFRecord folders to train on.",
    "image_height": "Image height (multiple of 2**d_num_layers).",
    "image_width": "Image width (multiple of 2**d_num_layers).",
    "batch_size": "Global batch size (all replicas together).",
    "epochs": "Epochs over all domains' images (one D update per batch).",
    "max_steps": "If > 0, train this many iterations instead of --epochs.",
    "learning_rate": "Adam learning rate of G and D.",
    "beta1": "Adam beta_1.",
    "beta2": "Adam beta_2.",
    "n_critic": "D updates per G update.",
    "num_soft_mask": "Soft-mask images per global batch (0 = K + 1).",
    "base_filters": "Generator width (64 in the paper).",
    "num_res_blocks": "Generator residual blocks (6 in the paper).",
    "d_base_filters": "Discriminator width (64 in the paper).",
    "d_num_layers": "Discriminator stride-2 convs (6 in the paper).",
    "upsample": "Decoder upsampling: transposed (4x4/2 deconv, the paper's), or nearest / bilinear resize + 3x3 conv.",
    "skips": "U-Net skip connections from G's encoder to its decoders (not the paper's: sharper bodies at short "
             "budgets).",
    "attention": "Decoders whose output blends the input image through a predicted keep-mask (GANimation; not the "
                 "paper's): none, soft_mask or both.",
    "keep_bias": "Initial bias of the attention keep-mask logits (0 = Keras' zeros, keep ~0.5 at the start; 2 starts "
                 "near a copy of the input, keep ~0.88).",
    "g_ema_decay": "If > 0 (< 1), keep a moving average of G's weights with this decay for generation and export.",
    "lr_decay_start": "Fraction of training (0, 1] after which both learning rates decay linearly to 0 (1 = "
                      "constant, the paper's; StarGAN: 0.5).",
    "steps_per_call": "Training iterations per graph call (losses checked and logged once per call).",
    "shuffle_buffer": "Shuffle buffer per domain.",
    "run_dir": "Run directory (config.json, checkpoints/, logs/).",
    "image_every": "Write TensorBoard image grids every N iterations (0 = never).",
    "num_preview": "Preview images per domain in the image grids.",
    "seed": "Seed of the data order, targets and gradient-penalty draws.",
}
_LOWER_BOUNDS = dict.fromkeys(["batch_size", "epochs", "n_critic", "base_filters", "d_base_filters", "d_num_layers",
                               "steps_per_call", "shuffle_buffer", "num_preview"], 1)
_LOWER_BOUNDS.update(dict.fromkeys(["max_steps", "num_soft_mask", "num_res_blocks", "image_every"], 0))

config_flags.define_from_config(_D, _HELP, _LOWER_BOUNDS,
                                choices={"upsample": UPSAMPLE_MODES, "attention": ATTENTION_MODES})
config_flags.define_from_config(
    _D, {weight.name: weight.metadata["help"] for weight in dataclasses.fields(LossWeights)},
    dict.fromkeys(LossWeights.names(), 0))
run_flags.define_run_flags(_D)

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
