"""docs/RESULTS.md from an experiments job's `experiments.json` (`workflow.experiments`): the setting
(command, commit, machine, seeds, wall time), the verdict of every claim, Tables 2 and 3 per target as
mean ± 95% CI over seeds with every seed's value and its bootstrap CI, the metric's own sampling error,
the domain distances and the suppression quality.

`render(entry, command)` returns the generated markdown; `write(entry, path, command)` writes it
atomically and keeps whatever a person wrote below `HAND_WRITTEN_MARKER` in the file it replaces (the
discussion of the numbers), so the tables can be regenerated without losing the prose.
"""

import os
from collections.abc import Mapping

from bgshift_tf.core import atomic_io
from bgshift_tf.evaluation import claims as claims_lib
from bgshift_tf.report.html_blocks import seconds_text
from bgshift_tf.report.html_experiments import TABLES

HAND_WRITTEN_MARKER = "<!-- Everything above is generated (python -m bgshift_tf.results); below is written by hand. -->"
VERDICT_ORDER = ("holds", "reversed", "inconclusive", claims_lib.NOT_RUN)


def _fixed(value, digits=1):
    return "–" if value is None else f"{float(value):.{digits}f}"


def mean_ci(stats: Mapping, digits=1) -> str:
    """"45.0 ± 3.1 [41.9, 48.1]" (mean, half-width and bounds of the t interval over seeds); with a
    "seed_query" interval (`stats.seed_query_interval`, the study's parts) that one, followed by its
    terms: "45.0 ± 3.1 [41.9, 48.1] (seeds ± 2.0, queries ± 2.4)"."""
    if not stats or stats.get("mean") is None:
        return "–"
    combined = stats.get("seed_query")
    if combined and combined.get("lo") is not None:
        return (f"{_fixed(combined['mean'], digits)} ± {_fixed(combined['half_width'], digits)} "
                f"[{_fixed(combined['lo'], digits)}, {_fixed(combined['hi'], digits)}] (seeds ± "
                f"{_fixed(combined['seed_half_width'], digits)}, queries ± {_fixed(combined['query_half_width'], digits)})")
    if stats.get("lo") is None:
        return f"{_fixed(stats['mean'], digits)} (one seed)"
    half = (stats["hi"] - stats["lo"]) / 2
    return (f"{_fixed(stats['mean'], digits)} ± {_fixed(half, digits)} "
            f"[{_fixed(stats['lo'], digits)}, {_fixed(stats['hi'], digits)}]")


def seed_values(stats: Mapping, digits=1) -> str:
    """Every seed's value with its bootstrap 95% CI over query identities: "0: 44.1 (41.0–47.2); 1: ..."."""
    bootstrap = stats.get("bootstrap_ci") or {}
    parts = []
    for seed, value in (stats.get("per_seed") or {}).items():
        ci = bootstrap.get(seed) or bootstrap.get(str(seed))
        parts.append(f"{seed}: {_fixed(value, digits)}" + (f" ({_fixed(ci[0], digits)}–{_fixed(ci[1], digits)})"
                                                            if ci else ""))
    return "; ".join(parts) or "–"


def _precision(value) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{part} {policy}" for part, policy in value.items())
    return str(value or "not recorded")


def setting_lines(entry: Mapping, command: str) -> list:
    setting = entry.get("setting") or {}
    machine = setting.get("machine") or {}
    seeds = setting.get("seeds") or []
    wall = setting.get("wall_seconds")
    return [
        "## Setting", "",
        f"- Command: `{command}`",
        f"- Commit: `{setting.get('commit', 'not recorded')}`",
        f"- Machine: {machine.get('cpu', 'CPU not recorded')}, {machine.get('cpus', '?')} CPUs, "
        f"{machine.get('platform', '?')}",
        f"- Data: {setting.get('data', '?')}" + (f" (`{setting['preset']}` preset)" if setting.get("preset") else ""),
        f"- Source → targets: {setting.get('source', '?')} → {', '.join(setting.get('targets') or [])}",
        f"- Seeds: {len(seeds)} ({', '.join(str(s) for s in seeds)}); every SBSGAN and re-ID model trained once "
        "per seed on one fixed world",
        f"- Precision: {_precision(setting.get('precision'))}",
        f"- Wall time: {seconds_text(wall) if wall is not None else 'not recorded'} (sum of every stage's "
        "recorded seconds)",
        "",
    ]


def verdict_counts(claim_results) -> str:
    counts = {verdict: 0 for verdict in VERDICT_ORDER}
    for result in claim_results:
        counts[result["verdict"]] = counts.get(result["verdict"], 0) + 1
    return ", ".join(f"{count} {verdict}" for verdict, count in counts.items())


def _claims(claim_results) -> list:
    return [
        "## Verdicts of the paper's claims", "",
        "Each claim is a paired comparison over seeds (same seed, same target): the difference is signed so "
        "that > 0 is the paper's direction; holds when its 95% t interval is above 0, reversed when below 0, "
        "inconclusive otherwise, not run when a side was not measured.", "",
        f"Summary: {verdict_counts(claim_results)}.", "",
        claims_lib.verdict_table(claim_results).rstrip("\n"), "",
    ]


def table_lines(rows, paper, title, target, source) -> list:
    columns = list(paper["columns"])
    lines = [f"### {title}: {source} → {target}", "",
             "| Row | " + " | ".join(f"paper {c}" for c in columns) + " | "
             + " | ".join(f"ours {c}, mean ± CI [95% CI]" for c in columns) + " | ours R-1 per seed (bootstrap CI) |",
             "|---" * (1 + 2 * len(columns) + 1) + "|"]
    for row in rows:
        cells = (row.get("per_target") or {}).get(target) or {}
        values = row.get("paper") or {}
        lines.append(f"| {row['name']} | " + " | ".join(_fixed(values.get(c)) for c in columns) + " | "
                     + " | ".join(mean_ci(cells.get(c)) for c in columns) + f" | {seed_values(cells.get('R-1') or {})} |")
    return lines + [""]


def sampling_error(rows, targets) -> dict:
    """{"max", "mean", "n"} of the rank-1 bootstrap 95% CI half-widths of every single run (row, target, seed)."""
    widths = []
    for row in rows:
        for target in targets:
            for ci in (((row.get("per_target") or {}).get(target) or {}).get("R-1") or {}).get("bootstrap_ci", {}).values():
                if ci:
                    widths.append((ci[1] - ci[0]) / 2)
    if not widths:
        return {"max": None, "mean": None, "n": 0}
    return {"max": max(widths), "mean": sum(widths) / len(widths), "n": len(widths)}


def nested_lines(section: Mapping, title: str, intro: str, digits=2) -> list:
    aggregate = (section or {}).get("aggregate") or {}
    if not aggregate:
        return [f"## {title}", "", "Not measured in this run.", ""]
    lines = [f"## {title}", "", intro, "", "| Domain | Image type | Measure | Mean ± CI [95% CI] | Per seed |",
             "|---|---|---|---|---|"]
    for outer, inner in aggregate.items():
        for variant, value in inner.items():
            measures = value if "per_seed" not in value else {"": value}
            for name, stats in measures.items():
                per_seed = "; ".join(f"{s}: {_fixed(v, digits)}" for s, v in (stats.get("per_seed") or {}).items())
                lines.append(f"| {outer} | {variant} | {name or '–'} | {mean_ci(stats, digits)} | {per_seed} |")
    return lines + [""]


def timing_lines(timings: Mapping) -> list:
    """Seconds per stage kind (the stage name without its seed folder and target), largest first."""
    kinds = {}
    for name, seconds in (timings or {}).items():
        kind = name.split("/", 1)[-1]
        kinds[kind] = kinds.get(kind, 0.0) + float(seconds or 0.0)
    lines = ["## Where the time went", "", "| Stage (all seeds) | Time |", "|---|---|"]
    for kind, seconds in sorted(kinds.items(), key=lambda item: -item[1]):
        lines.append(f"| {kind} | {seconds_text(seconds)} |")
    return lines + [""]


def render(entry: Mapping, command: str) -> str:
    """The generated part of RESULTS.md for experiments.json `entry`; ValueError when it has no rows."""
    if not isinstance(entry, Mapping) or not isinstance(entry.get("rows"), list) or not entry["rows"]:
        raise ValueError("experiments.json must be a dict with a non-empty list under 'rows'. Received keys: "
                         f"{sorted(entry) if isinstance(entry, Mapping) else type(entry).__name__}")
    setting = entry.get("setting") or {}
    targets = list(setting.get("targets") or [])
    rows = entry["rows"]
    lines = [f"# Reference study: {setting.get('source', '?')} → {', '.join(targets)}, "
             f"{len(setting.get('seeds') or [])} seeds", "",
             "Numbers from a run of committed code on the built-in synthetic world (not real data). The paper's "
             "columns are its published real-data numbers (Market-1501 → DukeMTMC-reID): their absolute values are "
             "not comparable with ours, the ordering of the rows is what the claims test. All metrics in %; "
             "\"mean ± CI\" is the mean over seeds and the half-width of its 95% t interval.", ""]
    lines += setting_lines(entry, command)
    lines += _claims(entry.get("claims") or [])
    for table_name, paper, title in TABLES:
        table_rows = [row for row in rows if row.get("table") == table_name]
        if table_rows:
            for target in targets:
                lines += table_lines(table_rows, paper, title, target, setting.get("source", "?"))
    error = sampling_error(rows, targets)
    lines += ["## The metric's own sampling error", "",
              f"Bootstrap over query identities (one trained model, its test set resampled): the rank-1 95% CI "
              f"half-width of the {error['n']} single runs is {_fixed(error['mean'])} points on average and "
              f"{_fixed(error['max'])} at most.", ""]
    lines += nested_lines(entry.get("domain_distance"), "Domain distance (Fig. 6 analogue)",
                     "Separation of the source and target features per image type (smaller is closer).")
    lines += nested_lines(entry.get("quality"), "Suppression quality against the exact masks",
                     "`generation.quality` metrics per domain and image type (missed_*: the body the parser "
                     "missed; higher PSNR keeps more of it).")
    lines += timing_lines(entry.get("timings"))
    return "\n".join(lines).rstrip("\n") + "\n"


def write(entry: Mapping, path: str, command: str, render_fn=None) -> str:
    """Writes `render_fn(entry, command)` (default `render`) to `path` atomically, followed by the
    hand-written part of the file it replaces (from `HAND_WRITTEN_MARKER` on; the marker alone for a new
    file). Returns the path."""
    render_fn = render_fn or render
    hand = ""
    if os.path.isfile(path):
        with open(path) as f:
            text = f.read()
        if HAND_WRITTEN_MARKER in text:
            hand = text[text.index(HAND_WRITTEN_MARKER) + len(HAND_WRITTEN_MARKER):]
    return atomic_io.write_text(path, render_fn(entry, command) + "\n" + HAND_WRITTEN_MARKER + (hand or "\n"))
