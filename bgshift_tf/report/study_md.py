"""docs/RESULTS.md of the reference study merged from its per-seed parts (`workflow.study_merge`).

`render(entry, command)`: the first line states the number of seeds and the study hash; then a warning
while fewer than `PLANNED_SEEDS` seeds exist, the refused parts, a plain reading, the setting, every
claim with its paired difference, 95% CI over seeds and queries (and each term) and verdict, Tables 2
and 3 per target beside the paper's numbers (`results_md.table_lines`: rank-1 and mAP with intervals
over seeds and queries), which term dominates the wide rank-1 intervals, the quality figures, the domain
distances, one re-ID early-stopping curve, each part's duration and the time per stage. `results_md.write` keeps the hand-written part.
"""

from collections.abc import Mapping

from bgshift_tf.evaluation import claims as claims_lib
from bgshift_tf.report import results_md
from bgshift_tf.report.html_blocks import seconds_text
from bgshift_tf.report.html_experiments import TABLES

PLANNED_SEEDS = 3
# Rank-1 differences whose paired 95% CI half-width exceeds this many points get their terms explained.
WIDE_HALF_WIDTH = 3.0


def _fixed(value, digits=1):
    return "–" if value is None else f"{float(value):.{digits}f}"


def _signed(value):
    return "–" if value is None else f"{value:+.2f}"


def header_lines(entry: Mapping) -> list:
    """The title (seeds and study hash), the preliminary warning and the refused parts."""
    study = entry["study"]
    setting = entry.get("setting") or {}
    n = len(study["seeds"])
    lines = [f"# Reference study: {n} seed{'s' if n != 1 else ''} ({', '.join(map(str, study['seeds']))}), "
             f"study hash `{study['hash']}`", ""]
    if n < PLANNED_SEEDS:
        lines += [f"**Preliminary: {n} of the {PLANNED_SEEDS} planned seeds {'has' if n == 1 else 'have'} run.** Intervals over seeds need "
                  "at least 2 seeds; every verdict below may still change.", ""]
    lines += [f"Merged from the study's per-seed parts (`docs/study/seed_<k>.json`, `python -m bgshift_tf.results`): "
              f"{setting.get('source', '?')} → {', '.join(setting.get('targets') or [])} on the built-in synthetic "
              "world, not the paper's datasets.", ""]
    for refused in study.get("refused") or []:
        differs = ", ".join(refused["differs"][:12]) + (" ..." if len(refused["differs"]) > 12 else "")
        lines.append(f"- Refused `{refused['path']}`: study hash `{refused['study_hash']}`, differs in {differs or '?'}")
    return lines + ([""] if study.get("refused") else [])


def reading_lines(entry: Mapping) -> list:
    """A short plain reading: what held, what reversed, and what this evidence cannot show."""
    results = [r for r in entry.get("claims") or [] if r["measure"] == "R-1" or r["unit"] != "%"]
    # A claim's name can cover several row pairs ("one image type in both streams < DA-2S"): name the pair.
    by_verdict = {verdict: sorted({f"{r['name']} ({r['claim'].split(':', 1)[-1]}, {r['target']})" for r in results
                                   if r["verdict"] == verdict})
                  for verdict in results_md.VERDICT_ORDER}
    lines = ["## Plain reading", "",
             f"On rank-1 and the non-re-ID measures: {len(by_verdict['holds'])} claim(s) hold, "
             f"{len(by_verdict['reversed'])} reversed, {len(by_verdict['inconclusive'])} inconclusive, "
             f"{len(by_verdict[claims_lib.NOT_RUN])} not run."]
    for verdict in ("holds", "reversed"):
        if by_verdict[verdict]:
            lines.append(f"{verdict.capitalize()}: {'; '.join(by_verdict[verdict])}.")
    lines += ["", "What this cannot show: whether the paper's numbers hold on Market-1501, DukeMTMC-reID or CUHK03. "
              "The world is a drawn cartoon with backgrounds made to differ between domains, the networks are small "
              "and trained for minutes on a CPU, and only the ordering of rows is compared with the paper, never "
              "the absolute values. Verdicts are reported as they came.", ""]
    return lines


def claim_lines(results) -> list:
    """Every claim: paired difference, its 95% CI (seeds + queries where per-query data exist), terms, verdict."""
    lines = ["## Verdicts of the paper's claims", "",
             "Paired difference higher − lower, signed so that > 0 is the paper's direction (same seed, same "
             "target, same queries). Rank-1 and mAP: 95% CI over seeds and queries (seeds term: t over the per-seed "
             "differences; queries term: cluster-robust error over query identities; combined = sqrt(s² + q²)). "
             "Other measures: t interval over seeds. Holds when the CI is above 0, reversed when below, "
             "inconclusive otherwise, not run when a side was not measured.", "",
             f"Summary: {results_md.verdict_counts(results)}.", "",
             "| Claim | Where | Target | Measure | Seeds | Difference | 95% CI | seeds ± | queries ± | Verdict |",
             "|" + "---|" * 10]
    for r in results:
        interval = "–" if r["lo"] is None else f"[{_signed(r['lo'])}, {_signed(r['hi'])}]"
        verdict = r["verdict"] if r["reason"] is None else f"{r['verdict']} ({r['reason']})"
        seed_half = (r.get("seed_half_width") if r.get("interval") == "seeds+queries"
                     else None if r["lo"] is None else (r["hi"] - r["lo"]) / 2)
        lines.append(f"| {r['claim']} | {r['where']} | {r['target'] or '–'} | {r['measure']} ({r['unit']}) | {r['n']} | "
                     f"{_signed(r['mean'])} | {interval} | {_fixed(seed_half, 2)} | "
                     f"{_fixed(r.get('query_half_width'), 2)} | {verdict} |")
    return lines + [""]


def decomposition_lines(results) -> list:
    """Which term (seeds or queries) dominates each rank-1 paired CI wider than `WIDE_HALF_WIDTH` points."""
    wide = [r for r in results if r["measure"] == "R-1" and r.get("interval") == "seeds+queries"
            and r["lo"] is not None and (r["hi"] - r["lo"]) / 2 > WIDE_HALF_WIDTH]
    lines = ["## Where the width of the rank-1 intervals comes from", ""]
    if not [r for r in results if r["measure"] == "R-1" and r.get("interval") == "seeds+queries" and r["lo"] is not None]:
        return lines + ["No rank-1 claim has an interval over seeds and queries yet (needs >= 2 seeds).", ""]
    if not wide:
        return lines + [f"Every rank-1 paired CI half-width is at most {WIDE_HALF_WIDTH:.0f} points.", ""]
    counts = {term: sum(r["dominant"] == term for r in wide) for term in ("seeds", "queries")}
    lines += [f"{len(wide)} rank-1 paired CI(s) are wider than ± {WIDE_HALF_WIDTH:.0f} points: the seeds term dominates "
              f"in {counts['seeds']}, the queries term in {counts['queries']}. More seeds narrow the first, more test "
              "identities the second.", "", "| Claim | Target | ± (combined) | seeds ± | queries ± | dominant |",
              "|---|---|---|---|---|---|"]
    for r in wide:
        lines.append(f"| {r['claim']} | {r['target']} | {_fixed((r['hi'] - r['lo']) / 2, 2)} | "
                     f"{_fixed(r['seed_half_width'], 2)} | {_fixed(r['query_half_width'], 2)} | {r['dominant']} |")
    return lines + [""]


# Leaves of the quality outputs that are counts or constants, not figures: left out of the table.
QUALITY_COUNTS = ("_values", "num_images", "num_fit", "num_heldout")


def demo_lines(demo: Mapping) -> list:
    """The study's soft masks against the demo's (`study_merge.demo_comparison`), figure by figure."""
    lines = ["## SBSGAN soft masks: the study against the demo", ""]
    if not demo or not demo.get("rows"):
        return lines + ["No demo reference beside the parts (`python -m bgshift_tf.results "
                        "--demo_quality=runs/demo/quality.json` stores one), so this is not checked.", ""]
    rows, reference = demo["rows"], demo["reference"]
    held = sum(r["at_least_demo"] for r in rows)
    lines += [f"The study's SBSGAN (configs/gan_study.flags, 1,232 iterations of 16; its header says where it "
              f"differs from the demo's gan_demo.flags) "
              f"on the study world's exact masks, mean ± 95% CI over seeds, beside one `make demo` run on the demo "
              f"world ({reference.get('source')}, copied at commit `{str(reference.get('copied_at_commit'))[:12]}`, "
              f"{reference.get('cpu')}). The worlds differ (study 64x32, demo 128x64), so this compares quality "
              f"levels, not the same images. At least the demo's: **{held} of {len(rows)}** figures.", "",
              "| Domain | Figure | Better | Study | Demo | At least the demo's |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['domain']} | {r['figure']} | {r['better']} | {results_md.mean_ci(r['study'], 3)} | "
                     f"{_fixed(r['demo'], 3)} | {'yes' if r['at_least_demo'] else '**no**'} |")
    return lines + [""]


def quality_lines(quality: Mapping) -> list:
    """The quality figures the parts recorded (counts and the constant `original` rows left out), mean ± t CI
    over seeds with each seed's value."""
    aggregate = (quality or {}).get("aggregate") or {}
    lines = ["## SBSGAN image quality (the quality stage's figures on the exact masks)", ""]
    if not aggregate:
        return lines + ["Not measured in these parts.", ""]
    lines += ["| Figure | Mean ± CI [95% CI] | Per seed |", "|---|---|---|"]
    for path, stats in aggregate.items():
        if path.endswith(QUALITY_COUNTS) or ".metrics.original." in path:
            continue
        per_seed = "; ".join(f"{s}: {_fixed(v, 3)}" for s, v in stats["per_seed"].items())
        lines.append(f"| {path} | {results_md.mean_ci(stats, 3)} | {per_seed} |")
    return lines + [""]


def curve_lines(curves: Mapping) -> list:
    """The early-stopping curve of the first re-ID model that has one (first seed), reported once."""
    name, curve = next(((n, c) for n, c in (curves or {}).items() if c), (None, None))
    lines = ["## Re-ID training length (early stopping on held-out source identities)", ""]
    if curve is None:
        return lines + ["No re-ID model of these parts recorded an early-stopping curve.", ""]
    points = "; ".join(f"epoch {p['epoch']}: {100 * p['rank1']:.1f}" for p in curve["curve"])
    stopped = f"stopped at step {curve['stopped_step']}" if curve.get("stopped_step") else "ran to its epoch limit"
    return lines + [f"`{name}` (first seed), rank-1 % on {curve['num_holdout_ids']} held-out identities: {points}. "
                    f"Best at step {curve['best_step']}; {stopped} (patience {curve['patience']} epochs, not before epoch {curve.get('min_epochs', 0)}). Every "
                    "part's curves are in its `reid_curves`.", ""]


def part_lines(study: Mapping) -> list:
    """Each part's seed, duration (stages that ran), commit and CPU."""
    lines = ["## The parts", "", "| Seed | Duration | Commit | CPU | File |", "|---|---|---|---|---|"]
    for part in study["parts"]:
        dirty = " (uncommitted changes)" if part.get("dirty") else ""
        lines.append(f"| {part['seed']} | {seconds_text(part['total_seconds'])} | `{part['commit'][:12]}`{dirty} | "
                     f"{part.get('cpu') or '?'} | `{part.get('path') or '?'}` |")
    return lines + [""]


def render(entry: Mapping, command: str) -> str:
    """The generated part of RESULTS.md for a merged study entry (`workflow.study_merge.merge`)."""
    setting = entry.get("setting") or {}
    targets = list(setting.get("targets") or [])
    lines = header_lines(entry) + reading_lines(entry) + results_md.setting_lines(entry, command)
    lines += claim_lines(entry.get("claims") or [])
    lines += ["## Tables 2 and 3", "", "Rank-1 and mAP: mean ± 95% CI over seeds and queries, with each term; the "
              "other columns: t interval over seeds. The paper's columns are its real-data numbers.", ""]
    for table_name, paper, title in TABLES:
        table_rows = [row for row in entry["rows"] if row.get("table") == table_name]
        for target in targets if table_rows else []:
            lines += results_md.table_lines(table_rows, paper, title, target, setting.get("source", "?"))
    lines += decomposition_lines(entry.get("claims") or [])
    lines += demo_lines(entry.get("demo_quality")) + quality_lines(entry.get("quality"))
    lines += results_md.nested_lines(entry.get("domain_distance"), "Domain distance (Fig. 6 analogue)",
                                     "Separation of the source and target features per image type (smaller is closer).")
    lines += curve_lines(entry["study"].get("reid_curves"))
    lines += part_lines(entry["study"]) + results_md.timing_lines(entry.get("timings"))
    return "\n".join(lines).rstrip("\n") + "\n"
