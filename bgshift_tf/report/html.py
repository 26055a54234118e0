"""Self-contained HTML report of a run (`runs/<name>/report.html`).

The page opens offline: images are embedded as base64 data URIs, CSS is inline, there are no scripts,
fonts or external URLs. All text is escaped. A section whose data is missing is replaced by a short note.

Report data: a plain, JSON-able dict (images may also be numpy arrays). Every key but `run_name` is
optional.

    {
      "run_name": "demo",                         # header and <title>
      "created": "2026-11-24 10:40 UTC",          # default: now, UTC
      "summary": "free text shown under the header",
      "flags": {"flag": value, ...},              # the run's flags / config
      "timings": {"stage": seconds, ...},         # or [{"stage", "seconds", "status"}, ...]
      "contact_sheets": [FIGURE, ...],            # input domains
      "suppression_grids": [FIGURE, ...],         # paper Fig. 1/4/5 analogues (grids.variant_grid)
      "loss_curves": [FIGURE, ...],               # GAN losses (figures.plot_loss_curves)
      "domain_distance": {                        # paper Fig. 6 analogue
          "figures": [FIGURE, ...],               # tsne.plot_domain_distance
          "summary": {...},                       # tsne.to_json(result) / domain_distance.json
      },
      "suppression_quality": TABLE,               # SBSGAN suppression-quality numbers
      "reid": {
          "table2": {"setting": "synmarket → synduke",
                     "rows": [{"name": "Soft-mask", "paper_key": "soft_mask",
                               "mAP": 0.31, "R-1": 0.52, "R-5": 0.7, "R-10": 0.8}, ...]},
          "table3": {"setting": ..., "rows": [{"name", "paper_key", "mAP", "R-1"}, ...]},
          "convention": "mAP: torchreid convention; CMC over valid queries",
          "extra_tables": [TABLE, ...],           # e.g. all source -> target pairs
      },
      "ranked_lists": [FIGURE, ...],              # grids.ranked_lists
      "exports": [{"name": "generator", "path": "saved_models/generator/1",
                   "formats": ["saved_model", "tflite", "onnx"],
                   "signatures": {"serving_default": {"inputs": {"images": "uint8 [-1,256,128,3]"},
                                                      "outputs": {"soft_mask": "float32 [...]"}}},
                   "parity": {"tflite": 2.1e-5, "onnx": 1.8e-5},   # max |diff| vs the Keras model
                   "tolerance": 1e-4,
                   "figures": [FIGURE, ...]}, ...],
      "notes": ["free text", ...],
    }
    FIGURE = {"image": path | numpy array | PNG/JPEG bytes | matplotlib Figure,
              "title": str, "caption": str}
    TABLE  = {"title": str, "columns": [str, ...], "rows": [[cell, ...], ...], "caption": str}

Our re-ID metrics are fractions in [0, 1] (what `evaluation.evaluate_rank` returns) and are shown in
percent beside the paper's published percentages (`paper_results`), which are real-data numbers.
Relative image paths are resolved against `base_dir` (default: the folder of the report).
Image arrays: uint8 `[H, W, 3]` or float `[H, W, 3]` in [-1, 1] (see `figures.to_uint8_rgb`).
"""

import base64
import datetime
import html
import io
import os
from collections.abc import Mapping, Sequence

import numpy as np

from bgshift_tf import atomic_io
from bgshift_tf.report import figures, paper_results

# (anchor, title, data key); the order of the page.
SECTIONS = (
    ("run", "Run: flags and stage timings", None),
    ("domains", "Input domains", "contact_sheets"),
    ("sbsgan-images", "SBSGAN images (Fig. 1/4/5 analogues)", "suppression_grids"),
    ("gan-losses", "GAN training losses", "loss_curves"),
    ("domain-distance", "Domain distance (Fig. 6 analogue)", "domain_distance"),
    ("suppression-quality", "Background-suppression quality", "suppression_quality"),
    ("reid", "Cross-domain re-ID (Tables 2 and 3 analogues)", "reid"),
    ("ranked-lists", "Ranked lists", "ranked_lists"),
    ("exports", "Exported models", "exports"),
    ("notes", "Notes", "notes"),
)

PAPER_LABEL = "paper, real data (Market/Duke/CUHK03)"
OURS_LABEL = "ours, synthetic world"


def esc(value) -> str:
    """HTML-escapes any value's text (quotes included, so it is safe in attributes too)."""
    return html.escape(str(value), quote=True)


# ----------------------------------------------------------------------------------------------------
# Images and numbers
# ----------------------------------------------------------------------------------------------------


def _image_bytes(image, base_dir: str) -> tuple[bytes, str] | str:
    """Encoded bytes and MIME type of an image, or a str saying why it is unavailable."""
    from PIL import Image, UnidentifiedImageError

    if hasattr(image, "savefig"):
        buffer = io.BytesIO()
        image.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
        return buffer.getvalue(), "image/png"
    if isinstance(image, np.ndarray):
        buffer = io.BytesIO()
        Image.fromarray(figures.to_uint8_rgb(image)).save(buffer, format="PNG")
        return buffer.getvalue(), "image/png"
    if isinstance(image, (bytes, bytearray)):
        data, label = bytes(image), "image bytes"
    elif isinstance(image, (str, os.PathLike)):
        path = os.path.join(base_dir, os.fspath(image))
        if not os.path.isfile(path):
            return f"image file not found: {path}"
        with open(path, "rb") as f:
            data, label = f.read(), path
    else:
        return f"unsupported image value of type {type(image).__name__}"
    try:
        with Image.open(io.BytesIO(data)) as opened:
            kind = opened.format
            if kind in ("PNG", "JPEG", "GIF", "WEBP"):
                opened.verify()
                return data, f"image/{kind.lower()}"
            buffer = io.BytesIO()
            opened.convert("RGB").save(buffer, format="PNG")
            return buffer.getvalue(), "image/png"
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        return f"{label} is not a readable image ({error})"


def _img(image, alt: str, base_dir: str) -> str:
    encoded = _image_bytes(image, base_dir)
    if isinstance(encoded, str):
        return _note(encoded)
    data, mime = encoded
    return f'<img src="data:{mime};base64,{base64.b64encode(data).decode("ascii")}" alt="{esc(alt)}">'


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def fmt_number(value) -> str:
    """Compact number text: integers as is, floats with 4 significant digits, tiny/huge in e-notation."""
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    value = float(value)
    if value != value:
        return "NaN"
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.1f}"
    return f"{value:.2e}"


def _cell(value, tag: str = "td") -> str:
    if value is None:
        return f'<{tag} class="num muted">—</{tag}>'
    if _is_number(value):
        return f'<{tag} class="num">{esc(fmt_number(value))}</{tag}>'
    short = ' class="nw"' if len(str(value)) <= 32 else ""
    return f"<{tag}{short}>{esc(value)}</{tag}>"


def _seconds(value) -> str:
    value = float(value)
    if value < 60:
        return f"{value:.1f} s"
    minutes, seconds = divmod(round(value), 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


# ----------------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------------


def _note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def _missing(key: str) -> str:
    return _note(f"Not available: the report data has no “{key}” entry (stage not run or skipped).")


def _figure(entry, base_dir: str, wide: bool = False) -> str:
    if not isinstance(entry, Mapping) or "image" not in entry:
        return _note("A figure entry without an image was skipped.")
    title, caption = entry.get("title", ""), entry.get("caption", "")
    parts = [f'<figure class="card{" wide" if wide else ""}">']
    if title:
        parts.append(f"<h3>{esc(title)}</h3>")
    parts.append(f'<div class="frame">{_img(entry["image"], title or caption or "figure", base_dir)}</div>')
    if caption:
        parts.append(f"<figcaption>{esc(caption)}</figcaption>")
    parts.append("</figure>")
    return "".join(parts)


def _figures(entries, base_dir: str, wide: bool = False) -> str:
    if isinstance(entries, Mapping):
        entries = [entries]
    cards = "".join(_figure(e, base_dir, wide) for e in entries)
    return f'<div class="grid{" grid-wide" if wide else ""}">{cards}</div>'


def _table(table: Mapping) -> str:
    columns, rows = list(table.get("columns", [])), list(table.get("rows", []))
    if not rows:
        return _note(f"Table “{table.get('title', '')}” has no rows.")
    parts = ['<div class="card">']
    if table.get("title"):
        parts.append(f"<h3>{esc(table['title'])}</h3>")
    parts.append('<div class="scroll"><table><thead><tr>')
    for i, column in enumerate(columns):
        values = [row.get(column) if isinstance(row, Mapping) else (row[i] if i < len(row) else None)
                  for row in rows]
        numeric = all(_is_number(v) or v is None for v in values)
        parts.append(f'<th{" class=num" if numeric else ""}>{esc(column)}</th>')
    parts.append("</tr></thead><tbody>")
    for row in rows:
        cells = [row.get(c) for c in columns] if isinstance(row, Mapping) else list(row)
        parts.append("<tr>" + "".join(_cell(v) for v in cells) + "</tr>")
    parts.append("</tbody></table></div>")
    if table.get("caption"):
        parts.append(f'<p class="caption">{esc(table["caption"])}</p>')
    parts.append("</div>")
    return "".join(parts)


# ----------------------------------------------------------------------------------------------------
# Sections
# ----------------------------------------------------------------------------------------------------


def _run_section(data: Mapping, base_dir: str) -> str:
    parts = []
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
            status = f'<td class="status">{esc(r.get("status", ""))}</td>' if with_status else ""
            body.append(
                f"<tr><td>{esc(r.get('stage', '?'))}</td>"
                f'<td class="num">{esc(_seconds(seconds)) if seconds is not None else "—"}</td>'
                f'<td class="barcell"><span class="bar" style="width:{width:.1f}%"></span></td>{status}</tr>'
            )
        parts.append(
            '<div class="card"><h3>Stage timings</h3><div class="scroll"><table class="timings"><thead><tr>'
            '<th>Stage</th><th class="num">Wall time</th><th></th>'
            + ("<th>Status</th>" if with_status else "")
            + "</tr></thead><tbody>"
            + "".join(body)
            + f'</tbody><tfoot><tr><td>Total</td><td class="num">{esc(_seconds(total))}</td><td></td>'
            + ("<td></td>" if with_status else "")
            + "</tr></tfoot></table></div></div>"
        )
    else:
        parts.append(_missing("timings"))
    flags = data.get("flags")
    if flags:
        rows = "".join(
            f"<tr><td><code>--{esc(k)}</code></td><td><code>{esc(_flag_value(v))}</code></td></tr>"
            for k, v in sorted(flags.items())
        )
        parts.append(
            f'<div class="card"><details open><summary>Flags ({len(flags)})</summary>'
            f'<div class="scroll"><table class="flags"><tbody>{rows}</tbody></table></div></details></div>'
        )
    else:
        parts.append(_missing("flags"))
    return '<div class="grid grid-run">' + "".join(parts) + "</div>"


def _flag_value(value) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def _domain_distance_section(entry: Mapping, base_dir: str) -> str:
    parts = []
    if entry.get("figures"):
        parts.append(_figures(entry["figures"], base_dir, wide=True))
    summary = entry.get("summary")
    if not summary or not summary.get("variants"):
        parts.append(_missing("domain_distance.summary"))
        return "".join(parts)
    paper = paper_results.FIG6_DOMAIN_DISTANCE
    rows = []
    for variant, values in summary["variants"].items():
        for pair in summary.get("pairs", list(values.get("l1_2d", {}))):
            rows.append([
                variant, pair, values["l1_feature"].get(pair), values["separation"].get(pair),
                values["l1_2d"].get(pair), paper["values"].get(variant),
            ])
    features = summary.get("features", "not recorded")
    parts.append(_table({
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
    }))
    return "".join(parts)


def _percent(value):
    if value is None:
        return None
    if not _is_number(value) or not 0.0 <= float(value) <= 1.0:
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
    best_paper = {c: max(p[c] for p in paper["rows"]) for c in columns}
    best_ours = {c: max((v[c] for v in ours_values.values() if v[c] is not None), default=None) for c in columns}
    ncols = 1 + 2 * len(columns)
    head = (
        f'<thead><tr><th rowspan="2" class="left">Training data</th>'
        f'<th colspan="{len(columns)}" class="paper">{esc(PAPER_LABEL)}<br><span>{esc(paper["setting"])}</span></th>'
        f'<th colspan="{len(columns)}" class="ours">{esc(OURS_LABEL)}<br><span>{esc(setting or "—")}</span></th>'
        "</tr><tr>"
        + "".join(f'<th class="paper">{esc(c)}</th>' for c in columns)
        + "".join(f'<th class="ours">{esc(c)}</th>' for c in columns)
        + "</tr></thead>"
    )
    body, group = [], None
    for line in lines:
        if line["group"] != group:
            group = line["group"]
            body.append(f'<tr class="group"><td colspan="{ncols}">{esc(group)}</td></tr>')
        cells = [f'<td class="left">{esc(line["name"])}</td>']
        for c in columns:
            value = None if line["paper"] is None else line["paper"][c]
            cells.append(_metric_cell(value, best_paper[c], "paper"))
        for c in columns:
            value = ours_values[id(line)][c] if id(line) in ours_values else None
            cells.append(_metric_cell(value, best_ours[c], "ours"))
        body.append("<tr>" + "".join(cells) + "</tr>")
    caption = (
        f"Left: {paper['source']} ({paper['setting']}), published numbers on real data, in %. "
        f"Right: this run on the synthetic world ({setting or 'setting not given'}), in %"
        + (f"; {ours.get('convention')}" if ours and ours.get("convention") else "")
        + ". Absolute values are not comparable across the two; the row ordering is. Bold = best column."
    )
    return (
        f'<div class="card wide"><h3>{esc(title)}</h3><div class="scroll"><table class="compare">'
        f"{head}<tbody>{''.join(body)}</tbody></table></div><p class=\"caption\">{esc(caption)}</p></div>"
    )


def _metric_cell(value, best, side: str) -> str:
    if value is None:
        return f'<td class="num muted {side}">—</td>'
    strong = best is not None and abs(value - best) < 1e-9
    text = f"{value:.1f}"
    return f'<td class="num {side}">{"<strong>" + text + "</strong>" if strong else text}</td>'


def _reid_section(entry: Mapping, base_dir: str) -> str:
    parts = [
        _comparison_table(paper_results.TABLE2, entry.get("table2"),
                          "Table 2 analogue: image types for cross-domain re-ID (IDE)"),
        _comparison_table(paper_results.TABLE3, entry.get("table3"), "Table 3 analogue: DA-2S ablation"),
    ]
    if not entry.get("table2"):
        parts.insert(1, _note("Ours: no “reid.table2” rows in the report data; paper numbers shown alone."))
    if not entry.get("table3"):
        parts.append(_note("Ours: no “reid.table3” rows in the report data; paper numbers shown alone."))
    parts += [_table(t) for t in entry.get("extra_tables", [])]
    return "".join(parts)


def _exports_section(entries: Sequence[Mapping], base_dir: str) -> str:
    cards = []
    for model in entries:
        parts = [f'<div class="card wide"><h3>{esc(model.get("name", "model"))}</h3>']
        facts = []
        if model.get("path"):
            facts.append(f"<dt>Path</dt><dd><code>{esc(model['path'])}</code></dd>")
        if model.get("formats"):
            facts.append("<dt>Formats</dt><dd>" + " ".join(
                f'<span class="pill">{esc(f)}</span>' for f in model["formats"]) + "</dd>")
        if facts:
            parts.append(f'<dl class="facts">{"".join(facts)}</dl>')
        signatures = model.get("signatures") or {}
        if signatures:
            rows = []
            for name, sig in signatures.items():
                for direction in ("inputs", "outputs"):
                    for tensor, spec in (sig.get(direction) or {}).items():
                        rows.append(f"<tr><td><code>{esc(name)}</code></td><td>{direction[:-1]}</td>"
                                    f"<td><code>{esc(tensor)}</code></td><td><code>{esc(spec)}</code></td></tr>")
            parts.append('<h4>Serving signatures</h4><div class="scroll"><table><thead><tr>'
                         '<th>Signature</th><th>Kind</th><th>Name</th>'
                         f'<th>dtype / shape</th></tr></thead><tbody>{"".join(rows)}</tbody></table></div>')
        else:
            parts.append(_note("No signatures recorded."))
        parity = model.get("parity") or {}
        if parity:
            tolerance = model.get("tolerance")
            rows = []
            for fmt, diff in parity.items():
                ok = "" if tolerance is None else ("pass" if float(diff) <= float(tolerance) else "FAIL")
                rows.append(f"<tr><td>{esc(fmt)}</td>{_cell(diff)}"
                            f"{_cell(tolerance)}<td class=\"status {ok.lower()}\">{esc(ok)}</td></tr>")
            parts.append('<h4>Numerical parity</h4><div class="scroll"><table class="parity"><thead><tr>'
                         '<th>Runtime</th>'
                         "<th class=num>max |diff| vs Keras</th><th class=num>Tolerance</th><th></th></tr></thead>"
                         f'<tbody>{"".join(rows)}</tbody></table></div>')
        if model.get("figures"):
            parts.append(_figures(model["figures"], base_dir))
        parts.append("</div>")
        cards.append("".join(parts))
    return '<div class="grid grid-wide">' + "".join(cards) + "</div>"


def _notes_section(notes, base_dir: str) -> str:
    if isinstance(notes, str):
        notes = [notes]
    return '<div class="card"><ul class="notes">' + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul></div>"


def _render_section(key: str, value, base_dir: str) -> str:
    """HTML body of the section holding `data[key]`."""
    if key == "domain_distance":
        return _domain_distance_section(value, base_dir)
    if key == "suppression_quality":
        return "".join(_table(t) for t in ([value] if isinstance(value, Mapping) else value))
    if key == "reid":
        return _reid_section(value, base_dir)
    if key == "exports":
        return _exports_section(value, base_dir)
    if key == "notes":
        return _notes_section(value, base_dir)
    return _figures(value, base_dir, wide=True)


# ----------------------------------------------------------------------------------------------------
# Page
# ----------------------------------------------------------------------------------------------------

_CSS = """
:root{--bg:#f4f6fa;--card:#fff;--ink:#1f2937;--muted:#6b7280;--line:#e5e7eb;--accent:#2563eb;
--paper:#fff7ed;--paper-ink:#9a3412;--ours:#eff6ff;--ours-ink:#1e40af}
*{box-sizing:border-box}
html{font-size:15px}
body{margin:0;background:var(--bg);color:var(--ink);line-height:1.55;
font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
header{background:linear-gradient(120deg,#1e3a8a,#2563eb 60%,#0ea5e9);color:#fff;padding:2.2rem 0 2.8rem}
.wrap{max-width:1180px;margin:0 auto;padding:0 1.4rem}
header .kicker{text-transform:uppercase;letter-spacing:.12em;font-size:.75rem;opacity:.8;margin:0}
header h1{margin:.2rem 0 .4rem;font-size:2rem;font-weight:700;letter-spacing:-.01em}
header .meta{margin:0;opacity:.9;font-size:.92rem}
header .summary{max-width:60rem;margin:.8rem 0 0;opacity:.95}
nav.toc{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:1rem 1.3rem;
margin:-1.2rem 0 1.6rem;box-shadow:0 4px 14px rgba(15,23,42,.06)}
nav.toc h2{font-size:.8rem;text-transform:uppercase;letter-spacing:.1em;color:var(--muted);margin:0 0 .5rem}
nav.toc ol{margin:0;padding:0;list-style:none;columns:2 18rem;column-gap:2rem}
nav.toc li{margin:.15rem 0;break-inside:avoid;counter-increment:toc}
nav.toc li::before{content:counter(toc) ".";color:var(--muted);display:inline-block;width:1.6rem}
nav.toc a{color:var(--accent);text-decoration:none}
nav.toc a:hover{text-decoration:underline}
nav.toc .absent a{color:var(--muted)}
nav.toc .absent::after{content:" · not available";color:var(--muted);font-size:.8rem}
section{margin:0 0 2.2rem;scroll-margin-top:1rem}
section>h2{font-size:1.35rem;margin:0 0 .8rem;padding-bottom:.35rem;border-bottom:2px solid var(--line)}
.grid{display:grid;gap:1rem;grid-template-columns:repeat(auto-fit,minmax(min(100%,380px),1fr))}
.grid-wide{grid-template-columns:1fr}
.grid-run{grid-template-columns:repeat(auto-fit,minmax(min(100%,460px),1fr));align-items:start}
.card{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:1rem 1.1rem;
box-shadow:0 1px 3px rgba(15,23,42,.05);margin:0 0 1rem;min-width:0}
.grid>.card{margin:0}
.card h3{margin:0 0 .6rem;font-size:1.02rem}
figure{margin:0}
.frame{overflow-x:auto;text-align:center;background:#fafbfc;border-radius:8px;padding:.5rem}
.frame img{max-width:100%;height:auto;display:inline-block;vertical-align:middle}
figcaption,.caption{color:var(--muted);font-size:.88rem;margin:.6rem 0 0}
.note{background:#fefce8;border:1px dashed #eab308;color:#713f12;border-radius:8px;padding:.55rem .8rem;
margin:0 0 1rem;font-size:.9rem}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{padding:.4rem .6rem;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{font-weight:600;background:#f8fafc;color:#374151;vertical-align:bottom}
td.nw{white-space:nowrap}
.card h4{margin:1rem 0 .4rem;font-size:.82rem;text-transform:uppercase;letter-spacing:.06em;color:var(--muted)}
.card h3+h4,.facts+h4{margin-top:.2rem}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.muted{color:#9ca3af}
tbody tr:hover td{background:#f9fafb}
tfoot td{font-weight:600;border-top:2px solid var(--line);border-bottom:none}
table.flags td{padding:.25rem .6rem}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace;font-size:.84rem;
word-break:break-all}
details summary{cursor:pointer;font-weight:600;margin-bottom:.5rem}
.barcell{width:40%}
.bar{display:block;height:.6rem;border-radius:4px;background:linear-gradient(90deg,#60a5fa,#2563eb);min-width:2px}
td.status{color:var(--muted);font-size:.85rem}
td.status.pass{color:#15803d;font-weight:600}
td.status.fail{color:#b91c1c;font-weight:700}
table.compare th{text-align:center}
table.compare th.left,table.compare td.left{text-align:left}
table.compare th span{font-weight:400;font-size:.8rem}
table.compare th.paper{background:var(--paper);color:var(--paper-ink)}
table.compare th.ours{background:var(--ours);color:var(--ours-ink)}
table.compare td.paper{background:#fffbf5}
table.compare td.ours{background:#f7faff}
table.compare tr.group td{background:#f3f4f6;font-weight:600;font-size:.8rem;text-transform:uppercase;
letter-spacing:.05em;color:#4b5563}
.facts{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:0 0 .8rem}
.facts dt{color:var(--muted)}
.facts dd{margin:0}
.pill{display:inline-block;background:#eef2ff;color:#3730a3;border-radius:999px;padding:.05rem .6rem;
font-size:.8rem;margin-right:.3rem}
ul.notes{margin:0;padding-left:1.2rem}
footer{color:var(--muted);font-size:.8rem;padding:1rem 0 2rem;text-align:center}
@media (max-width:640px){header h1{font-size:1.5rem}html{font-size:14px}}
"""


def render_report(data: Mapping, *, base_dir: str = ".") -> str:
    """The report page as an HTML string (see the module docstring for `data`)."""
    if not isinstance(data, Mapping) or not data.get("run_name"):
        raise ValueError("report data must be a dict with a non-empty 'run_name'. "
                         f"Received keys: {sorted(data) if isinstance(data, Mapping) else type(data).__name__}")
    run_name = str(data["run_name"])
    created = data.get("created") or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    toc, sections = [], []
    for anchor, title, key in SECTIONS:
        present = (bool(data.get("flags") or data.get("timings")) if key is None else bool(data.get(key)))
        if key == "notes" and not present:
            continue
        if key is None:
            body = _run_section(data, base_dir)
        elif present:
            body = _render_section(key, data[key], base_dir)
        else:
            body = _missing(key)
        toc.append(f'<li{"" if present else " class=absent"}><a href="#{anchor}">{esc(title)}</a></li>')
        sections.append(f'<section id="{anchor}"><h2>{esc(title)}</h2>{body}</section>')
    summary = f'<p class="summary">{esc(data["summary"])}</p>' if data.get("summary") else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(run_name)} · bgshift_tf report</title><style>{_CSS}</style></head><body>"
        '<header><div class="wrap"><p class="kicker">bgshift_tf · SBSGAN + DA-2S (ICCV 2019) run report</p>'
        f'<h1>{esc(run_name)}</h1><p class="meta">Generated {esc(created)}</p>{summary}</div></header>'
        '<main class="wrap"><nav class="toc"><h2>Contents</h2><ol>'
        + "".join(toc)
        + "</ol></nav>"
        + "".join(sections)
        + "</main><footer>Self-contained report: every image is embedded; no network access needed. "
        "Paper numbers are published real-data results; ours come from this run.</footer></body></html>\n"
    )


def write_report(out_path, data: Mapping, *, base_dir=None) -> str:
    """Renders the report and writes it atomically to `out_path` (e.g. `runs/<name>/report.html`).

    Args:
      out_path: destination HTML file.
      data: the report data (module docstring).
      base_dir: folder relative image paths are resolved against (default: the folder of `out_path`).
    Returns:
      `out_path`.
    """
    base = os.fspath(base_dir) if base_dir is not None else os.path.dirname(os.path.abspath(os.fspath(out_path)))
    return atomic_io.write_text(out_path, render_report(data, base_dir=base))
