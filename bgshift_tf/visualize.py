"""Domain-distance analysis (the paper's Fig. 6) on TFRecord folders, one folder per domain.

Writes `<out_dir>/domain_distance.png` (t-SNE scatter per variant, domain centres marked) and
`<out_dir>/domain_distance.json` (L1 distances between domain centres in the 2-D embedding and in the
feature space, per variant). Features are downsampled pixels, or a re-ID run's embeddings.

Usage:
  python -m bgshift_tf.visualize \
      --tfrecord_dirs=tfrecords/synmarket,tfrecords/synduke,tfrecords/syncuhk \
      --variants=original,hard_mask,soft_mask,style_transfer \
      --gan_run_dir=runs/demo/sbsgan --out_dir=runs/demo/domain_distance
"""

from absl import app, flags

from bgshift_tf.core import config_flags, errors, flag_checks, precision
from bgshift_tf.data import variants
from bgshift_tf.report import domain_analysis

_TFRECORD_DIRS = flags.DEFINE_list("tfrecord_dirs", None, "TFRecord folders, one per domain (index = position).")
flags.DEFINE_list(
    "variants", [variants.ORIGINAL, variants.HARD_MASK], f"Image variants to compare: any of {list(variants.ALL)}."
)
flags.DEFINE_string("out_dir", None, "Folder for domain_distance.png / .json.")
flags.DEFINE_list("domain_names", None, "Display names per folder (default: folder names).")
flags.DEFINE_enum("split", "train", ["train", "query", "gallery"], "Split to sample images from.")
flags.DEFINE_integer("num_per_domain", 200, "Images sampled per domain (paper: 200 shown).", lower_bound=1)
_IMAGE_SIZE = flags.DEFINE_list("image_size", ["64", "32"], "H,W images are read at (the GAN's size wins).")
_FEATURE_SIZE = flags.DEFINE_list("feature_size", ["32", "16"], "H,W of downsampled-pixel features.")
flags.DEFINE_integer("seed", 0, "Seed of the image sample, PCA and t-SNE.")
flags.DEFINE_float("perplexity", 30.0, "t-SNE perplexity.")
flags.DEFINE_string("gan_run_dir", None, "SBSGAN run (needed for soft_mask / style_transfer).")
flags.DEFINE_string("reid_run_dir", None, "Re-ID run whose embeddings replace pixel features.")
flags.DEFINE_integer("style_target", 1, "Domain index style_transfer maps the others to.", lower_bound=0)
precision.define_flag()

# Flags passed as they are to analyze_tfrecord_dirs, whose keywords have their names.
_PASSED_THROUGH = ("variants", "out_dir", "domain_names", "split", "num_per_domain", "seed", "perplexity",
                   "gan_run_dir", "reid_run_dir", "style_target", "precision")
flags.mark_flags_as_required(["tfrecord_dirs", "out_dir"])
flag_checks.in_range("perplexity", lower=0, lower_open=True)
flag_checks.list_choices("variants", variants.ALL)
flag_checks.input_path("tfrecord_dirs", "gan_run_dir", "reid_run_dir", kind="dir")
flag_checks.output_dir("out_dir")
for _name in ("image_size", "feature_size"):
    flags.register_validator(_name, lambda values: len(values) == 2 and all(v.isdigit() and int(v) > 0 for v in values),
                             "must be H,W: two positive integers, e.g. 64,32")


def _size(flag_name, values):
    try:
        height, width = (int(v) for v in values)
    except ValueError as error:
        raise app.UsageError(f"--{flag_name} must be H,W integers. Received: {','.join(values)}") from error
    return height, width


def main(argv):
    del argv
    summary = domain_analysis.analyze_tfrecord_dirs(
        _TFRECORD_DIRS.value,
        **config_flags.values(_PASSED_THROUGH),
        image_size=_size("image_size", _IMAGE_SIZE.value),
        feature_size=_size("feature_size", _FEATURE_SIZE.value),
    )
    for variant, entry in summary["variants"].items():
        for pair in summary["pairs"]:
            print(f"{variant:>15s}  {pair}: 2-D L1 {entry['l1_2d'][pair]:7.2f}   "
                  f"feature L1/dim {entry['l1_feature'][pair]:.4f}   separation {entry['separation'][pair]:.3f}")
    print(f"wrote {summary['figure']}")


if __name__ == "__main__":
    errors.run(main, "visualize")
