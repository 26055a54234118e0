"""Builds TFRecord shards + manifest for one re-ID dataset (or one synthetic-world domain).

Usage:
    python -m bgshift_tf.build_tfrecords --dataset=market1501 --data_dir=/data/Market-1501-v15.09.15 \
        --mask_dir=/data/market_masks --out_dir=tfrecords/market1501 --num_shards=8
    python -m bgshift_tf.build_tfrecords --dataset=cuhk03_classic --data_dir=/data/cuhk03/cuhk-03.mat \
        --cuhk03_variant=detected --cuhk03_split=0 --out_dir=tfrecords/cuhk03 --domain_index=2
    # one domain of the synthetic world (Market-1501 layout):
    python -m bgshift_tf.build_tfrecords --dataset=market1501 --data_dir=data_synthetic/synmarket \
        --mask_dir=data_synthetic/synmarket/masks --domain_name=synmarket --domain_index=0 \
        --out_dir=tfrecords/synmarket

Re-running resumes (complete shards are kept); --overwrite rebuilds them.
"""

import os

from absl import flags

from bgshift_tf.core import config_flags, errors, flag_checks
from bgshift_tf.data.build import DATASETS, build_dataset_tfrecords
from bgshift_tf.training import interrupts

flags.DEFINE_enum("dataset", None, list(DATASETS), "Dataset layout to read.")
flags.DEFINE_string("data_dir", None, "Dataset root folder (cuhk03_np: the folder holding detected/ "
                    "and labeled/; cuhk03_classic: the cuhk-03.mat file).")
flags.DEFINE_string("mask_dir", None, "Body-mask folder mirroring --data_dir (optional).")
_OUT_DIR = flags.DEFINE_string("out_dir", None, "Output folder for shards and manifest.json.")
flags.DEFINE_integer("num_shards", 8, "Shards per split (capped by the split size).", lower_bound=1)
flags.DEFINE_bool("overwrite", False, "Rewrite shards already complete.")
flags.DEFINE_bool("skip_bad_masks", False, "Skip (and count) images whose mask is missing, "
                  "unreadable or wrongly sized instead of failing.")
flags.DEFINE_bool("skip_bad_names", False, "Skip (and count) images whose file name does not "
                  "follow the dataset's convention instead of failing.")
flags.DEFINE_integer("domain_index", 0, "Domain index stored in every example.", lower_bound=0)
flags.DEFINE_string(
    "domain_name", None, "Domain name (default: the dataset name); also names the shards."
)
flags.DEFINE_enum("cuhk03_variant", "detected", ["detected", "labeled"], "CUHK03 boxes.")
_CUHK03_SPLIT = flags.DEFINE_string(
    "cuhk03_split", "0", "CUHK03 classic split, 0..19, or `all`: the 20 splits (images decoded once) in "
    "<out_dir>/split_00 .. split_19.")
flags.DEFINE_integer("seed", 0, "Seed of the train-split shuffle across shards.")
# Flags passed as they are to build_dataset_tfrecords, whose keywords have their names.
_PASSED_THROUGH = ("dataset", "data_dir", "out_dir", "mask_dir", "num_shards", "overwrite", "skip_bad_masks",
                   "skip_bad_names", "domain_index", "domain_name", "cuhk03_variant", "seed")
flags.mark_flags_as_required(["dataset", "data_dir", "out_dir"])
flag_checks.input_path("data_dir")
flag_checks.input_path("mask_dir", kind="dir")
flag_checks.output_dir("out_dir")


@interrupts.stops_cleanly("build_tfrecords")
def main(argv):
    del argv
    manifest = build_dataset_tfrecords(
        **config_flags.values(_PASSED_THROUGH),
        cuhk03_split=_cuhk03_split(_CUHK03_SPLIT.value),
    )
    for folder, one in ({_OUT_DIR.value: manifest} if "splits" in manifest else
                        {os.path.join(_OUT_DIR.value, name): m for name, m in manifest.items()}).items():
        counts = {split: entry["num_examples"] for split, entry in one["splits"].items()}
        print(f"wrote {folder}: {counts}, skipped {one['skipped']}")


def _cuhk03_split(text):
    """The --cuhk03_split value: "all" or an int (checked against 0..19 by the dataset loader)."""
    if text == "all":
        return text
    try:
        return int(text)
    except ValueError:
        raise errors.ArgumentError(f"--cuhk03_split must be an integer 0..19 or `all`. Received: {text!r}") from None


if __name__ == "__main__":
    errors.run(main, "build_tfrecords")
