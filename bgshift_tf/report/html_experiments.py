"""The report's section on an experiments job with seeds (`runs/<name>/experiments.json`): Tables 2 and 3
per target as mean ± 95% CI half-width over seeds with a dot plot per row, the paper's real-data numbers
beside them, a verdict column, and the table of the paper's claims.

The entry is experiments.json as written by the experiments job (numbers in percent):

    {"setting": {"source", "targets", "data", "preset", "seeds", "precision", "commit", "machine",
                 "wall_seconds"},
     "rows": [{"key", "name", "table": "table2" | "table3", "paper_key", "paper": {metric: value},
               "per_target": {target: {metric: {"per_seed": {seed: value}, "mean", "std", "lo", "hi",
                                                "bootstrap_ci": {seed: [lo, hi]}}}}}],
     "claims": [{"claim" (key), "text", "target", "measure", "lower", "higher", "per_seed": {seed: difference},
                 "mean", "lo", "hi", "verdict": "holds" | "reversed" | "inconclusive" | "not run"}]}

A claim says row `lower` < row `higher` on `metric`; its per-seed values are the paired differences
(higher - lower) and `lo`, `hi` their 95% CI.
"""

from collections.abc import Mapping

from bgshift_tf.report import dotplot, paper_results
from bgshift_tf.report.html_blocks import esc, note, seconds_text

TABLES = (("table2", paper_results.TABLE2, "Table 2 analogue: image types for cross-domain re-ID (IDE)"),
          ("table3", paper_results.TABLE3, "Table 3 analogue: DA-2S ablation"))
# Verdict -> (symbol, CSS class); the verdict's word is always printed too, for colour-blind readers.
VERDICTS = {"holds": ("✓", "holds"), "reversed": ("✗", "reversed"), "inconclusive": ("?", "inconclusive"),
            "not run": ("–", "not-run")}


def paper_label(paper: Mapping) -> str:
    return f"paper ({paper['setting']}, real data)"


def verdict_badge(verdict) -> str:
    if verdict not in VERDICTS:
        raise ValueError(f"experiments.json: a claim's 'verdict' must be one of {sorted(VERDICTS)}. "
                         f"Received: verdict={verdict!r}")
    symbol, css = VERDICTS[verdict]
    return f'<span class="verdict {css}">{symbol} {esc(verdict)}</span>'


def _number(value) -> str:
    return "—" if value is None else f"{float(value):.1f}"


def _mean_ci_text(stats: Mapping) -> str:
    """"45.0 ± 3.1" (half-width of the 95% CI), or the mean alone when there is no CI (one seed)."""
    if stats.get("mean") is None:
        return "—"
    if stats.get("lo") is None or stats.get("hi") is None:
        return f"{stats['mean']:.1f} (no CI)"
    return f"{stats['mean']:.1f} ± {(stats['hi'] - stats['lo']) / 2:.1f}"


def _seed_points(stats: Mapping) -> dict:
    """{seed: (value, tooltip suffix with the seed's bootstrap CI)} of one row, target and metric."""
    bootstrap = stats.get("bootstrap_ci") or {}
    points = {}
    for seed, value in (stats.get("per_seed") or {}).items():
        ci = bootstrap.get(seed) or bootstrap.get(str(seed))
        points[seed] = (value, f" (bootstrap 95% CI {ci[0]:.1f} to {ci[1]:.1f})" if ci else "")
    return points


def _row_verdicts(row_key, target, claims, names) -> str:
    """Verdicts of the claims saying this row beats another on this target."""
    mine = [c for c in claims if c.get("higher") == row_key and c.get("target") == target]
    if not mine:
        return '<td class="verdicts muted">—</td>'
    items = "".join(f"<li>{verdict_badge(c['verdict'])} <small>&gt; {esc(names.get(c['lower'], c['lower']))}, "
                    f"{esc(c['measure'])}</small></li>" for c in mine)
    return f'<td class="verdicts"><ul>{items}</ul></td>'


def _seeded_table(table_name, paper, title, rows, target, source, claims, names) -> str:
    columns = list(paper["columns"])
    cells_of = {id(row): (row.get("per_target") or {}).get(target) or {} for row in rows}
    axes = {c: dotplot.axis_for([v for row in rows for v in (cells_of[id(row)].get(c) or {}).get("per_seed", {}).values()]
                                + [(row.get("paper") or {}).get(c) for row in rows])
            for c in columns}
    head = (
        '<thead><tr><th rowspan="2" class="left">Training data</th>'
        f'<th colspan="{len(columns)}" class="paper">{esc(paper_label(paper))}</th>'
        f'<th colspan="{len(columns)}" class="ours">ours, synthetic world: {esc(source)} → {esc(target)}<br>'
        "<span>mean ± 95% CI half-width; dots = seeds</span></th>"
        '<th rowspan="2" class="num">n seeds</th><th rowspan="2" class="left">Verdict</th></tr><tr>'
        + "".join(f'<th class="paper">{esc(c)}</th>' for c in columns)
        + "".join(f'<th class="ours">{esc(c)}</th>' for c in columns)
        + "</tr></thead>"
    )
    body = []
    for row in rows:
        cells, paper_values = cells_of[id(row)], row.get("paper") or {}
        line = [f'<td class="left">{esc(row.get("name", row.get("key", "?")))}</td>']
        line += [f'<td class="num paper">{_number(paper_values.get(c))}</td>' for c in columns]
        seeds = 0
        for c in columns:
            stats = cells.get(c)
            if not stats:
                line.append('<td class="num muted ours">—</td>')
                continue
            seeds = max(seeds, len(stats.get("per_seed") or {}))
            plot = dotplot.dot_plot(_seed_points(stats), axis=axes[c], interval=(stats.get("lo"), stats.get("hi")),
                                    mean=stats.get("mean"), reference=paper_values.get(c))
            line.append(f'<td class="num ours"><span class="ms">{esc(_mean_ci_text(stats))}</span><br>{plot}</td>')
        line.append(f'<td class="num">{seeds}</td>')
        line.append(_row_verdicts(row.get("key"), target, claims, names))
        body.append(f'<tr data-key="{esc(row.get("key", ""))}">' + "".join(line) + "</tr>")
    caption = (
        f"Left: {paper['source']}, published on real data ({paper['setting']}), in %. Right: ours on the "
        f"synthetic world, {source} → {target}, in %: mean over seeds ± half-width of its 95% CI (t over "
        "seeds). In each plot: dots = seeds (hover for the value and its bootstrap CI), blue bar = 95% CI, "
        "dark tick = mean, orange diamond = the paper's value, all on one axis per column. Absolute values "
        "are not comparable across the two sides; the ordering of the rows is. Verdict: the claims "
        "(table below) that this row beats another."
    )
    return (f'<div class="card wide"><h3>{esc(title)}, target {esc(target)}</h3><div class="scroll">'
            f'<table class="compare seeded" data-table="{table_name}" data-target="{esc(target)}">{head}<tbody>'
            f'{"".join(body)}</tbody></table></div><p class="caption">{esc(caption)}</p></div>')


def _claims_table(claims, names) -> str:
    if not claims:
        return note("experiments.json has no “claims”: no verdicts to show.")
    body = []
    for claim in claims:
        per_seed = claim.get("per_seed") or {}
        interval = (claim.get("lo"), claim.get("hi"))
        if per_seed:
            axis = dotplot.axis_for(list(per_seed.values()) + list(interval) + [0.0])
            plot = dotplot.dot_plot(per_seed, axis=axis, interval=interval, mean=claim.get("mean"), reference=0.0,
                                    reference_kind="zero", unit="")
        else:
            plot = "—"
        difference = ("—" if claim.get("mean") is None
                      else f"{claim['mean']:+.1f} [{_number(interval[0])}, {_number(interval[1])}]")
        lower, higher = claim.get("lower", "?"), claim.get("higher", "?")
        body.append(
            f'<tr data-key="{esc(claim.get("claim", ""))}">'
            f"<td>{esc(names.get(lower, lower))} &lt; {esc(names.get(higher, higher))}</td>"
            f"<td>{esc(claim.get('text', ''))}</td><td>{esc(claim.get('target', ''))}</td>"
            f"<td>{esc(claim.get('measure', ''))}</td><td>{plot}</td>"
            f'<td class="num">{esc(difference)}</td><td>{verdict_badge(claim.get("verdict"))}</td></tr>'
        )
    caption = ("Each claim is a paired comparison over seeds: per seed, the difference higher − lower on the "
               "same target and metric (dots; grey line = 0). Verdict: holds when the 95% CI of the mean "
               "difference is above 0, reversed when below 0, inconclusive when it contains 0, not run when "
               "a row is missing.")
    return ('<div class="card wide"><h3>The paper\'s claims</h3><div class="scroll"><table class="claims">'
            "<thead><tr><th>Claim</th><th>Paper's words</th><th>Target</th><th>Metric</th><th>Seeds</th>"
            '<th class="num">Mean difference [95% CI]</th><th>Verdict</th></tr></thead><tbody>'
            + "".join(body) + f'</tbody></table></div><p class="caption">{esc(caption)}</p></div>')


def _setting_facts(setting: Mapping) -> str:
    seeds = setting.get("seeds") or []
    facts = [
        ("Source → targets", f"{setting.get('source', '?')} → {', '.join(setting.get('targets') or []) or '?'}"),
        ("Data", f"{setting.get('data', '?')}" + (f" ({setting['preset']} preset)" if setting.get("preset") else "")),
        ("Seeds", f"{len(seeds)}: {', '.join(str(s) for s in seeds)}"),
        ("Precision", setting.get("precision", "not recorded")),
        ("Commit", setting.get("commit", "not recorded")),
        ("Machine", setting.get("machine", "not recorded")),
        ("Wall time", seconds_text(setting["wall_seconds"]) if setting.get("wall_seconds") is not None
         else "not recorded"),
    ]
    return ('<div class="card"><dl class="facts">'
            + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts) + "</dl></div>")


def experiments_section(entry: Mapping) -> str:
    """HTML body of the `experiments` section (module docstring for `entry`)."""
    if not isinstance(entry, Mapping) or not isinstance(entry.get("rows"), list):
        raise ValueError("experiments.json must be a dict with a list under 'rows'. Received: "
                         f"{sorted(entry) if isinstance(entry, Mapping) else type(entry).__name__}")
    setting, rows, claims = entry.get("setting") or {}, entry["rows"], entry.get("claims") or []
    names = {row.get("key"): row.get("name", row.get("key")) for row in rows}
    targets = list(setting.get("targets") or dict.fromkeys(t for row in rows for t in row.get("per_target") or {}))
    parts = [_setting_facts(setting)]
    for table_name, paper, title in TABLES:
        table_rows = [row for row in rows if row.get("table") == table_name]
        if not table_rows:
            parts.append(note(f"experiments.json has no rows of {table_name}."))
            continue
        parts += [_seeded_table(table_name, paper, title, table_rows, target, setting.get("source", "?"), claims,
                                names) for target in targets]
    parts.append(_claims_table(claims, names))
    return "".join(parts)
