"""The paper's comparisons on the source -> each target pair: Table 2 (IDE on original / hard-mask /
style-transferred / soft-mask / soft-mask without L_sc images) and Table 3 (DA-2S ablation), as markdown
and JSON tables next to the paper's numbers, plus the run's report with every row; over `--seeds`, every
trained model once per seed on one world, summarised in experiments.json.

Usage:
    python -m bgshift_tf.experiments --flagfile=bgshift_tf/configs/experiments_demo.flags
    python -m bgshift_tf.experiments --flagfile=bgshift_tf/configs/experiments_tiny.flags --runs_root=/tmp/runs
    python -m bgshift_tf.experiments --flagfile=bgshift_tf/configs/study.flags --seeds=0   (make study SEEDS=0)

It takes the main job's flags (the experiments flagfile includes the main job's) and runs in the same
run folder, so stages the main job already completed with the same settings are skipped (without
--seeds; with them, world and TFRecords are still shared). Writes <runs_root>/<name>/experiments.json,
<runs_root>/<name>[/seed_<k>]/experiments/{table2_<target>.md,table3_<target>.md,tables.json} (every
target) and report.html (first seed); with --seeds also <runs_root>/<name>/experiments.html (the results over
seeds). With --part_dir (configs/study.flags: docs/study) each seed's study part <part_dir>/seed_<k>.json
(`workflow.study_part`); docs/RESULTS.md merges them: python -m bgshift_tf.results.
"""

from bgshift_tf.core import errors
from bgshift_tf.training.interrupts import exit_on_interrupt
from bgshift_tf.workflow import cli, study_part

_FORCE = cli.define_flags()


def main(argv):
    del argv
    with exit_on_interrupt("experiments"):
        result = study_part.run_study_part(cli.config_from_flags(), force=_FORCE.value)
    for path in (p for per_target in result["markdown"].values() for p in per_target.values()):
        with open(path) as f:
            print(f.read())
    over_seeds = f"; all seeds: {result['experiments_json']}" + (f", {result['experiments_page']}"
                                                                 if result["experiments_page"] else "")
    print(f"tables: {result['markdown']}; report: {result['report']}{over_seeds}")
    for path in result["parts"]:
        print(f"study part: {path}")


if __name__ == "__main__":
    errors.run(main, "experiments")
