"""The report-data dict of `report.html.write_report`, assembled from the files of a run folder only.

Reads the stage manifests (`workflow.stages`; an evaluation's optional `bootstrap_ci`), `timings.json`,
`experiments.json` of an experiments job with seeds (when present), the world's contact sheet, the SBSGAN's
TensorBoard scalars, `domain_distance/`, and `figures/figures.json` with its PNGs (written by the
`figures` stage, which is where the trained models are run). Nothing here loads a model.
"""

import json
import os

from bgshift_tf.report import figures
from bgshift_tf.training import gan_run, summaries
from bgshift_tf.workflow import model_table
from bgshift_tf.workflow import stages as stages_lib

TOLERANCE = 1e-3
EXPERIMENTS_FILE = "experiments.json"


def read_eval(ctx, key):
    """{domain: metrics} of `eval_<key>` (None when that stage has not completed)."""
    manifest = stages_lib.read_manifest(ctx.run_dir, f"eval_{key}")
    return None if manifest is None else manifest["outputs"]["metrics"]


def metrics_row(metrics):
    """{"mAP", "R-1", "R-5", "R-10"} of an evaluation's metrics (fractions)."""
    return {"mAP": metrics["mAP"], "R-1": metrics["rank1"], "R-5": metrics["rank5"], "R-10": metrics["rank10"]}


def _paper_table_rows(evals, model_keys, table, target, columns):
    """Rows of one table on `target`, each with its bootstrap CIs when the evaluation recorded them."""
    specs = [model_table.model(key) for key in model_keys]
    return [{"name": spec.name, "paper_key": spec.paper_key,
             **{c: metrics_row(evals[spec.key][target])[c] for c in columns},
             "bootstrap_ci": metric_intervals(evals[spec.key][target])}
            for spec in specs if spec.table == table and evals[spec.key]]


def metric_intervals(metrics):
    """{"R-1": [lo, hi], "mAP": [lo, hi]} (fractions) of an evaluation's `bootstrap_ci` without its settings
    (confidence, num_samples, unit, ...), or None for an evaluation made before it was recorded."""
    intervals = metrics.get("bootstrap_ci")
    if not intervals:
        return None
    return {name: intervals[name] for name in ("R-1", "mAP") if name in intervals}


def _bootstrap_text(metrics):
    """"R-1 [30.1, 39.9]; mAP [17.1, 25.4]" (percent) of an evaluation's `bootstrap_ci`, or "not recorded"."""
    intervals = metric_intervals(metrics)
    if not intervals:
        return "not recorded"
    return "; ".join(f"{name} [{100 * lo:.1f}, {100 * hi:.1f}]" for name, (lo, hi) in intervals.items())


def reid_tables(ctx, model_keys):
    """Report `reid` entry: Table 2/3 analogues on source -> primary target, and all pairs as extra tables."""
    evals = {key: read_eval(ctx, key) for key in model_keys}
    setting = f"{ctx.source} → {ctx.target}"
    rows = []
    for key in model_keys:
        for domain, metrics in (evals[key] or {}).items():
            rows.append([key, f"{ctx.source} → {domain}" + (" (source, reference)" if domain == ctx.source else ""),
                         100 * metrics["mAP"], 100 * metrics["rank1"], 100 * metrics["rank5"],
                         100 * metrics["rank10"], 100 * metrics["mINP"],
                         f"{metrics['num_valid_queries']}/{metrics['num_queries']}", _bootstrap_text(metrics)])
    convention = next((m[ctx.target]["convention"] for m in evals.values() if m), "")
    return {
        "table2": {"setting": setting, "rows": _paper_table_rows(evals, model_keys, "table2", ctx.target,
                                                                 ("mAP", "R-1", "R-5", "R-10"))},
        "table3": {"setting": setting, "rows": _paper_table_rows(evals, model_keys, "table3", ctx.target,
                                                                 ("mAP", "R-1"))},
        "convention": convention,
        "extra_tables": [{"title": "Every model on every test domain (%)",
                          "columns": ["Model", "Train → test", "mAP", "R-1", "R-5", "R-10", "mINP", "valid queries",
                                      "bootstrap 95% CI"],
                          "rows": rows,
                          "caption": f"One run, trained on {ctx.source}; the source row is the in-domain "
                                     "reference. Bootstrap 95% CI over query identities, for this fixed model "
                                     f"(\"not recorded\": evaluated before it existed). {convention}"}],
    }


def export_entries(ctx):
    """Report `exports` entries from the export stage's manifest (signatures recorded by that stage)."""
    manifest = stages_lib.read_manifest(ctx.run_dir, "export")
    if manifest is None:
        return []
    outputs, entries = manifest["outputs"], []
    for kind in ("generator", "embedder"):
        summary = outputs["results"].get(kind)
        if not summary:
            continue
        parity = {}
        for per_format in summary["parity"].values():
            for fmt, values in per_format.items():
                parity[fmt] = max(parity.get(fmt, 0.0), float(values["max_abs"]))
        formats = ["saved_model"] + [f"tflite ({v})" for v in sorted({v for s in summary["tflite"].values()
                                                                        for v in s})]
        formats += ["onnx"] if summary["onnx"] else []
        entries.append({"name": f"{summary['model_name']} ({kind})", "path": summary["saved_model"],
                        "formats": formats, "signatures": outputs["signatures"][kind],
                        "parity": parity, "tolerance": TOLERANCE})
    return entries


def _figure_entries(ctx):
    """{section: [entry]} of `figures/figures.json` with absolute image paths ({} before the stage ran)."""
    if not os.path.isfile(ctx.figures_index()):
        return {}
    with open(ctx.figures_index()) as f:
        index = json.load(f)
    return {section: [{**entry, "image": os.path.abspath(os.path.join(ctx.figures_dir(), entry["image"]))}
                      for entry in entries] for section, entries in index.items()}


def _suppression_table(quality):
    """The per-domain, per-variant table of `generation.quality`'s metrics."""
    rows = []
    for domain, entry in quality.items():
        for name, metrics in entry["metrics"].items():
            rows.append([domain, entry["split"], name, metrics["num_images"], metrics["fg_psnr"],
                         metrics.get("fg_ssim"), metrics["fg_l1"], metrics["bg_energy"], metrics.get("checkerboard")])
    return {
        "title": "Foreground kept, background suppressed (exact body masks of the synthetic world)",
        "columns": ["Domain", "Split", "Images", "N", "FG PSNR (dB)", "FG SSIM", "FG L1", "BG energy", "Checkerboard"],
        "rows": rows,
        "caption": "FG PSNR / SSIM / L1: output vs input inside the exact body mask (higher PSNR and SSIM, lower "
                   "L1 = person kept; SSIM windows see body pixels only). BG energy: mean brightness outside it "
                   "in [0, 1] (0 = black; 'original' = no suppression). Checkerboard: the images' share of "
                   "spectral power at period 2 (rows, columns, both) over the originals' (1 = as the originals, "
                   "> 1 = checkerboard artefacts); definitions in generation/quality.py."}


def _style_table(quality):
    """The style-transfer table (`generation.quality_style`), or None when the run measured none."""
    rows, accuracy, model = [], None, None
    for target, entry in quality.items():
        style = entry.get("style_transfer")
        if not style:
            continue
        identity = style.get("identity") or {}
        classifier = entry.get("domain_classifier", {})
        accuracy = classifier.get("heldout_accuracy_all_domains", accuracy)
        model = style.get("identity_model") or model
        rows.append([f"{style['from']} → {target}", style["num_images"], 100 * style["target_share"],
                     100 * classifier["heldout_accuracy"] if "heldout_accuracy" in classifier else None,
                     identity.get("same_person_cosine"), identity.get("different_person_cosine"),
                     identity.get("margin"), style["checkerboard"]])
    if not rows:
        return None
    identity_text = (f"IDE features of `{model}` (trained on the source's originals)" if model
                     else "not measured (the run trains no ide_original model)")
    accuracy_text = "not recorded" if accuracy is None else f"{100 * accuracy:.1f}%"
    return {
        "title": "Style transfers: background moved to the target, person kept",
        "columns": ["Transfer", "N", "Classified as target (%)", "Classifier on target originals (%)",
                    "Same-person cosine", "Different-person cosine", "Margin", "Checkerboard"],
        "rows": rows,
        "caption": "Classified as target: share of the transfers that a background-domain classifier (logistic "
                   "regression on colour/texture statistics outside the exact body mask, fitted on the "
                   "original images of every domain) assigns to the target domain. Its accuracy on held-out "
                   f"originals of other identities: {accuracy_text} over all domains, per target in the "
                   "fourth column. Cosines: re-ID features of an original vs its own transfer (same person) "
                   "and vs other people's transfers; margin = same - different; identity from "
                   f"{identity_text}. Definitions in generation/quality_style.py."}


def _quality_section(ctx):
    """The report's quality tables (suppression, then style transfers when measured), or None."""
    quality = stages_lib.read_manifest(ctx.run_dir, "quality")
    if quality is None:
        return None
    quality = quality["outputs"]["quality"]
    return [table for table in (_suppression_table(quality), _style_table(quality)) if table is not None]


def _domain_distance_section(ctx):
    summary_path = ctx.path("domain_distance", "domain_distance.json")
    if not os.path.isfile(summary_path):
        return None
    with open(summary_path) as f:
        summary = json.load(f)
    return {"figures": [{"image": os.path.abspath(summary["figure"]), "title": "t-SNE of each image variant",
                         "caption": f"Features: {summary.get('features')}; style transfer maps every domain to "
                                    f"{ctx.target}."}],
            "summary": summary}


def read_experiments(ctx):
    """The experiments job's experiments.json in the run's top folder (`ctx.data_dir`, above the seed folders;
    report section `experiments`), or None."""
    path = os.path.join(ctx.data_dir, EXPERIMENTS_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON ({error}); re-run the experiments job to rewrite it") from None


def _header(ctx):
    """Run name, summary, flags, timings and the synthetic world's contact sheet."""
    config = ctx.config
    flags = dict(config)
    flags.update({f"gan.{k}": v for k, v in ctx.gan.items()})
    flags.update({f"reid.{k}": v for k, v in ctx.reid.items()})
    data_text = (f"built-in synthetic world ({config['preset']} preset)" if config["data"] == "synthetic"
                 else "real datasets")
    data = {
        "run_name": config["name"],
        "summary": (f"SBSGAN + DA-2S on the {data_text}: "
                    f"domains {', '.join(ctx.domains)}; re-ID models trained on {ctx.source}, tested on "
                    f"{', '.join(ctx.targets)} (and {ctx.source} for reference)."),
        "flags": flags,
        "timings": [row for row in stages_lib.read_timings(ctx.run_dir) if row["status"] != "not run"],
    }
    if config["data"] == "synthetic":
        data["contact_sheets"] = [{"image": os.path.abspath(os.path.join(ctx.world_dir, "contact_sheet.png")),
                                   "title": "Synthetic world",
                                   "caption": "Per domain: image | parser mask | parser vs exact mask (white both, "
                                              "red body missed by the parser, cyan parser false positive)."}]
    return data


def _notes(ctx, model_keys):
    notes = []
    for key in model_keys:
        manifest = stages_lib.read_manifest(ctx.run_dir, f"eval_{key}")
        if manifest is not None:
            notes += [f"{key}: {note}" for note in manifest["outputs"].get("notes", [])]
    notes.append("Our numbers come from a small synthetic world and short CPU schedules; compare the "
                 "ordering of the rows with the paper's, not the values.")
    changed = gan_run.settings_not_from_paper(ctx.gan)
    if changed:
        notes.append("SBSGAN settings of this run that differ from the paper's (paper in brackets): "
                     + ", ".join(changed) + ". BUILD_NOTES.md, \"Demo quality\", says why.")
    return notes


def build_report_data(ctx, model_keys):
    """The report-data dict of `report.html.write_report` from the run folder's files."""
    data = _header(ctx)
    data.update(_figure_entries(ctx))
    curves = {tag: series for tag, series in summaries.read_scalars(os.path.join(ctx.gan_dir(), "logs")).items()
              if tag.startswith("losses/")}
    if curves:
        data["loss_curves"] = [{"image": figures.plot_loss_curves(curves, title="SBSGAN losses"),
                                "title": "SBSGAN losses (TensorBoard scalars)",
                                "caption": "Faint: raw values; bold: moving average."}]
    for key, section in (("experiments", read_experiments(ctx)),
                         ("domain_distance", _domain_distance_section(ctx)),
                         ("suppression_quality", _quality_section(ctx))):
        if section is not None:
            data[key] = section
    data["reid"] = reid_tables(ctx, model_keys)
    data["exports"] = export_entries(ctx)
    data["notes"] = _notes(ctx, model_keys)
    return data
