"""Draws the built-in synthetic three-domain re-ID world (Market-1501 layout + body masks).

Usage:
    python -m bgshift_tf.make_synthetic --out_dir=data_synthetic/demo --preset=demo --seed=0
    python -m bgshift_tf.make_synthetic --out_dir=/tmp/world --preset=tiny --num_ids=12 --domains=synmarket,synduke

Writes <out_dir>/<domain>/{bounding_box_train,bounding_box_test,query}, masks/ (noisy parser masks),
masks_exact/, contact_sheet.png and world.json (last). Re-running with the same settings does nothing.
See the bgshift_tf/data/synthetic/ package for the world itself.
"""

from absl import flags

from bgshift_tf.core import errors, flag_checks
from bgshift_tf.data.synthetic import PRESETS, make_world, resolve_config
from bgshift_tf.data.synthetic.world import DOMAINS

_OUT_DIR = flags.DEFINE_string("out_dir", None, "Folder to write the world into.", required=True)
_PRESET = flags.DEFINE_enum("preset", "demo", sorted(PRESETS), "Size preset: tiny (tests) or demo.")
_SEED = flags.DEFINE_integer("seed", 0, "Random seed; the same seed gives byte-identical files.")
_NUM_IDS = flags.DEFINE_integer("num_ids", None, "Identities per domain (train + test); default: the preset's.",
                                 lower_bound=1)
_IMAGES_PER_ID = flags.DEFINE_integer("images_per_id", None, "Mean images per identity; default: the preset's.",
                                       lower_bound=1)
_IMAGE_HEIGHT = flags.DEFINE_integer("image_height", None, "Image height in pixels; default: the preset's.",
                                      lower_bound=1)
_IMAGE_WIDTH = flags.DEFINE_integer("image_width", None, "Image width in pixels; default: the preset's.",
                                     lower_bound=1)
_DOMAINS = flags.DEFINE_list("domains", None, "Subset of synmarket,synduke,syncuhk; default: all three.")
flag_checks.list_choices("domains", [name for name, _ in DOMAINS])
flag_checks.output_dir("out_dir")


def main(argv):
    del argv
    overrides = {
        "num_ids": _NUM_IDS.value,
        "images_per_id": _IMAGES_PER_ID.value,
        "image_height": _IMAGE_HEIGHT.value,
        "image_width": _IMAGE_WIDTH.value,
        "domains": _DOMAINS.value,
    }
    with errors.user_errors(ValueError):  # the settings check: a bad flag value
        resolve_config(_PRESET.value, **overrides)
    with errors.user_errors(FileExistsError):  # --out_dir holds something that is not a world
        make_world(_OUT_DIR.value, preset=_PRESET.value, seed=_SEED.value, verbose=True, **overrides)


if __name__ == "__main__":
    errors.run(main, "make_synthetic")
