"""docs/RESULTS.md from experiments.json (`report.results_md`, `python -m bgshift_tf.results`): the numbers
it prints against hand-worked intervals, the verdicts, and the hand-written part kept across rewrites."""

import json
import os
import subprocess
import sys

import pytest

from bgshift_tf.evaluation import claims, stats
from bgshift_tf.report import results_md

SEEDS = (0, 1, 2)


def _cell(values, bootstrap_half=2.0):
    return {"per_seed": {str(s): v for s, v in zip(SEEDS, values)}, **stats.t_interval(values),
            "bootstrap_ci": {str(s): [v - bootstrap_half, v + bootstrap_half] for s, v in zip(SEEDS, values)}}


def _entry(original_r1=(40.0, 44.0, 42.0), hardmask_r1=(45.0, 47.0, 46.0)):
    """A two-row experiments.json on one target; every other metric equals R-1."""
    def row(key, name, values):
        return {"key": key, "name": name, "table": "table2", "paper_key": key, "paper": {"mAP": 17.7, "R-1": 33.5},
                "per_target": {"synduke": {m: _cell(values) for m in ("mAP", "R-1", "R-5", "R-10")}}}

    per_seed = {s: {"rows": {"synduke": {"ide_original": {"R-1": o, "mAP": o},
                                         "ide_hardmask": {"R-1": h, "mAP": h}}}}
                for s, o, h in zip(SEEDS, original_r1, hardmask_r1)}
    wanted = [c for c in claims.CLAIMS if (c.lower, c.higher) == ("ide_original", "ide_hardmask")]
    return {"setting": {"source": "synmarket", "targets": ["synduke"], "data": "synthetic", "preset": "study",
                        "seeds": list(SEEDS), "precision": {"gan": "float32", "reid": "float32"}, "commit": "abc123",
                        "machine": {"platform": "Linux", "cpu": "AMD EPYC", "cpus": 2}, "wall_seconds": 7260.0},
            "rows": [row("ide_original", "Original", original_r1), row("ide_hardmask", "Hard mask", hardmask_r1)],
            "claims": claims.evaluate_claims(per_seed, claims=wanted),
            "timings": {"seed_0/train_gan": 600.0, "seed_1/train_gan": 660.0, "world": 100.0}}


def test_tables_show_mean_t_interval_and_each_seeds_bootstrap_ci():
    text = results_md.render(_entry(), "make study")
    # 40, 44, 42: mean 42, sd 2, t(0.975, 2) = 4.303 -> half-width 4.303 * 2 / sqrt(3) = 4.97.
    (line,) = [l for l in text.splitlines() if l.startswith("| Original |")]
    assert "| 17.7 | 33.5 |" in line and "42.0 ± 5.0 [37.0, 47.0]" in line
    assert "0: 40.0 (38.0–42.0); 1: 44.0 (42.0–46.0); 2: 42.0 (40.0–44.0)" in line
    assert "Commit: `abc123`" in text and "Precision: gan float32, reid float32" in text and "AMD EPYC, 2 CPUs" in text and "2 h 01 min" in text
    # Sampling error: every run's bootstrap half-width is 2.
    assert "half-width of the 6 single runs is 2.0 points on average and 2.0 at most" in text
    # Timings per stage kind over seeds, largest first.
    assert text.index("| train_gan | 21 min 00 s |") < text.index("| world | 1 min 40 s |")


def test_verdicts_follow_the_paired_differences():
    holds = results_md.render(_entry(), "make study")
    # Hard mask beats original on every seed by 5, 3, 4: the CI of the paired difference is above 0.
    assert "Summary: 2 holds, 0 reversed, 0 inconclusive, 0 not run." in holds
    reversed_text = results_md.render(_entry(hardmask_r1=(35.0, 38.0, 36.0)), "make study")
    assert "Summary: 0 holds, 2 reversed" in reversed_text
    mixed = results_md.render(_entry(hardmask_r1=(46.0, 40.0, 42.0)), "make study")
    assert "Summary: 0 holds, 0 reversed, 2 inconclusive" in mixed


def test_rewrite_keeps_the_hand_written_part_and_regenerates_the_tables(tmp_path):
    path = str(tmp_path / "RESULTS.md")
    results_md.write(_entry(), path, "make study")
    with open(path) as f:
        first = f.read()
    assert first.rstrip().endswith(results_md.HAND_WRITTEN_MARKER)
    with open(path, "a") as f:
        f.write("\n## Discussion\n\nThe hard-mask gain is the synthetic parser's doing.\n")
    results_md.write(_entry(original_r1=(30.0, 31.0, 32.0)), path, "make study")
    with open(path) as f:
        second = f.read()
    assert "31.0 ± 2.5 [28.5, 33.5]" in second and "42.0 ± 5.0" not in second
    assert second.count(results_md.HAND_WRITTEN_MARKER) == 1
    assert second.endswith("\n## Discussion\n\nThe hard-mask gain is the synthetic parser's doing.\n")
    assert not [name for name in os.listdir(tmp_path) if name != "RESULTS.md"]  # no temporary left behind


def test_an_entry_without_rows_is_refused_and_the_old_file_kept(tmp_path):
    path = str(tmp_path / "RESULTS.md")
    results_md.write(_entry(), path, "make study")
    with open(path) as f:
        before = f.read()
    with pytest.raises(ValueError, match="non-empty list under 'rows'"):
        results_md.write({"setting": {}, "rows": []}, path, "make study")
    with open(path) as f:
        assert f.read() == before


def test_the_command_names_a_missing_experiments_file(tmp_path):
    missing = str(tmp_path / "nowhere.json")
    done = subprocess.run([sys.executable, "-m", "bgshift_tf.results", f"--experiments={missing}",
                           f"--out={tmp_path / 'R.md'}"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and f"--experiments={missing}: no such file" in done.stderr
    good = tmp_path / "e.json"
    good.write_text(json.dumps(_entry()))
    done = subprocess.run([sys.executable, "-m", "bgshift_tf.results", f"--experiments={good}",
                           f"--out={tmp_path / 'R.md'}"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "42.0 ± 5.0" in (tmp_path / "R.md").read_text()
