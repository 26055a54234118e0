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
"""

import os

from bgshift_tf import atomic_io
from bgshift_tf.report import paper_results
from bgshift_tf.workflow import main_job, model_table, report_data
from bgshift_tf.workflow import stages as stages_lib

TABLES = {"table2": paper_results.TABLE2, "table3": paper_results.TABLE3}


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


def run_experiments(config, *, force=(), log=None) -> dict:
    """Runs the experiments on `config` (keys of config.DEFAULT_CONFIG); returns the tables and markdown
    paths, each {target: ...}."""
    ctx = main_job.layout(config)
    results = stages_lib.run_stages(ctx.run_dir, experiment_stages(ctx), force=tuple(force), log=log)
    outputs = results["tables"]["outputs"]
    return {"run_dir": ctx.run_dir, "tables": outputs["tables"], "markdown": outputs["markdown"],
            "report": ctx.report(), "stages": results}
