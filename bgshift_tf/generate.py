"""Translates a dataset's TFRecords with a trained SBSGAN generator: soft-mask, style-transferred and
hard-mask images, written as TFRecords with the same metadata (and optionally as JPEG folders).

Usage:
    python -m bgshift_tf.generate --run_dir=runs/gan_demo --in_dir=tfrecords/synmarket \
        --out_root=tfrecords/generated --target_domain=synduke
    # only soft-mask images, plus JPEG folders in the Market-1501 layout:
    python -m bgshift_tf.generate --run_dir=runs/sbsgan_paper --in_dir=tfrecords/market1501 \
        --out_root=tfrecords/generated --variants=soft_mask --jpeg_dirs

Writes <out_root>/<dataset>_soft_mask/, <out_root>/<dataset>_style_transfer_to_<target_domain>/ and
<out_root>/<dataset>_hard_mask/ (`data.variants.folder_name`); re-running skips splits that are already
complete.
"""

from absl import flags

from bgshift_tf.core import errors, flag_checks, precision
from bgshift_tf.data import variants
from bgshift_tf.generation import translate
from bgshift_tf.training import interrupts

_RUN_DIR = flags.DEFINE_string("run_dir", None, "SBSGAN run directory (config.json + checkpoints/).", required=True)
_IN_DIR = flags.DEFINE_string("in_dir", None, "Input TFRecord folder (manifest.json + shards).", required=True)
_OUT_ROOT = flags.DEFINE_string("out_root", "tfrecords/generated", "Parent folder of the output folders.")
_VARIANTS = flags.DEFINE_list("variants", list(variants.GENERATED),
                              f"Image variants to write, among {list(variants.GENERATED)}.")
_TARGET = flags.DEFINE_string("target_domain", None, "Style-transfer target: a domain name of the run "
                              "(config.json `domains`) or its index; needed for the style_transfer variant.")
_SPLITS = flags.DEFINE_list("splits", None, "Splits to translate (default: all in the input manifest).")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Images per generator call.", lower_bound=1)
_JPEG = flags.DEFINE_bool("jpeg_dirs", False, "Also write JPEG folders in the Market-1501 layout.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Redo splits whose output is already complete.")
_PRECISION = precision.define_flag()
flag_checks.list_choices("variants", variants.GENERATED)
flag_checks.input_path("run_dir", "in_dir", kind="dir")
flag_checks.output_dir("out_root")


@interrupts.stops_cleanly("generate")
def main(argv):
    del argv
    result = translate.translate_dataset(
        _RUN_DIR.value, _IN_DIR.value, _OUT_ROOT.value, variants=_VARIANTS.value, target_domain=_TARGET.value,
        splits=_SPLITS.value, batch_size=_BATCH.value, jpeg_dirs=_JPEG.value, overwrite=_OVERWRITE.value,
        precision=_PRECISION.value)
    for variant, folder in result["outputs"].items():
        print(f"{variant}: {folder} written {result['written'][variant]} skipped {result['skipped'][variant]}")


if __name__ == "__main__":
    errors.run(main, "generate")
