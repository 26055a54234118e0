"""docs/RESULTS.md from the reference study's per-seed parts (`workflow.study_merge`, `report.study_md`), or
from one experiments job's experiments.json (`report.results_md`).

Usage:
    python -m bgshift_tf.results                       (every docs/study/seed_*.json -> docs/RESULTS.md)
    python -m bgshift_tf.results --parts=docs/study --study_hash=<hash> --out=docs/RESULTS.md
    python -m bgshift_tf.results --experiments=runs/study/experiments.json --out=docs/RESULTS.md
    python -m bgshift_tf.results --demo_quality=runs/demo/quality.json   (store the demo's soft-mask figures as
                                  docs/study/demo_quality.json, then merge: RESULTS.md compares the study with them)

Parts whose study hash differs from the others' are refused (named, with the flags that differ); the
tables, verdicts and timings are regenerated; text written below the file's hand-written marker is kept.
"""

from absl import flags

from bgshift_tf.core import errors, flag_checks
from bgshift_tf.report import results_md, study_md
from bgshift_tf.workflow import study_merge

_PARTS = flags.DEFINE_string("parts", "docs/study", "Folder of the study's part files seed_<k>.json "
                             "(python -m bgshift_tf.experiments --part_dir).")
_STUDY_HASH = flags.DEFINE_string("study_hash", "", "Merge the parts of this study hash (default: the hash most "
                                  "parts share).")
_EXPERIMENTS = flags.DEFINE_string("experiments", "", "Instead of --parts: one experiments.json written by "
                                   "python -m bgshift_tf.experiments.")
_OUT = flags.DEFINE_string("out", "docs/RESULTS.md", "Markdown file to write (its hand-written part is kept).")
_DEMO_QUALITY = flags.DEFINE_string("demo_quality", "", "A `make demo` run's quality.json: its soft-mask figures are "
                                    "stored beside the parts (demo_quality.json) and RESULTS.md compares the "
                                    "study's SBSGAN with them.")
_COMMAND = flags.DEFINE_string("command", "make study SEEDS=k", "The command that ran the study, quoted in the file.")
flag_checks.output_file("out")


def main(argv):
    del argv
    if not _EXPERIMENTS.value and flag_checks.check_input(_PARTS.value, "dir"):
        raise errors.MissingInputError(f"flag --parts={_PARTS.value}: "
                                       f"{flag_checks.check_input(_PARTS.value, 'dir')}; run the study first")
    with errors.user_errors(ValueError):
        if _EXPERIMENTS.value:
            path = results_md.write(errors.read_json(_EXPERIMENTS.value, f"--experiments={_EXPERIMENTS.value}",
                                                     "run the experiments job first"), _OUT.value, _COMMAND.value)
        else:
            if _DEMO_QUALITY.value:
                print(f"wrote {study_merge.save_demo_reference(_DEMO_QUALITY.value, _PARTS.value)}")
            entry = study_merge.load_agreeing(_PARTS.value, _STUDY_HASH.value)
            for refused in entry["study"]["refused"]:
                print(f"refused {refused['path']}: study hash {refused['study_hash']}, differs in "
                      f"{', '.join(refused['differs']) or '?'}")
            path = results_md.write(entry, _OUT.value, _COMMAND.value, render_fn=study_md.render)
    print(f"wrote {path}")


if __name__ == "__main__":
    errors.run(main, "results")
