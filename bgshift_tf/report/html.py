"""Self-contained HTML report of a run (`runs/<name>/report.html`): the page shell (this module), its
sections (`html_sections`) and their building blocks (`html_blocks`).

The page opens offline: images are embedded as base64 data URIs, CSS is inline, there are no scripts,
fonts or external URLs. All text is escaped. A section whose data is missing is replaced by a short note.

Report data: a plain, JSON-able dict (images may also be numpy arrays). Every key but `run_name` is
optional.

    {
      "run_name": "demo",                         # header and <title>
      "experiments": {...},                       # experiments.json of a job with seeds (html_experiments)
      "created": "2026-11-24 10:40 UTC",          # default: now, UTC
      "summary": "free text shown under the header",
      "flags": {"flag": value, ...},              # the run's flags / config
      "timings": {"stage": seconds, ...},         # or [{"stage", "seconds", "status"}, ...]
      "contact_sheets": [FIGURE, ...],            # input domains
      "suppression_grids": [FIGURE, ...],         # paper Fig. 1/4/5 analogues (grids.variant_grid)
      "loss_curves": [FIGURE, ...],               # GAN losses (figures.plot_loss_curves)
      "domain_distance": {                        # paper Fig. 6 analogue
          "figures": [FIGURE, ...],               # tsne.plot_domain_distance
          "summary": {...},                       # domain_distance.to_json(result) / domain_distance.json
      },
      "suppression_quality": [TABLE, ...],        # SBSGAN image quality (suppression, style transfer)
      "reid": {
          "table2": {"setting": "synmarket → synduke",
                     "rows": [{"name": "Soft-mask", "paper_key": "soft_mask",
                               "mAP": 0.31, "R-1": 0.52, "R-5": 0.7, "R-10": 0.8,
                               "bootstrap_ci": {"mAP": [0.27, 0.35], "R-1": [0.47, 0.57]}}, ...]},
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

The page opens with the results (tables), then the figures; flags and timings come last, collapsed.
`reid` holds ONE run (the page says so; `bootstrap_ci` is optional, absent in runs evaluated before it
existed); `experiments` holds means and CIs over seeds, in percent.
Our single-run re-ID metrics are fractions in [0, 1] (what `evaluation.evaluate_rank` returns) and are shown in
percent beside the paper's published percentages (`paper_results`), which are real-data numbers.
Relative image paths are resolved against `base_dir` (default: the folder of the report).
Image arrays: uint8 `[H, W, 3]` or float `[H, W, 3]` in [-1, 1] (see `data.images.to_uint8_rgb`).
"""

import datetime
import os
from collections.abc import Mapping

from bgshift_tf.core import atomic_io
from bgshift_tf.report import html_blocks as blocks
from bgshift_tf.report import html_sections as sections
from bgshift_tf.report.html_blocks import esc

# (anchor, title, data key); the order of the page: results (tables) first, then figures, then the run's
# flags and timings (collapsed). The run section has no key of its own (it reads "flags" and "timings").
SECTIONS = (
    ("experiments", "Results over seeds: Tables 2 and 3 with 95% CIs, and the paper's claims", "experiments"),
    ("reid", "Cross-domain re-ID of this run (Tables 2 and 3 analogues)", "reid"),
    ("suppression-quality", "SBSGAN image quality (background suppression, style transfer)", "suppression_quality"),
    ("domain-distance", "Domain distance (Fig. 6 analogue)", "domain_distance"),
    ("notes", "Notes", "notes"),
    ("domains", "Input domains", "contact_sheets"),
    ("sbsgan-images", "SBSGAN images (Fig. 1/4/5 analogues)", "suppression_grids"),
    ("gan-losses", "GAN training losses", "loss_curves"),
    ("ranked-lists", "Ranked lists", "ranked_lists"),
    ("exports", "Exported models", "exports"),
    ("run", "Run: flags and stage timings (collapsed)", None),
)
# Sections left out of the page (not replaced by a note) when their data is missing: a single run has no
# experiments over seeds, and most runs have no notes.
OPTIONAL = ("experiments", "notes")


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
td.num .ci{display:block;font-size:.75rem;color:var(--muted);font-weight:400}
td.num .ms{font-weight:600}
svg.dots{display:inline-block;vertical-align:middle;margin-top:.15rem}
table.seeded td.num{white-space:nowrap}
td.verdicts ul{margin:0;padding:0;list-style:none}
td.verdicts{min-width:9rem}
td.verdicts li{margin:0 0 .2rem}
.verdict{display:inline-block;border-radius:999px;padding:.02rem .55rem;font-size:.8rem;font-weight:600;
border:1px solid}
.verdict.holds{background:#dcfce7;color:#14532d;border-color:#16a34a}
.verdict.reversed{background:#fee2e2;color:#7f1d1d;border-color:#dc2626}
.verdict.inconclusive{background:#fef9c3;color:#713f12;border-color:#ca8a04}
.verdict.not-run{background:#f3f4f6;color:#4b5563;border-color:#9ca3af;border-style:dashed}
details.run{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:.8rem 1.1rem}
details.run[open]>summary{margin-bottom:.8rem}
footer{color:var(--muted);font-size:.8rem;padding:1rem 0 2rem;text-align:center}
@media (max-width:640px){header h1{font-size:1.5rem}html{font-size:14px}}
"""


def render_report(data: Mapping, *, base_dir: str = ".", only=None) -> str:
    """The report page as an HTML string (see the module docstring for `data`); `only`: the data keys of
    the sections to show (e.g. ("experiments",) for the experiments job's page over seeds), default all."""
    if not isinstance(data, Mapping) or not data.get("run_name"):
        raise ValueError("report data must be a dict with a non-empty 'run_name'. "
                         f"Received keys: {sorted(data) if isinstance(data, Mapping) else type(data).__name__}")
    run_name = str(data["run_name"])
    created = data.get("created") or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    toc, bodies = [], []
    for anchor, title, key in SECTIONS:
        if only is not None and key not in only:
            continue
        present = (bool(data.get("flags") or data.get("timings")) if key is None else bool(data.get(key)))
        if key in OPTIONAL and not present:
            continue
        if key is None:
            body = sections.run_section(data, base_dir)
        elif present:
            body = sections.render_section(key, data[key], base_dir)
        else:
            body = blocks.missing(key)
        toc.append(f'<li{"" if present else " class=absent"}><a href="#{anchor}">{esc(title)}</a></li>')
        bodies.append(f'<section id="{anchor}"><h2>{esc(title)}</h2>{body}</section>')
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
        + "".join(bodies)
        + "</main><footer>Self-contained report: every image is embedded; no network access needed. "
        "Paper numbers are published real-data results; ours come from this run.</footer></body></html>\n"
    )


def write_report(out_path, data: Mapping, *, base_dir=None, only=None) -> str:
    """Renders the report and writes it atomically to `out_path` (e.g. `runs/<name>/report.html`).

    Args:
      out_path: destination HTML file.
      data: the report data (module docstring).
      base_dir: folder relative image paths are resolved against (default: the folder of `out_path`).
      only: data keys of the sections to show (`render_report`), default all.
    Returns:
      `out_path`.
    """
    base = os.fspath(base_dir) if base_dir is not None else os.path.dirname(os.path.abspath(os.fspath(out_path)))
    return atomic_io.write_text(out_path, render_report(data, base_dir=base, only=only))
