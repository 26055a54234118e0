"""docs/RESULTS.md from an experiments job's experiments.json (`report.results_md`).

Usage:
    python -m bgshift_tf.results --experiments=runs/study/experiments.json --out=docs/RESULTS.md
    (`make study` runs it after the study)

The tables, verdicts and timings are regenerated; text written below the file's hand-written marker is kept.
"""

import json

from absl import flags

from bgshift_tf import errors
from bgshift_tf.report import results_md

_EXPERIMENTS = flags.DEFINE_string("experiments", "runs/study/experiments.json",
                                   "experiments.json written by python -m bgshift_tf.experiments.")
_OUT = flags.DEFINE_string("out", "docs/RESULTS.md", "Markdown file to write (its hand-written part is kept).")
_COMMAND = flags.DEFINE_string("command", "make study", "The command that ran the study, quoted in the file.")


def main(argv):
    del argv
    try:
        with open(_EXPERIMENTS.value) as f:
            entry = json.load(f)
    except FileNotFoundError:
        raise errors.MissingInputError(f"--experiments={_EXPERIMENTS.value}: no such file; run the experiments job "
                                "first (make study)") from None
    except json.JSONDecodeError as error:
        raise errors.DataError(f"--experiments={_EXPERIMENTS.value} is not valid JSON ({error})") from None
    with errors.user_errors(ValueError):
        path = results_md.write(entry, _OUT.value, _COMMAND.value)
    print(f"wrote {path}")


if __name__ == "__main__":
    errors.run(main, "results")
