"""The main job end to end: synthetic world (or real data) -> TFRecords -> SBSGAN -> generated images ->
IDE / DA-2S re-ID -> evaluation, suppression quality, domain distance -> export -> HTML report.

Usage:
    python -m bgshift_tf.pipeline --flagfile=bgshift_tf/configs/demo.flags          # what `make demo` runs
    python -m bgshift_tf.pipeline --flagfile=bgshift_tf/configs/demo.flags --force_stage=report
    python -m bgshift_tf.pipeline --flagfile=bgshift_tf/configs/tiny.flags --name=smoke
    python -m bgshift_tf.pipeline --flagfile=bgshift_tf/configs/market_duke.flags   # real data (edit paths)

Everything goes to <runs_root>/<name>/ (report.html, stages/, timings.json, ...). Re-running skips the
stages that are complete with the same settings and resumes an interrupted one; see
bgshift_tf/workflow/stages.py, main_job.py (the stages) and run_layout.py (the run folder).
"""

from bgshift_tf.core import errors
from bgshift_tf.training.interrupts import exit_on_interrupt
from bgshift_tf.workflow import cli, main_job

_FORCE = cli.define_flags()


def main(argv):
    del argv
    with exit_on_interrupt("pipeline"):
        result = main_job.run_main_job(cli.config_from_flags(), force=_FORCE.value)
    print(f"report: {result['report']}")


if __name__ == "__main__":
    errors.run(main, "pipeline")
