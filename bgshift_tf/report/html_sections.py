"""The sections of the HTML report (`report.html`): run facts, domain distance, re-ID tables (one run; the
seeded tables are `html_experiments`), exports, notes."""

from collections.abc import Mapping, Sequence

from bgshift_tf.report import html_blocks as blocks
from bgshift_tf.report import html_experiments, paper_results

PAPER_LABEL = "paper, real data (Market/Duke/CUHK03)"
OURS_LABEL = "ours, synthetic world"


def run_section(data: Mapping, base_dir: str) -> str:
    """Stage timings and flags inside one collapsed <details> (the page opens with the results)."""
    parts, total = [], None
    timings = data.get("timings")
    if timings:
        rows = (
            [{"stage": k, "seconds": v} for k, v in timings.items()] if isinstance(timings, Mapping)
            else list(timings)
        )
        longest = max((float(r.get("seconds") or 0) for r in rows), default=0) or 1.0
        total = sum(float(r.get("seconds") or 0) for r in rows)
        with_status = any(r.get("status") for r in rows)
        body = []
        for r in rows:
            seconds = r.get("seconds")
            width = 0 if seconds is None else 100 * float(seconds) / longest
            status = f'<td class="status">{blocks.esc(r.get("status", ""))}</td>' if with_status else ""
            body.append(
                f"<tr><td>{blocks.esc(r.get('stage', '?'))}</td>"
                f'<td class="num">{blocks.esc(blocks.seconds_text(seconds)) if seconds is not None else "—"}</td>'
                f'<td class="barcell"><span class="bar" style="width:{width:.1f}%"></span></td>{status}</tr>'
            )
        parts.append(
            '<div class="card"><h3>Stage timings</h3><div class="scroll"><table class="timings"><thead><tr>'
            '<th>Stage</th><th class="num">Wall time</th><th></th>'
            + ("<th>Status</th>" if with_status else "")
            + "</tr></thead><tbody>"
            + "".join(body)
            + f'</tbody><tfoot><tr><td>Total</td><td class="num">{blocks.esc(blocks.seconds_text(total))}</td><td></td>'
            + ("<td></td>" if with_status else "")
            + "</tr></tfoot></table></div></div>"
        )
    else:
        parts.append(blocks.missing("timings"))
    flags = data.get("flags")
    if flags:
        rows = "".join(
            f"<tr><td><code>--{blocks.esc(k)}</code></td><td><code>{blocks.esc(_flag_value(v))}</code></td></tr>"
            for k, v in sorted(flags.items())
        )
        parts.append(
            f'<div class="card"><h3>Flags ({len(flags)})</h3>'
            f'<div class="scroll"><table class="flags"><tbody>{rows}</tbody></table></div></div>'
        )
    else:
        parts.append(blocks.missing("flags"))
    summary = (f"{len(flags or {})} flags, stage timings"
               + ("" if total is None else f" (total {blocks.seconds_text(total)})") + ": click to open")
    return (f'<details class="run"><summary>{blocks.esc(summary)}</summary><div class="grid grid-run">'
            + "".join(parts) + "</div></details>")


def _flag_value(value) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def _domain_distance_section(entry: Mapping, base_dir: str) -> str:
    """The distance table first (results before figures), then the t-SNE figures."""
    figures = blocks.figures_grid(entry["figures"], base_dir, wide=True) if entry.get("figures") else ""
    summary = entry.get("summary")
    if not summary or not summary.get("variants"):
        return blocks.missing("domain_distance.summary") + figures
    paper = paper_results.FIG6_DOMAIN_DISTANCE
    rows = []
    for variant, values in summary["variants"].items():
        for pair in summary.get("pairs", list(values.get("l1_2d", {}))):
            rows.append([
                variant, pair, values["l1_feature"].get(pair), values["separation"].get(pair),
                values["l1_2d"].get(pair), paper["values"].get(variant),
            ])
    features = summary.get("features", "not recorded")
    return blocks.table({
        "title": "Distance between domain centres",
        "columns": ["Variant", "Domains", "Feature L1 / dim (ours)", "Separation (ours)",
                    "2-D t-SNE L1 (ours)", "2-D t-SNE L1 (paper, real data)"],
        "rows": rows,
        "caption": (
            f"Ours, synthetic world; features: {features}. Feature-space columns are the trustworthy "
            "ones: the L1 distance between domain centres per feature dimension, and the same distance "
            "divided by the mean L1 spread of each domain around its centre (scale-free; ~0 = same "
            "distribution). The 2-D t-SNE L1 is the paper's measure (Fig. 6); t-SNE keeps neighbourhoods, "
            "not distances, so compare it only between variants of one run. Paper values: "
            f"{paper['source']}, {paper['setting']}, real data. Lower = smaller domain gap."
        ),
    }) + figures


def _percent(value):
    if value is None:
        return None
    if not blocks.is_number(value) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(
            f"re-ID metrics in the report data must be fractions in [0, 1] (as evaluate_rank returns). "
            f"Received: {value!r}"
        )
    return 100.0 * float(value)


def _comparison_table(paper: Mapping, ours: Mapping | None, title: str) -> str:
    """Paper rows (in paper order, ours matched by `paper_key`) then our rows without a paper match."""
    columns = list(paper["columns"])
    ours_rows = list((ours or {}).get("rows", []))
    by_key = {}
    for row in ours_rows:
        if row.get("paper_key"):
            by_key.setdefault(row["paper_key"], row)
    setting = (ours or {}).get("setting", "")
    lines = [{"group": p["group"], "name": p["name"], "paper": p, "ours": by_key.get(p["key"])}
             for p in paper["rows"]]
    known = {p["key"] for p in paper["rows"]}
    lines += [{"group": "Ours only (no paper counterpart)", "name": r.get("name", "?"), "paper": None, "ours": r}
              for r in ours_rows if r.get("paper_key") not in known]
    ours_values = {id(line): {c: _percent(line["ours"].get(c)) for c in columns}
                   for line in lines if line["ours"] is not None}
    ours_cis = {id(line): {c: [_percent(v) for v in ci] for c, ci in (line["ours"].get("bootstrap_ci") or {}).items()}
                for line in lines if line["ours"] is not None}
    best_paper = {c: max(p[c] for p in paper["rows"]) for c in columns}
    best_ours = {c: max((v[c] for v in ours_values.values() if v[c] is not None), default=None) for c in columns}
    ncols = 1 + 2 * len(columns)
    head = (
        f'<thead><tr><th rowspan="2" class="left">Training data</th>'
        f'<th colspan="{len(columns)}" class="paper">{blocks.esc(PAPER_LABEL)}<br><span>{blocks.esc(paper["setting"])}</span></th>'
        f'<th colspan="{len(columns)}" class="ours">{blocks.esc(OURS_LABEL)}<br><span>{blocks.esc(setting or "—")}</span></th>'
        "</tr><tr>"
        + "".join(f'<th class="paper">{blocks.esc(c)}</th>' for c in columns)
        + "".join(f'<th class="ours">{blocks.esc(c)}</th>' for c in columns)
        + "</tr></thead>"
    )
    body, group = [], None
    for line in lines:
        if line["group"] != group:
            group = line["group"]
            body.append(f'<tr class="group"><td colspan="{ncols}">{blocks.esc(group)}</td></tr>')
        cells = [f'<td class="left">{blocks.esc(line["name"])}</td>']
        for c in columns:
            value = None if line["paper"] is None else line["paper"][c]
            cells.append(_metric_cell(value, best_paper[c], "paper"))
        for c in columns:
            value = ours_values[id(line)][c] if id(line) in ours_values else None
            cells.append(_metric_cell(value, best_ours[c], "ours", ours_cis.get(id(line), {}).get(c)))
        body.append("<tr>" + "".join(cells) + "</tr>")
    caption = (
        f"Left: {paper['source']} ({paper['setting']}), published numbers on real data, in %. "
        f"Right: this run on the synthetic world ({setting or 'setting not given'}), in %"
        + (f"; {ours.get('convention')}" if ours and ours.get("convention") else "")
        + ". Absolute values are not comparable across the two; the row ordering is. Bold = best column."
        + (" Brackets: bootstrap 95% CI over query identities of this one run." if any(ours_cis.values()) else "")
    )
    return (
        f'<div class="card wide"><h3>{blocks.esc(title)}</h3><div class="scroll"><table class="compare">'
        f"{head}<tbody>{''.join(body)}</tbody></table></div><p class=\"caption\">{blocks.esc(caption)}</p></div>"
    )


def _metric_cell(value, best, side: str, ci=None) -> str:
    """A percent cell; `ci` = [lo, hi] in percent adds the bootstrap CI under the value."""
    if value is None:
        return f'<td class="num muted {side}">—</td>'
    strong = best is not None and abs(value - best) < 1e-9
    text = f"{value:.1f}"
    interval = "" if ci is None else f'<span class="ci">[{ci[0]:.1f}, {ci[1]:.1f}]</span>'
    return f'<td class="num {side}">{"<strong>" + text + "</strong>" if strong else text}{interval}</td>'


def _one_run_notes(entry: Mapping) -> list[str]:
    """The statement that these numbers are ONE run, and which of its rows have no bootstrap CI."""
    rows = [row for name in ("table2", "table3") for row in (entry.get(name) or {}).get("rows", [])]
    parts = [blocks.note(
        "ONE run: each of our numbers below comes from a single training run (one seed). The bracket under a "
        "value is its bootstrap 95% CI over query identities for this fixed model: the test set's sampling "
        "error only, not the spread between training runs, which can be larger. The experiments job with "
        "several seeds (--seeds) measures that spread."
    )]
    without = [row.get("name", "?") for row in rows if not row.get("bootstrap_ci")]
    if rows and len(without) == len(rows):
        parts.append(blocks.note("No bootstrap CIs: this run's evaluation metrics have no “bootstrap_ci” field "
                                 "(evaluated before it existed); re-run its eval_* stages to get them."))
    elif without:
        parts.append(blocks.note("No bootstrap CI recorded for: " + ", ".join(without) + "."))
    return parts


def _reid_section(entry: Mapping, base_dir: str) -> str:
    parts = _one_run_notes(entry) + [
        _comparison_table(paper_results.TABLE2, entry.get("table2"),
                          "Table 2 analogue: image types for cross-domain re-ID (IDE)"),
        _comparison_table(paper_results.TABLE3, entry.get("table3"), "Table 3 analogue: DA-2S ablation"),
    ]
    if not entry.get("table2"):
        parts.insert(-1, blocks.note("Ours: no “reid.table2” rows in the report data; paper numbers shown alone."))
    if not entry.get("table3"):
        parts.append(blocks.note("Ours: no “reid.table3” rows in the report data; paper numbers shown alone."))
    parts += [blocks.table(t) for t in entry.get("extra_tables", [])]
    return "".join(parts)


def _exports_section(entries: Sequence[Mapping], base_dir: str) -> str:
    cards = []
    for model in entries:
        parts = [f'<div class="card wide"><h3>{blocks.esc(model.get("name", "model"))}</h3>']
        facts = []
        if model.get("path"):
            facts.append(f"<dt>Path</dt><dd><code>{blocks.esc(model['path'])}</code></dd>")
        if model.get("formats"):
            facts.append("<dt>Formats</dt><dd>" + " ".join(
                f'<span class="pill">{blocks.esc(f)}</span>' for f in model["formats"]) + "</dd>")
        if facts:
            parts.append(f'<dl class="facts">{"".join(facts)}</dl>')
        signatures = model.get("signatures") or {}
        if signatures:
            rows = []
            for name, sig in signatures.items():
                for direction in ("inputs", "outputs"):
                    for tensor, spec in (sig.get(direction) or {}).items():
                        rows.append(f"<tr><td><code>{blocks.esc(name)}</code></td><td>{direction[:-1]}</td>"
                                    f"<td><code>{blocks.esc(tensor)}</code></td><td><code>{blocks.esc(spec)}</code></td></tr>")
            parts.append('<h4>Serving signatures</h4><div class="scroll"><table><thead><tr>'
                         '<th>Signature</th><th>Kind</th><th>Name</th>'
                         f'<th>dtype / shape</th></tr></thead><tbody>{"".join(rows)}</tbody></table></div>')
        else:
            parts.append(blocks.note("No signatures recorded."))
        parity = model.get("parity") or {}
        if parity:
            tolerance = model.get("tolerance")
            rows = []
            for fmt, diff in parity.items():
                ok = "" if tolerance is None else ("pass" if float(diff) <= float(tolerance) else "FAIL")
                rows.append(f"<tr><td>{blocks.esc(fmt)}</td>{blocks.cell(diff)}"
                            f"{blocks.cell(tolerance)}<td class=\"status {ok.lower()}\">{blocks.esc(ok)}</td></tr>")
            parts.append('<h4>Numerical parity</h4><div class="scroll"><table class="parity"><thead><tr>'
                         '<th>Runtime</th>'
                         "<th class=num>max |diff| vs Keras</th><th class=num>Tolerance</th><th></th></tr></thead>"
                         f'<tbody>{"".join(rows)}</tbody></table></div>')
        if model.get("figures"):
            parts.append(blocks.figures_grid(model["figures"], base_dir))
        parts.append("</div>")
        cards.append("".join(parts))
    return '<div class="grid grid-wide">' + "".join(cards) + "</div>"


def _notes_section(notes, base_dir: str) -> str:
    if isinstance(notes, str):
        notes = [notes]
    return '<div class="card"><ul class="notes">' + "".join(f"<li>{blocks.esc(n)}</li>" for n in notes) + "</ul></div>"


def render_section(key: str, value, base_dir: str) -> str:
    """HTML body of the section holding `data[key]`."""
    if key == "domain_distance":
        return _domain_distance_section(value, base_dir)
    if key == "suppression_quality":
        return "".join(blocks.table(t) for t in ([value] if isinstance(value, Mapping) else value))
    if key == "experiments":
        return html_experiments.experiments_section(value)
    if key == "reid":
        return _reid_section(value, base_dir)
    if key == "exports":
        return _exports_section(value, base_dir)
    if key == "notes":
        return _notes_section(value, base_dir)
    return blocks.figures_grid(value, base_dir, wide=True)
