"""Speed benchmarks of every area, written as one JSON file.

Usage:
    python -m bgshift_tf.bench --out=runs/bench/bench.json
    python -m bgshift_tf.bench --only=rank,input_pipeline --quick
    python -m bgshift_tf.bench --only=gan,reid --train_steps=1   # fewer timed training steps

Each area's benchmark lives in `bgshift_tf/benchmarks/<area>.py` as `run(quick: bool) -> dict`.
"""

from absl import flags

from bgshift_tf.benchmarks.suite import AREAS, run_suite
from bgshift_tf.core import errors, flag_checks

_OUT = flags.DEFINE_string("out", "runs/bench/bench.json", "Where to write the JSON results.")
_ONLY = flags.DEFINE_list("only", [], "Areas to run (default: all). Known: see benchmarks/suite.py.")
_TRAIN_STEPS = flags.DEFINE_integer(
    "train_steps", 0, "Timed training steps per figure of the gan and reid areas (0: their defaults, 3-5).",
    lower_bound=0)
flag_checks.list_choices("only", AREAS)
flag_checks.output_file("out")
_QUICK = flags.DEFINE_bool("quick", False, "Tiny sizes and one iteration: a smoke run, not a measurement.")


def main(argv):
    del argv
    run_suite(_OUT.value, only=_ONLY.value, quick=_QUICK.value, train_steps=_TRAIN_STEPS.value)


if __name__ == "__main__":
    errors.run(main, "bench")
