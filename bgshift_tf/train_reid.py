"""Trains a re-ID model: the IDE baseline on one image variant, or DA-2S on (soft-mask, style) pairs.

Usage:
    python -m bgshift_tf.train_reid --model=da2s --flagfile=bgshift_tf/configs/reid_demo.flags \
        --run_dir=runs/reid_demo_da2s
    python -m bgshift_tf.train_reid --model=ide --flagfile=bgshift_tf/configs/reid_demo.flags \
        --train_dir=tfrecords/generated/synmarket_soft_mask --run_dir=runs/reid_demo_ide_softmask
    python -m bgshift_tf.train_reid --model=ide --flagfile=bgshift_tf/configs/reid_demo.flags \
        --train_dir=tfrecords/generated/synmarket_hard_mask --run_dir=runs/reid_demo_ide_hardmask
    python -m bgshift_tf.train_reid --model=da2s --flagfile=bgshift_tf/configs/reid_paper.flags \
        --stream1_dir=tfrecords/generated/market1501_soft_mask \
        --stream2_dir=tfrecords/generated/market1501_style_transfer_to_dukemtmc \
        --backbone_weights=imagenet --run_dir=runs/da2s_market

Re-running with the same --run_dir resumes from its latest checkpoint. The run directory gets
config.json, checkpoints/ and TensorBoard logs/ (`bgshift_tf.training.reid.load_reid_model` reloads it).
"""

from absl import flags

from bgshift_tf.core import config_flags, errors, flag_checks
from bgshift_tf.training import run_flags
from bgshift_tf.training.interrupts import exit_on_interrupt
from bgshift_tf.training.reid import DEFAULT_CONFIG, train_reid

_D = DEFAULT_CONFIG
# The trainer's own flags: one per key of DEFAULT_CONFIG, its default and type from there; the shared run
# flags (precision, strategy, cadence, verbose) come from run_flags.
_HELP = {
    "model": "IDE baseline or the two-stream DA-2S.",
    "train_dir": "IDE: TFRecord folder of the image variant to train on (original, soft-mask or style-transferred "
                 "records).",
    "hard_mask": "IDE: train on hard-mask images made from the records' masks.",
    "stream1_dir": "DA-2S: TFRecord folder of soft-mask images.",
    "stream2_dir": "DA-2S: TFRecord folder of style-transferred images (same file names and shard layout as "
                   "--stream1_dir).",
    "split": "Split of the TFRecord folders to train on.",
    "backbone": "Trunk of each stream.",
    "backbone_weights": "imagenet (local Keras cache file, no download) | none | path to a DenseNet-121 notop .h5 "
                        "file.",
    "use_se": "DA-2S: SE block on the concatenated final maps (Table 3).",
    "use_isdc": "DA-2S: ISDC modules between the streams (Table 3).",
    "isdc_se": "DA-2S: an SE block on every ISDC output (Table 3 ISDC-SE; needs --use_isdc).",
    "image_height": "Input height (multiple of 32).",
    "image_width": "Input width (multiple of 32).",
    "batch_size": "Global batch size (split across replicas).",
    "epochs": "Training epochs.",
    "max_steps": "If > 0, train this many steps instead of --epochs.",
    "holdout_ids": "Early stopping: training identities held out as a retrieval test after every epoch (0 = off; "
                   "needs --patience).",
    "patience": "Early stopping: epochs without a better held-out rank-1 before training stops (the best model is "
                "kept in <run_dir>/best/).",
    "min_epochs": "Early stopping never stops before this many epochs (the held-out rank-1 is noisy before the "
                  "learning rate decays).",
    "learning_rate": "Initial SGD learning rate.",
    "decayed_learning_rate": "Learning rate after --lr_decay_epoch.",
    "lr_decay_epoch": "Epoch after which the learning rate drops.",
    "momentum": "SGD momentum.",
    "shuffle_buffer": "Records in the shuffle buffer.",
    "seed": "Input shuffling/flip seed (offset by the resume step).",
    "run_dir": "Run directory (config.json, checkpoints/, logs/); resumes. Default: runs/reid_<model>.",
}
_LOWER_BOUNDS = {**dict.fromkeys(["batch_size", "epochs", "shuffle_buffer"], 1),
                 **dict.fromkeys(["max_steps", "holdout_ids", "patience", "min_epochs", "lr_decay_epoch"], 0)}
config_flags.define_from_config(_D, _HELP, _LOWER_BOUNDS,
                                choices={"model": ["ide", "da2s"], "backbone": ["densenet121", "densenet_small"]})
run_flags.define_run_flags(_D)
flag_checks.in_range("learning_rate", lower=0, lower_open=True)
flag_checks.in_range("decayed_learning_rate", lower=0)
flag_checks.in_range("momentum", lower=0, upper=1, upper_open=True)
flag_checks.multiple_of(["image_height", "image_width"], lambda values: 32, "the DenseNet trunk's 5 stride-2 stages")
flag_checks.input_path("train_dir", "stream1_dir", "stream2_dir", kind="dir")
flags.register_validator(
    "backbone_weights", lambda value: value in ("imagenet", "none") or flag_checks.check_input(value, "file") is None,
    "must be imagenet, none or an existing DenseNet-121 notop .h5 file")
flag_checks.output_dir("run_dir")


def main(argv):
    del argv
    with exit_on_interrupt("train_reid"):
        train_reid({key: flags.FLAGS[key].value for key in DEFAULT_CONFIG})


if __name__ == "__main__":
    errors.run(main, "train_reid")
