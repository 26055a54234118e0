"""Writes body masks for a dataset that has none, with a keras-hub semantic segmenter (`pip install .[masks]`).

Usage:
    python -m bgshift_tf.make_masks --dataset=market1501 --data_dir=/data/Market-1501-v15.09.15 \
        --out_dir=/data/masks/market
    # a local preset folder (no network), a label set whose body is several classes, all splits:
    python -m bgshift_tf.make_masks --dataset=dukemtmc --data_dir=/data/DukeMTMC-reID --out_dir=/data/masks/duke \
        --segmenter=/models/my_parser_preset --person_classes=1,2,3,4,5 --splits=train,query,gallery
    # then: python -m bgshift_tf.build_tfrecords --dataset=market1501 ... --mask_dir=/data/masks/market

Writes <out_dir>/<split folder>/<image stem>.png (0/255, each image's size), make_masks.json (settings,
per-split coverage, images whose mask covers less than --min_coverage or more than --max_coverage) and
contact_sheet.png (image | mask). Re-running resumes (masks on disk are kept); --overwrite remakes them.
See bgshift_tf/data/segment.py.
"""

from absl import flags

from bgshift_tf.core import config_flags, errors, flag_checks
from bgshift_tf.data.build import DATASETS
from bgshift_tf.data.records import SPLITS
from bgshift_tf.data.segment import DEFAULT_SEGMENTER, PASCAL_VOC_PERSON, make_masks
from bgshift_tf.report.grids import mask_contact_sheet

flags.DEFINE_enum("dataset", None, list(DATASETS), "Dataset layout to read.")
flags.DEFINE_string("data_dir", None, "Dataset root folder, as for build_tfrecords.")
_OUT_DIR = flags.DEFINE_string("out_dir", None, "Mask folder to write (what build_tfrecords --mask_dir reads).")
flags.DEFINE_string(
    "segmenter", DEFAULT_SEGMENTER, "keras-hub ImageSegmenter preset: built-in name, kaggle:// or hf:// handle, "
    "or a local preset folder."
)
_PERSON_CLASSES = flags.DEFINE_list(
    "person_classes", [str(PASCAL_VOC_PERSON)], "Class ids that count as body (Pascal VOC: 15 = person)."
)
_SPLITS = flags.DEFINE_list("splits", ["train"], "Splits to segment (SBSGAN needs train).")
_IMAGE_SIZE = flags.DEFINE_list("image_size", None, "HEIGHT,WIDTH the segmenter sees (default: the preset's).")
flags.DEFINE_integer("batch_size", 8, "Images per prediction.", lower_bound=1)
flags.DEFINE_float("min_coverage", 0.1, "Masks with a smaller body fraction are listed.",
                   lower_bound=0, upper_bound=1)
flags.DEFINE_float("max_coverage", 0.9, "Masks with a larger body fraction are listed.",
                   lower_bound=0, upper_bound=1)
flags.DEFINE_integer("num_samples", 8, "Images per split on the contact sheet.", lower_bound=0)
flags.DEFINE_bool("skip_bad_images", False, "Skip (and count) images that cannot be decoded "
                  "instead of failing.")
flags.DEFINE_bool("skip_bad_names", False, "Skip (and count) images whose file name does not "
                  "follow the dataset's convention instead of failing.")
flags.DEFINE_bool("overwrite", False, "Remake masks already on disk.")
flags.DEFINE_enum("cuhk03_variant", "detected", ["detected", "labeled"], "CUHK03 boxes.")
flags.DEFINE_integer("cuhk03_split", 0, "CUHK03 classic split, 0..19.", lower_bound=0, upper_bound=19)
flags.DEFINE_integer("seed", 0, "Seed of the contact sheet's choice of images.")
# Flags passed as they are to make_masks, whose keywords have their names.
_PASSED_THROUGH = ("dataset", "data_dir", "out_dir", "segmenter", "batch_size", "min_coverage", "max_coverage",
                   "num_samples", "skip_bad_images", "skip_bad_names", "overwrite", "cuhk03_variant",
                   "cuhk03_split", "seed")
flags.mark_flags_as_required(["dataset", "data_dir", "out_dir"])
flag_checks.list_choices("splits", SPLITS)
flag_checks.input_path("data_dir")
flag_checks.output_dir("out_dir")


def _integers(values):
    return all(value.strip().lstrip("-").isdigit() for value in values or ())


flags.register_validator("person_classes", _integers, "--person_classes must be integers, e.g. 15 or 1,2,3")
flags.register_validator("image_size", _integers, "--image_size must be HEIGHT,WIDTH integers, e.g. 512,512")


def main(argv):
    del argv
    summary = make_masks(
        **config_flags.values(_PASSED_THROUGH),
        person_classes=[int(v) for v in _PERSON_CLASSES.value],
        splits=_SPLITS.value,
        image_size=None if _IMAGE_SIZE.value is None else [int(v) for v in _IMAGE_SIZE.value],
        contact_sheet=mask_contact_sheet,
    )
    for split in _SPLITS.value:
        info = summary["splits"][split]
        print(
            f"{split}: {info['written']} masks written, {info['kept']} kept, {len(info['bad_images'])} bad images "
            f"skipped; mean coverage {info['mean_coverage'] or 0.0:.1%}, below --min_coverage "
            f"{info['low_coverage_fraction']:.1%}, above --max_coverage {info['high_coverage_fraction']:.1%}"
        )
    print(f"wrote {_OUT_DIR.value} (summary make_masks.json, contact sheet {summary['contact_sheet']})")


if __name__ == "__main__":
    errors.run(main, "make_masks")
