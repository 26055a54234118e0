"""Tests for the report's results: the seeded Tables 2/3 and claims (report.html_experiments, report.dotplot),
the single run's one-run statement and bootstrap CIs, and the page order (results first, flags collapsed)."""

import json
import re
import types

import pytest

from bgshift_tf.report import dotplot, html
from bgshift_tf.workflow import report_data
from test_html import sample_report_data

PAPER_T2 = {"original": {"mAP": 17.7, "R-1": 33.5, "R-5": 49.3, "R-10": 55.1},
            "hard_mask_jppnet": {"mAP": 21.5, "R-1": 38.6, "R-5": 54.3, "R-10": 60.0},
            "soft_mask": {"mAP": 22.3, "R-1": 43.3, "R-5": 58.2, "R-10": 64.4}}


def _stats(per_seed, half):
    """One metric's entry: per-seed values, their mean and a CI of the given half-width."""
    mean = sum(per_seed.values()) / len(per_seed)
    return {"per_seed": per_seed, "mean": mean, "std": 1.0, "lo": mean - half, "hi": mean + half,
            "bootstrap_ci": {seed: [v - 5, v + 5] for seed, v in per_seed.items()}}


def _row(key, name, table, paper_key, paper, base, seeds_by_target):
    """A row whose metric m on target t has seed s at base + 3 * s + offset(m, t)."""
    per_target = {}
    for t, (target, seeds) in enumerate(seeds_by_target.items()):
        per_target[target] = {metric: _stats({s: base + 3.0 * s + 2 * m - t for s in seeds}, half=4.0)
                              for m, metric in enumerate(paper)}
    return {"key": key, "name": name, "table": table, "paper_key": paper_key, "paper": paper,
            "per_target": per_target}


def sample_experiments():
    """experiments.json of 3 seeds on two targets; Soft-mask's seed 2 on syncuhk did not run."""
    full = {"synduke": [0, 1, 2], "syncuhk": [0, 1, 2]}
    rows = [
        _row("ide_original", "Original", "table2", "original", PAPER_T2["original"], 30.0, full),
        _row("ide_hardmask", "Hard-mask (parser masks)", "table2", "hard_mask_jppnet",
             PAPER_T2["hard_mask_jppnet"], 34.0, full),
        _row("ide_softmask", "Soft-mask", "table2", "soft_mask", PAPER_T2["soft_mask"], 36.0,
             {"synduke": [0, 1, 2], "syncuhk": [0, 1]}),
        _row("da2s", "Baseline + SE + ISDC (DA-2S)", "table3", "da2s", {"mAP": 30.8, "R-1": 53.5}, 40.0, full),
    ]
    claims = [
        {"claim": "hard_gt_original", "text": "hard-mask images beat the original <images>", "target": "synduke",
         "measure": "R-1", "lower": "ide_original", "higher": "ide_hardmask",
         "per_seed": {0: 2.0, 1: 3.0, 2: 4.0}, "mean": 3.0, "lo": 0.5, "hi": 5.5, "verdict": "holds"},
        {"claim": "soft_gt_hard", "text": "soft mask beats hard mask", "target": "synduke", "measure": "mAP",
         "lower": "ide_hardmask", "higher": "ide_softmask",
         "per_seed": {0: -1.0, 1: -2.0, 2: -3.0}, "mean": -2.0, "lo": -4.5, "hi": -0.5, "verdict": "reversed"},
        {"claim": "soft_gt_hard_cuhk", "text": "soft mask beats hard mask", "target": "syncuhk", "measure": "R-1",
         "lower": "ide_hardmask", "higher": "ide_softmask",
         "per_seed": {0: -1.0, 1: 2.0}, "mean": 0.5, "lo": -18.6, "hi": 19.6, "verdict": "inconclusive"},
        {"claim": "da2s_gt_2soft", "text": "two streams of different inputs beat two soft-mask streams",
         "target": "synduke", "measure": "R-1", "lower": "da2s_2soft", "higher": "da2s",
         "per_seed": {}, "mean": None, "lo": None, "hi": None, "verdict": "not run"},
    ]
    setting = {"source": "synmarket", "targets": ["synduke", "syncuhk"], "data": "synthetic", "preset": "study",
               "seeds": [0, 1, 2], "precision": "float32", "commit": "abc1234", "machine": "2 CPU cores",
               "wall_seconds": 9000.0}
    return {"setting": setting, "rows": rows, "claims": claims}


def _table(page, table, target):
    return re.search(rf'<table class="compare seeded" data-table="{table}" data-target="{target}">(.*?)</table>',
                     page).group(1)


def _row_html(table_html, key):
    return re.search(rf'<tr data-key="{key}">(.*?)</tr>', table_html).group(1)


def _sections(page):
    return re.findall(r'<section id="([^"]+)">', page)


def test_seeded_tables_show_mean_ci_seed_dots_and_the_paper_value():
    page = html.render_report({"run_name": "study", "experiments": sample_experiments()})
    assert _sections(page)[0] == "experiments"
    assert "paper (Market-1501 → DukeMTMC-reID, real data)" in page
    assert "abc1234" in page and "2 h 30 min" in page  # commit and wall time of the setting
    original = _row_html(_table(page, "table2", "synduke"), "ide_original")
    # R-1 (second metric) on synduke: seeds 32, 35, 38 -> "35.0 ± 4.0"; mAP: 30, 33, 36 -> "33.0 ± 4.0".
    assert re.findall(r'<span class="ms">([^<]+)</span>', original) == [
        "33.0 ± 4.0", "35.0 ± 4.0", "37.0 ± 4.0", "39.0 ± 4.0"]
    assert original.count('<circle class="seed"') == 3 * 4  # 3 seeds x 4 metrics
    assert re.search(r'<td class="num">3</td>', original)
    paper_cells = re.findall(r'<td class="num paper">([^<]+)</td>', original)
    assert paper_cells == ["17.7", "33.5", "49.3", "55.1"]
    assert "<title>paper, real data: 33.5%</title>" in original
    assert "<title>seed 1: 35.0% (bootstrap 95% CI 30.0 to 40.0)</title>" in original
    # Dots lie on the column's shared axis: larger values further right.
    first_plot = original.split("</svg>")[0]
    xs = [float(x) for x in re.findall(r'<circle class="seed" cx="([\d.]+)"', first_plot)]
    assert xs == sorted(xs) and xs[0] < xs[-1]
    # Soft-mask has two seeds on syncuhk: two dots per metric and n = 2.
    soft = _row_html(_table(page, "table2", "syncuhk"), "ide_softmask")
    assert soft.count('<circle class="seed"') == 2 * 4 and re.search(r'<td class="num">2</td>', soft)
    # Table 3 has its own columns (mAP, R-1) for each target.
    da2s = _row_html(_table(page, "table3", "syncuhk"), "da2s")
    assert da2s.count('<circle class="seed"') == 3 * 2
    assert re.findall(r'<td class="num paper">([^<]+)</td>', da2s) == ["30.8", "53.5"]


def test_verdict_column_and_claims_table():
    page = html.render_report({"run_name": "study", "experiments": sample_experiments()})
    duke = _table(page, "table2", "synduke")
    hard = _row_html(duke, "ide_hardmask")
    assert '<span class="verdict holds">✓ holds</span> <small>&gt; Original, R-1</small>' in hard
    soft = _row_html(duke, "ide_softmask")
    assert '<span class="verdict reversed">✗ reversed</span>' in soft and "holds" not in soft
    assert '<td class="verdicts muted">—</td>' in _row_html(duke, "ide_original")  # no claim says it beats a row
    assert "inconclusive" in _row_html(_table(page, "table2", "syncuhk"), "ide_softmask")
    claims = re.search(r'<table class="claims">(.*?)</table>', page).group(1)
    holds = _row_html(claims, "hard_gt_original")
    assert "Original &lt; Hard-mask (parser masks)" in holds
    assert "hard-mask images beat the original &lt;images&gt;" in holds
    assert ">+3.0 [0.5, 5.5]</td>" in holds and holds.count('<circle class="seed"') == 3
    assert '<g class="ref zero"><title>no difference: 0.0</title>' in holds
    assert ">-2.0 [-4.5, -0.5]</td>" in _row_html(claims, "soft_gt_hard")
    not_run = _row_html(claims, "da2s_gt_2soft")
    assert '<span class="verdict not-run">– not run</span>' in not_run and "<svg" not in not_run
    assert "da2s_2soft &lt; Baseline + SE + ISDC (DA-2S)" in not_run  # a key without a row is shown as is


def test_bad_experiments_name_the_field_and_value():
    data = sample_experiments()
    data["claims"][0]["verdict"] = "maybe"
    with pytest.raises(ValueError, match=r"'verdict' must be one of .*Received: verdict='maybe'"):
        html.render_report({"run_name": "x", "experiments": data})
    with pytest.raises(ValueError, match=r"experiments.json must be a dict with a list under 'rows'"):
        html.render_report({"run_name": "x", "experiments": {"claims": []}})
    with pytest.raises(ValueError, match=r"low < high.*axis=\(1.0, 1.0\)"):
        dotplot.dot_plot({0: 1.0}, axis=(1.0, 1.0))
    assert dotplot.axis_for([2.0, None, 4.0]) == pytest.approx((1.9, 4.1))
    assert dotplot.axis_for([3.0]) == (2.0, 4.0)


def test_page_opens_with_results_and_flags_are_collapsed_at_the_end(tmp_path):
    data = sample_report_data(tmp_path)
    page = html.render_report(data, base_dir=str(tmp_path))
    order = _sections(page)
    assert order[:3] == ["reid", "suppression-quality", "domain-distance"]  # no experiments: single run first
    assert order[-1] == "run" and order.index("ranked-lists") > order.index("domain-distance")
    assert "experiments" not in order and "Not available" not in page.split('<section id="domains">')[0]
    run = re.search(r'<section id="run">(.*?)</section>', page).group(1)
    assert run.startswith('<h2>Run: flags and stage timings (collapsed)</h2><details class="run"><summary>')
    assert "<details open" not in page
    details = re.search(r"<details class=\"run\">(.*)</details>", run).group(1)
    assert '<table class="flags">' in details and '<table class="timings">' in details
    assert "4 flags, stage timings (total 1 h 14 min)" in details
    # With experiments the seeded results come first, the single run right after them.
    order = _sections(html.render_report({**data, "experiments": sample_experiments()}, base_dir=str(tmp_path)))
    assert order[:2] == ["experiments", "reid"]


def test_single_run_says_it_is_one_run_and_shows_bootstrap_cis(tmp_path):
    data = sample_report_data(tmp_path)
    reid = re.search(r'<section id="reid">(.*?)</section>', html.render_report(data, base_dir=str(tmp_path))).group(1)
    assert "ONE run: each of our numbers below comes from a single training run (one seed)" in reid
    original = re.search(r'<tr><td class="left">Original</td>(.*?)</tr>', reid).group(1)
    assert '>21.2<span class="ci">[17.1, 25.4]</span></td>' in original
    assert '>35.0<span class="ci">[30.1, 39.9]</span></td>' in original
    assert '>52.0</td>' in original  # no CI recorded
    assert "No bootstrap CI recorded for: Hard-mask (exact masks), DA-2S." in reid
    assert "Brackets: bootstrap 95% CI over query identities of this one run." in reid
    # An old run (no "bootstrap_ci" anywhere) renders, says so, and shows no brackets.
    for name in ("table2", "table3"):
        for row in data["reid"][name]["rows"]:
            row.pop("bootstrap_ci", None)
    reid = re.search(r'<section id="reid">(.*?)</section>', html.render_report(data, base_dir=str(tmp_path))).group(1)
    assert "ONE run" in reid and "this run&#x27;s evaluation metrics have no “bootstrap_ci” field" in reid
    assert 'class="ci"' not in reid and "Brackets" not in reid


def test_report_data_reads_experiments_and_bootstrap_cis(tmp_path):
    ctx = types.SimpleNamespace(data_dir=str(tmp_path))
    assert report_data.read_experiments(ctx) is None
    (tmp_path / "experiments.json").write_text(json.dumps(sample_experiments()))
    loaded = report_data.read_experiments(ctx)
    assert loaded["claims"][0]["verdict"] == "holds" and len(loaded["rows"]) == 4
    # JSON turns seed keys into strings; the page still finds each seed's bootstrap CI.
    page = html.render_report({"run_name": "x", "experiments": loaded})
    assert "<title>seed 1: 35.0% (bootstrap 95% CI 30.0 to 40.0)</title>" in page
    (tmp_path / "experiments.json").write_text("{")
    with pytest.raises(ValueError, match=r"experiments.json is not valid JSON"):
        report_data.read_experiments(ctx)
    metrics = {"mAP": 0.2, "rank1": 0.3, "rank5": 0.4, "rank10": 0.5}
    # As evaluation writes it: the intervals beside their settings (which the report leaves out).
    settings = {"confidence": 0.95, "num_samples": 1000, "unit": "query identity", "seed": 0, "num_identities": 40}
    evals = {"ide_original": {"synduke": {**metrics, "bootstrap_ci": {"R-1": [0.25, 0.35], **settings}}},
             "ide_hardmask": {"synduke": metrics}}
    rows = report_data._paper_table_rows(evals, ["ide_original", "ide_hardmask"], "table2", "synduke", ("R-1",))
    assert [row["bootstrap_ci"] for row in rows] == [{"R-1": [0.25, 0.35]}, None]
    # The table of every model on every test domain gives each run's CIs in percent, or says they are missing.
    both = {"R-1": [0.301, 0.399], "mAP": [0.171, 0.2545]}
    assert report_data._bootstrap_text({**metrics, "bootstrap_ci": {**both, **settings}}) == "R-1 [30.1, 39.9]; mAP [17.1, 25.4]"
    assert report_data._bootstrap_text(metrics) == "not recorded"


def test_only_renders_the_named_sections_and_leaves_the_rest_out():
    page = html.render_report({"run_name": "study", "experiments": sample_experiments(), "flags": {"a": 1}},
                              only=("experiments",))
    assert _sections(page) == ["experiments"]
    assert 'href="#reid"' not in page and 'href="#run"' not in page
