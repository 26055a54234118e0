"""The paper's comparisons on the source -> each target pair (Tables 2 and 3), as stages in the main job's run folder.

Table 2 (IDE, one image type each): original, hard-mask (noisy parser masks), style-transferred (SBSGAN's
style branch, source -> target), soft-mask, soft-mask from an SBSGAN trained with lambda_sc = 0, and
soft-mask from an SBSGAN trained on the source and that target only (one SBSGAN + IDE per target).
Table 3 (two-stream network): baseline without SE and ISDC, + SE, + SE + ISDC-SE (an SE block on every ISDC
output), + SE + ISDC (= DA-2S), and DA-2S fed two style-transferred or two soft-mask images.

The job is the main job's stage list (`main_job.main_job_stages`) with the extra models (rows of
`workflow.model_table`) and the SBSGANs they need (`train_gan_nosc`, `train_gan_2dom_<target>` and their
`generate` stages), plus a `tables`
stage writing `<run_dir>/experiments/table2_<target>.md`, `table3_<target>.md` for every target domain and
`tables.json` ({target: tables}), and the report with every row. It runs in the main job's run folder with
the main job's settings (the experiments flagfile includes the main one), so every stage the main job has
completed with the same settings (data, SBSGAN, shared re-ID models, evaluations) is skipped.
Each model is tested on every target domain with its `eval_variants` (`workflow.model_table`).

Seeds (`config["seeds"]`, e.g. 0,1,2): the world, masks and TFRecords stages run once (one fixed world);
every other stage runs once per seed as `seed_<k>/<stage>` with its outputs (and manifests) in
`<run_dir>/seed_<k>/`
(`run_layout.RunLayout(config, seed=k)`: the trainers' `seed` = k, and Keras/TF/NumPy are seeded with k
before each of those stages), export / figures / report for the first seed only. `run_stages` resumes
each seed's stages on its own. No seeds: one run in the run folder itself, as before.

After the stages, `<run_dir>/experiments.json` (atomic):
    {"setting": {"source", "targets", "data", "preset", "seeds", "precision", "commit", "machine",
                 "wall_seconds" (sum of every stage's recorded seconds, reused stages included)},
     "rows": [{"key", "name", "table", "paper_key", "paper": {metric: value}, "per_target": {target:
               {metric: {"per_seed": {seed: value}, "n", "mean", "std", "lo", "hi",
                         "bootstrap_ci": {seed: [lo, hi] or None}}}}}],
     "claims": `claims.evaluate_claims(per_seed)` (rows in percent),
     "domain_distance": {"per_seed": {seed: {target: {variant: separation}}}, "aggregate": {target:
                         {variant: {"per_seed", "n", "mean", "std", "lo", "hi"}}}},
     "quality": {"per_seed": {seed: {domain: {variant: {metric}}}}, "aggregate": {domain: {variant:
                 {metric: {"per_seed", "n", "mean", ...}}}}},
     "timings": {stage: seconds}}
Metrics in percent (mAP, R-1, R-5, R-10); "lo"/"hi" the t interval over seeds (`stats.t_interval`, 95%;
None with one seed); "bootstrap_ci" each run's own bootstrap CI over query identities (evaluation).
With seeds, `<run_dir>/experiments.html` shows it: the report's experiments section alone (Tables 2 and 3
as mean ± CI with a dot per seed, verdicts, claims), since the first seed's report is written before the
other seeds have run. `python -m bgshift_tf.results` renders it as docs/RESULTS.md.
"""

import dataclasses
import json
import math
import os

import keras

from bgshift_tf.core import atomic_io
from bgshift_tf.evaluation import claims, stats
from bgshift_tf.evaluation.domain_distance import pair_name
from bgshift_tf.report import html, paper_results
from bgshift_tf.workflow import main_job, model_table, provenance, report_data, run_layout
from bgshift_tf.workflow import config as config_lib
from bgshift_tf.workflow import stages as stages_lib

TABLES = {"table2": paper_results.TABLE2, "table3": paper_results.TABLE3}
METRICS = ("mAP", "R-1", "R-5", "R-10")
# generation.quality's metrics kept per seed; missed_* is the body the parser missed (the quality claim).
QUALITY_METRICS = ("fg_psnr", "fg_ssim", "fg_l1", "bg_energy", "checkerboard", "missed_psnr", "missed_l1")
# The page over seeds (the report's experiments section alone), next to experiments.json.
EXPERIMENTS_PAGE = "experiments.html"
# Stages of the fixed world, run once for every seed.
SHARED_STAGES = ("world", "masks", "tfrecords")
# Stages run for the first seed only (serving export and the single-run report of that seed).
FIRST_SEED_ONLY = ("export", "figures", "report")


def experiment_keys():
    """Every model of Tables 2 and 3, in row order."""
    return [key for table in TABLES for key in model_table.table_keys(table)]


def build_tables(ctx) -> dict:
    """{target: `target_tables(ctx, target)`} for every target domain of the run, in `ctx.targets` order."""
    return {target: target_tables(ctx, target) for target in ctx.targets}


def target_tables(ctx, target) -> dict:
    """Both tables on `target` as JSON-able dicts: {"setting", "table2": [row], "table3": [row], "checks": {...}}.

    Rows: {"key", "name", "paper_key", "mAP", "R-1", "R-5", "R-10" (percent, ours), "paper": {...}}.
    """
    tables = {"setting": f"{ctx.source} → {target}", "table2": [], "table3": []}
    for table_name, paper in TABLES.items():
        paper_rows = {row["key"]: row for row in paper["rows"]}
        for key in model_table.table_keys(table_name):
            spec = model_table.model(key)
            ours = report_data.metrics_row(report_data.read_eval(ctx, key)[target])
            tables[table_name].append({
                "key": key, "name": spec.name, "paper_key": spec.paper_key,
                **{column: 100 * value for column, value in ours.items()},
                "paper": {c: paper_rows[spec.paper_key][c] for c in paper["columns"]},
            })
    tables["checks"] = ordering_checks(tables)
    return tables


def ordering_checks(tables) -> dict:
    """Whether the paper's orderings hold here: original < hard-mask < soft-mask (Table 2) and DA-2S
    best in Table 3, per metric (mAP, R-1)."""
    table2 = {row["key"]: row for row in tables["table2"]}
    table3 = {row["key"]: row for row in tables["table3"]}
    checks = {}
    for metric in ("mAP", "R-1"):
        chain = [table2[k][metric] for k in ("ide_original", "ide_hardmask", "ide_softmask")]
        checks[f"original < hard-mask < soft-mask ({metric})"] = chain[0] < chain[1] < chain[2]
        checks[f"soft-mask > soft-mask w/o L_sc ({metric})"] = (
            table2["ide_softmask"][metric] > table2["ide_softmask_nosc"][metric])
        best = max(row[metric] for row in tables["table3"])
        checks[f"DA-2S best in Table 3 ({metric})"] = table3["da2s"][metric] == best
    return checks


def to_markdown(tables, table_name) -> str:
    """One table as markdown: ours beside the paper's (real data), in percent."""
    columns = ("mAP", "R-1", "R-5", "R-10") if table_name == "table2" else ("mAP", "R-1")
    title = ("Table 2 analogue: IDE trained on one image type" if table_name == "table2"
             else "Table 3 analogue: DA-2S ablation")
    header = ["Training data"] + [f"{c} (ours)" for c in columns] + [f"{c} (paper)" for c in columns]
    lines = [f"## {title} ({tables['setting']}, synthetic world; paper: Market-1501 → DukeMTMC-reID)", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in tables[table_name]:
        cells = [row["name"]] + [f"{row[c]:.1f}" for c in columns] + [f"{row['paper'][c]:.1f}" for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    checks = {k: v for k, v in tables["checks"].items()
              if ("Table 3" in k) == (table_name == "table3")}
    lines += ["", "Paper orderings here: " + "; ".join(f"{k}: {'yes' if v else 'no'}" for k, v in checks.items()),
              ""]
    return "\n".join(lines)


def tables_stage(ctx):
    out_dir = ctx.path("experiments")
    keys = experiment_keys()

    def fn():
        tables = build_tables(ctx)
        os.makedirs(out_dir, exist_ok=True)
        atomic_io.write_json(os.path.join(out_dir, "tables.json"), tables)
        paths = {target: {} for target in tables}
        for target, name in ((t, n) for t in tables for n in TABLES):
            paths[target][name] = os.path.join(out_dir, f"{name}_{target}.md")
            atomic_io.write_text(paths[target][name], to_markdown(tables[target], name))
        return {"tables": tables, "markdown": paths, "json": os.path.join(out_dir, "tables.json")}

    return stages_lib.Stage("tables", fn, config={"keys": keys}, deps=[f"eval_{key}" for key in keys],
                            clean_paths=[out_dir], budget=5)


def experiment_stages(ctx):
    """The main job's stages with every Table 2/3 model (and the SBSGANs they need) and the tables stage."""
    return main_job.main_job_stages(ctx, extra_models=experiment_keys(), extra_stages=[tables_stage(ctx)])


# === Seeds ===


def seed_stage_name(seed, name) -> str:
    """`seed_<k>/<name>` for a trained or measured stage (its manifest in `seed_<k>/stages/`, see
    `stages.manifest_path`); the shared data stages keep their names."""
    return name if name in SHARED_STAGES else f"{run_layout.seed_folder(seed)}/{name}"


def _seeded(stage, seed):
    """`stage` of training seed `seed`: renamed (`seed_stage_name`, deps too), run with Keras/TF/NumPy/Python
    seeded by `seed` (weight initialisation and any unseeded random op), after the main job's own set-up."""
    def run():
        keras.utils.set_random_seed(int(seed))
        return stage.fn()

    return dataclasses.replace(stage, name=seed_stage_name(seed, stage.name), fn=run,
                               deps=[seed_stage_name(seed, dep) for dep in stage.deps])


def seed_layouts(config):
    """[(seed, RunLayout)] of `config["seeds"]` (merged config); no seeds: [(the trainers' re-ID seed,
    the unseeded layout)], today's single run in the run folder itself."""
    if not config["seeds"]:
        ctx = run_layout.RunLayout(config)
        return [(ctx.reid["seed"], ctx)]
    return [(int(seed), run_layout.RunLayout(config, seed=int(seed))) for seed in config["seeds"]]


def seeded_experiment_stages(config):
    """The stage list over `config["seeds"]`: world / masks / tfrecords once, then per seed every SBSGAN,
    generation, re-ID model, evaluation, quality, domain distance and tables stage (`seed_<k>/<name>`);
    export, figures and report for the first seed only. No seeds: `experiment_stages` as it is."""
    layouts = seed_layouts(config)
    if not config["seeds"]:
        return experiment_stages(layouts[0][1])
    stages = [stage for stage in experiment_stages(main_job.layout(config)) if stage.name in SHARED_STAGES]
    for index, (seed, ctx) in enumerate(layouts):
        stages += [_seeded(stage, seed) for stage in experiment_stages(ctx)
                   if stage.name not in SHARED_STAGES and (index == 0 or stage.name not in FIRST_SEED_ONLY)]
    return stages


# === experiments.json ===


def _percent_interval(pair):
    return None if pair is None else [100 * float(pair[0]), 100 * float(pair[1])]


def per_seed_results(layouts, keys) -> dict:
    """{seed: {"rows", "domain_distance", "quality"}} (`claims.evaluate_claims`' input; rows: {target:
    {key: {metric: percent}}}) plus "bootstrap_ci": {target: {key: {metric: [lo, hi] percent or None}}}."""
    per_seed = {}
    for seed, ctx in layouts:
        rows = {target: {} for target in ctx.targets}
        bootstrap = {target: {} for target in ctx.targets}
        for key in keys:
            evals = report_data.read_eval(ctx, key)
            for target in ctx.targets:
                rows[target][key] = {c: 100 * v for c, v in report_data.metrics_row(evals[target]).items()}
                cis = evals[target].get("bootstrap_ci") or {}
                bootstrap[target][key] = {metric: _percent_interval(cis.get(metric)) for metric in METRICS}
        per_seed[seed] = {"rows": rows, "bootstrap_ci": bootstrap, "domain_distance": domain_distances(ctx),
                          "quality": _quality(ctx)}
    return per_seed


def domain_distances(ctx) -> dict:
    """{target: {variant: feature-space separation of source vs target}} (t-SNE's 2-D L1 is within-run only)."""
    with open(ctx.path("domain_distance", "domain_distance.json")) as f:
        summary = json.load(f)
    return {target: {variant: entry["separation"][pair_name(ctx.source, target)]
                     for variant, entry in summary["variants"].items()} for target in ctx.targets}


def _quality(ctx) -> dict:
    """{domain: {variant: {metric: value}}} of the `quality` stage ({} on real data: no exact masks)."""
    manifest = stages_lib.read_manifest(ctx.run_dir, "quality")
    if manifest is None:
        return {}
    return {domain: {variant: {m: metrics[m] for m in QUALITY_METRICS} for variant, metrics in entry["metrics"].items()}
            for domain, entry in manifest["outputs"]["quality"].items()}


def _over_seeds(per_seed, path):
    """{seed: value} of `per_seed[seed]` followed along the keys `path`."""
    values = {}
    for seed, entry in per_seed.items():
        for part in path:
            entry = entry[part]
        values[seed] = entry
    return values


def _aggregate(per_seed, path, leaf_keys):
    """{leaf: {"per_seed": {seed: value}, **interval}} for the finite values at `path` + each leaf key."""
    result = {}
    for leaf in leaf_keys:
        values = _over_seeds(per_seed, [*path, leaf])
        finite = [v for v in values.values() if math.isfinite(v)]
        result[leaf] = {"per_seed": values, **stats.t_interval(finite)}
    return result


def experiment_rows(per_seed, keys, targets, metrics=METRICS) -> list:
    """experiments.json "rows": each model's paper numbers and, per target and metric (`metrics`), the
    per-seed values, their t interval (`stats.t_interval`) and each seed's bootstrap CI (None when that
    seed's "bootstrap_ci" has none for the metric)."""
    rows = []
    for key in keys:
        spec = model_table.model(key)
        paper_rows = {row["key"]: row for row in TABLES[spec.table]["rows"]}
        per_target = {}
        for target in targets:
            per_target[target] = _aggregate(per_seed, ["rows", target, key], metrics)
            for metric in metrics:
                per_target[target][metric]["bootstrap_ci"] = {
                    seed: ((entry.get("bootstrap_ci") or {}).get(target) or {}).get(key, {}).get(metric)
                    for seed, entry in per_seed.items()}
        rows.append({"key": key, "name": spec.name, "table": spec.table, "paper_key": spec.paper_key,
                     "paper": {c: paper_rows[spec.paper_key][c] for c in TABLES[spec.table]["columns"]},
                     "per_target": per_target})
    return rows


def nested_aggregate(per_seed, section):
    """{outer: {inner: aggregate}} of a per-seed section shaped {outer: {inner: value}} or
    {outer: {inner: {metric: value}}} (domain distance, quality)."""
    first = next(iter(per_seed.values()))[section]
    result = {}
    for outer, inner in first.items():
        result[outer] = {}
        for name, value in inner.items():
            if isinstance(value, dict):
                result[outer][name] = _aggregate(per_seed, [section, outer, name], list(value))
            else:
                result[outer][name] = _aggregate(per_seed, [section, outer], [name])[name]
    return result


def experiments_summary(config, layouts, results) -> dict:
    """The `experiments.json` document (see the module docstring) from the seeds' finished stages."""
    keys = experiment_keys()
    ctx = layouts[0][1]
    per_seed = per_seed_results(layouts, keys)
    timings = {name: result["seconds"] for name, result in results.items()}
    return {
        "setting": {"source": ctx.source, "targets": ctx.targets, "data": config["data"],
                    "preset": config["preset"] if config["data"] == "synthetic" else None,
                    "seeds": [seed for seed, _ in layouts],
                    "precision": {"gan": ctx.gan.get("precision"), "reid": ctx.reid.get("precision")},
                    "commit": provenance.commit(), "wall_seconds": sum(timings.values()),
                    "machine": provenance.machine()},
        "rows": experiment_rows(per_seed, keys, ctx.targets),
        "claims": claims.evaluate_claims(
            {seed: {part: entry[part] for part in ("rows", "domain_distance", "quality")}
             for seed, entry in per_seed.items()}),
        "domain_distance": {"per_seed": _over_seeds(per_seed, ["domain_distance"]),
                            "aggregate": nested_aggregate(per_seed, "domain_distance")},
        "quality": {"per_seed": _over_seeds(per_seed, ["quality"]),
                    "aggregate": nested_aggregate(per_seed, "quality")},
        "timings": timings,
    }


def run_experiments(config, *, force=(), log=None) -> dict:
    """Runs the experiments on `config` (keys of config.DEFAULT_CONFIG) over its seeds, writes
    `<run>/experiments.json` (and, with seeds, experiments.html); returns the first seed's tables and paths,
    the summary and the stage results."""
    config = config_lib.merge_config(config)
    layouts = seed_layouts(config)
    run_dir = layouts[0][1].data_dir
    stages = seeded_experiment_stages(config)
    results = stages_lib.run_stages(run_dir, stages, force=tuple(force), log=log)
    summary = experiments_summary(config, layouts, results)
    summary_path = atomic_io.write_json(os.path.join(run_dir, report_data.EXPERIMENTS_FILE), summary)
    page = None
    if config["seeds"]:
        page = html.write_report(os.path.join(run_dir, EXPERIMENTS_PAGE), {
            "run_name": f"{config['name']}: {len(layouts)} seeds", "experiments": summary,
            "summary": "Tables 2 and 3 over seeds with 95% CIs and the verdict of each of the paper's claims "
                       f"(from {report_data.EXPERIMENTS_FILE}); each seed's own run is in seed_<k>/, the first "
                       "seed's report in seed_0/report.html. The study merged over its committed per-seed parts (make study "
                       "SEEDS=k): docs/RESULTS.md."}, only=("experiments",))
    first_seed, first = layouts[0]
    outputs = results[seed_stage_name(first_seed, "tables") if config["seeds"] else "tables"]["outputs"]
    return {"run_dir": run_dir, "tables": outputs["tables"], "markdown": outputs["markdown"],
            "report": first.report(), "experiments_json": summary_path, "experiments_page": page, "summary": summary,
            "stages": results}
