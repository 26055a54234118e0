"""SBSGAN recipe ablations: each --trial trained per --ablation_seeds at the gan flagfile's budget on the
synthetic world, its soft-mask images measured on the exact masks (`workflow.gan_ablation`).

Usage (the table in BUILD_NOTES.md "SBSGAN recipe at the demo budget"):
    python -m bgshift_tf.gan_ablation --flagfile=bgshift_tf/configs/demo.flags --name=gan_ablation \
        --trial="paper_recipe:upsample=transposed;g_ema_decay=0;lr_decay_start=1" --trial="demo:" \
        --ablation_seeds=0,1 --out=docs/gan_ablation.json

Takes the main job's flags (world preset, --gan_flagfile, --gan_overrides, --precision); each trial's
"key=value;..." SBSGAN settings go over them. Re-running skips the (trial, seed) pairs --out holds; an --out measured under another budget (flagfile,
overrides, precision, --measure_split, --max_images) is refused. To re-measure trained trials on all query
images: the same --trial and --ablation_seeds with a new --out, --measure_split=query --max_images=0.
"""

from absl import flags

from bgshift_tf.core import errors, flag_checks
from bgshift_tf.data import records
from bgshift_tf.training.interrupts import exit_on_interrupt
from bgshift_tf.workflow import cli, gan_ablation

cli.define_flags()
flags.DEFINE_multi_string("trial", [], "name:key=value;key=value SBSGAN settings of one trial ('name:' = as "
                          "configured).")
flags.DEFINE_list("ablation_seeds", ["0"], "Training seeds of every trial.")
flags.DEFINE_string("out", "runs/gan_ablation.json", "Result JSON (rewritten after every trial and seed).")
flags.DEFINE_integer("max_images", 256, "Images per domain measured (0 = all of --measure_split).", lower_bound=0)
flags.DEFINE_enum("measure_split", "train", list(records.SPLITS),
                  "Split whose images are measured (the demo's quality stage: train of the source, query of the "
                  "targets).")
flags.register_validator("ablation_seeds", lambda seeds: bool(seeds) and all(s.isdigit() for s in seeds),
                         "must be integers >= 0, e.g. 0,1")
flag_checks.output_file("out")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    trials = gan_ablation.parse_trials(FLAGS.trial or ["configured:"])
    with exit_on_interrupt("gan_ablation"):
        gan_ablation.run_ablation(cli.config_from_flags(), trials, [int(s) for s in FLAGS.ablation_seeds],
                                  FLAGS.out, max_images=FLAGS.max_images, split=FLAGS.measure_split)
    print(f"results: {FLAGS.out}")


if __name__ == "__main__":
    errors.run(main, "gan_ablation")
