"""The paper's claims, one frozen record each, and their verdicts on a multi-seed experiment.

A claim is a paired comparison "`lower` is worse than `higher`" on one measure, checked per target domain
across seeds with `evaluation.stats.paired_difference` (verdict "holds" / "reversed" / "inconclusive").
Each measure has a sign: +1 when larger is better (rank-1, mAP, missed-body PSNR), -1 when smaller is
better (the Fig. 6 domain distance). Values are compared on the signed scale, so `lower` is always the
side the paper says is worse and the per-seed difference is sign * (value[higher] - value[lower]) > 0
when the claim holds; the claim's `key` spells the raw ordering ("domain_distance:soft_mask<style_transfer").
A chain "a < b < c" of the paper is its adjacent pairs (a < b, b < c).

Items are the keys of `workflow.model_table` (re-ID rows, incl. `ide_softmask_2dom` and `da2s_isdcse`) or
the image variants of `data.variants` (domain distance, quality).

Input of `evaluate_claims`, per seed:
  {"rows": {target: {row_key: {"mAP", "R-1", ...}}} (percent),
   "domain_distance": {target: {variant: distance}},
   "quality": {domain: {variant: {"missed_psnr", ...}}} (`generation.quality` metrics)}
Any part may be missing: a claim without values on at least one seed is reported "not run".

`with_query_intervals(results, per_query)` replaces the seeds-only interval of the rank-1 and mAP claims
by the interval over seeds and queries (`stats.paired_seed_query_difference`) where every seed of a claim
has per-query results of both sides (the study's parts); per_query: {seed: {target: {row_key: {"pid",
"rank1", "ap", "valid"}}}} (numpy arrays, one entry per query, the same queries in the same order).
"""

import dataclasses
import math

import numpy as np

from bgshift_tf.data.variants import HARD_MASK, ORIGINAL, SOFT_MASK, STYLE_TRANSFER
from bgshift_tf.evaluation.stats import paired_difference, paired_seed_query_difference

NOT_RUN = "not run"


@dataclasses.dataclass(frozen=True)
class Measure:
    """What a claim compares: `source` part of the per-seed input, the `field` read from each item's
    dict (None: the item's value is the number), its `sign` (+1 larger is better, -1 smaller), unit, and
    the `per_query` array (of the study's parts) it is the mean of (None: no per-query values)."""

    key: str
    source: str
    field: str | None
    sign: int
    unit: str
    per_query: str | None = None


RANK1 = Measure("R-1", "rows", "R-1", +1, "%", per_query="rank1")
MAP = Measure("mAP", "rows", "mAP", +1, "%", per_query="ap")
DOMAIN_DISTANCE = Measure("domain_distance", "domain_distance", None, -1, "L1 between t-SNE domain centres")
MISSED_PSNR = Measure("missed_psnr", "quality", "missed_psnr", +1, "dB")
REID_MEASURES = (RANK1, MAP)


@dataclasses.dataclass(frozen=True)
class Claim:
    """One paired comparison: `lower` worse than `higher` on `measure` (signed), in the paper's words
    `text` at `where` (table/figure/section)."""

    name: str
    text: str
    where: str
    lower: str
    higher: str
    measure: Measure

    @property
    def key(self) -> str:
        """`<measure>:<smaller raw value><<larger raw value>`, e.g. "R-1:ide_original<ide_hardmask"."""
        smaller, larger = (self.lower, self.higher) if self.measure.sign > 0 else (self.higher, self.lower)
        return f"{self.measure.key}:{smaller}<{larger}"


def _adjacent(*chain):
    """The adjacent pairs of a chain "a < b < c" (worst first): ((a, b), (b, c))."""
    return tuple(zip(chain, chain[1:]))


# (name, the paper's words, where, (lower, higher) pairs, measures): one Claim per pair and measure.
_PAPER_CLAIMS = (
    ("original < hard mask",
     "A clear performance improvement is achieved by simply removing BGs from both training and testing images "
     "using masks obtained by JPPNet and Mask-RCNN",
     "Table 2, Sec. 5.3", _adjacent("ide_original", "ide_hardmask"), REID_MEASURES),
    ("original < soft mask",
     "Our soft-mask images ... obtain the best rank-1 accuracy (43.3%) (Table 2: original images 33.5%)",
     "Table 2, Sec. 5.3", _adjacent("ide_original", "ide_softmask"), REID_MEASURES),
    ("original < style-transferred",
     "General style-transferred results such as PTGAN and SPGAN achieve competitive performance (Table 2: "
     "StarGAN 39.8% rank-1 against 33.5% on the original images)",
     "Table 2, Sec. 5.3", _adjacent("ide_original", "ide_style"), REID_MEASURES),
    ("hard mask < soft mask",
     "the performance of our soft-mask images outperforms the hard-mask images by +4.7% in rank-1 accuracy "
     "(43.3% vs. 38.6%)",
     "Table 2, Sec. 5.3", _adjacent("ide_hardmask", "ide_softmask"), REID_MEASURES),
    ("style-transferred < soft mask",
     "General style-transferred results such as PTGAN and SPGAN achieve competitive performance. However, our "
     "soft-mask images obtain the best rank-1 accuracy (43.3%)",
     "Table 2, Sec. 5.3", _adjacent("ide_style", "ide_softmask"), REID_MEASURES),
    ("soft mask w/o L_sc < soft mask",
     "without L_sc ... the cross-domain re-ID performance is dropped by 1.1% in mAP and 1.6% in rank-1 accuracy",
     "Table 2, Sec. 5.3", _adjacent("ide_softmask_nosc", "ide_softmask"), REID_MEASURES),
    ("soft mask (3 domains) < soft mask (2 domains)",
     "Without interference from images of the third domain (i.e., CUHK03), we obtain performance gains by "
     "Softmask_2-Domains (mAP: 23.5%, rank-1: 44.2%)",
     "Table 2, Sec. 5.3", _adjacent("ide_softmask", "ide_softmask_2dom"), REID_MEASURES),
    ("baseline < +SE < +SE+ISDC-SE < DA-2S",
     "By using SEBlock, the performance is improved from 50.2% to 50.5% in rank-1 accuracy ... the "
     "baseline+SEBlock+ISDC produces the best performance (mAP: 30.8%, rank-1: 53.5%) ... If we add SEBlock to "
     "every ISDC modules (ISDC-SE), the performance is dropped by 2% in rank-1 accuracy",
     "Table 3, Sec. 5.4", _adjacent("da2s_base", "da2s_se", "da2s_isdcse", "da2s"), REID_MEASURES),
    ("one image type in both streams < DA-2S",
     "The results demonstrate that the combination of the two types of images is better than using them "
     "independently",
     "Table 3, Sec. 5.4", (("da2s_2style", "da2s"), ("da2s_2soft", "da2s")), REID_MEASURES),
    ("domain distance: masked < style-transferred",
     "Compared with the general style-transferred results, the hard-mask and soft-mask images can reduce the "
     "domain gap by a large margin",
     "Fig. 6, Sec. 5.2", ((STYLE_TRANSFER, SOFT_MASK), (STYLE_TRANSFER, HARD_MASK)), (DOMAIN_DISTANCE,)),
    ("domain distance: style-transferred < original",
     "some researches focus on the inter-domain style transfer to reduce domain gaps for person re-ID (Fig. 6: "
     "the style-transferred domain distance is below the original images')",
     "Fig. 6, Sec. 2", _adjacent(ORIGINAL, STYLE_TRANSFER), (DOMAIN_DISTANCE,)),
    ("soft mask keeps the body the parser missed",
     "when people carry objects (e.g., bags), these objects are regarded as BGs and removed by noisy FG masks "
     "... In our soft-mask images, important cues such as bags and body parts can be well generated and "
     "retained",
     "Fig. 4, Sec. 5.2", _adjacent(HARD_MASK, SOFT_MASK), (MISSED_PSNR,)),
)
CLAIMS = tuple(Claim(name, text, where, lower, higher, measure)
               for name, text, where, pairs, measures in _PAPER_CLAIMS
               for lower, higher in pairs for measure in measures)


def _value(seed_data, measure, target, item):
    """The measured value of `item` on `target` in one seed's data, or None when absent or not finite."""
    entry = ((seed_data.get(measure.source) or {}).get(target) or {}).get(item)
    if measure.field is not None:
        entry = (entry or {}).get(measure.field)
    if entry is None or not math.isfinite(entry):
        return None
    return float(entry)


def _targets(per_seed, source):
    """Targets (or domains) of `source` over all seeds, in first-seen order."""
    return list(dict.fromkeys(target for seed_data in per_seed.values() for target in seed_data.get(source) or {}))


def evaluate_claim(claim, per_seed, target, confidence=0.95) -> dict:
    """The verdict of `claim` on `target` over the seeds where both sides were measured.

    Returns:
      {"claim" (key), "name", "text", "where", "target", "measure", "unit", "sign", "lower", "higher",
       "seeds", "lower_values", "higher_values" (raw units), then `paired_difference` of the signed values
       ("per_seed" as {seed: difference}, "n", "mean", "std", "lo", "hi", "verdict", "reason")}; "verdict"
      "not run" when no
      seed measured both sides.
    """
    measure = claim.measure
    seeds, lower_values, higher_values = [], [], []
    for seed, seed_data in per_seed.items():
        lower, higher = (_value(seed_data, measure, target, item) for item in (claim.lower, claim.higher))
        if lower is not None and higher is not None:
            seeds.append(seed)
            lower_values.append(lower)
            higher_values.append(higher)
    result = {"claim": claim.key, "name": claim.name, "text": claim.text, "where": claim.where, "target": target,
              "measure": measure.key, "unit": measure.unit, "sign": measure.sign, "lower": claim.lower,
              "higher": claim.higher, "seeds": seeds, "lower_values": lower_values, "higher_values": higher_values}
    if not seeds:
        return {**result, "per_seed": {}, "n": 0, "mean": None, "std": None, "lo": None, "hi": None,
                "verdict": NOT_RUN, "reason": f"no seed measured both {claim.lower!r} and {claim.higher!r}"}
    sign = measure.sign
    difference = paired_difference([sign * v for v in lower_values], [sign * v for v in higher_values], confidence)
    return {**result, **difference, "per_seed": dict(zip(seeds, difference["per_seed"]))}


def evaluate_claims(per_seed, claims=CLAIMS, confidence=0.95) -> list:
    """Every claim on every target of its measure's source (module doc for `per_seed`), in `claims`
    order; a claim whose source has no target at all is one "not run" result with target None."""
    results = []
    for claim in claims:
        targets = _targets(per_seed, claim.measure.source) or [None]
        results += [evaluate_claim(claim, per_seed, target, confidence) for target in targets]
    return results


def _query_arrays(per_query, seeds, target, claim):
    """([S, Q] lower, [S, Q] higher, pids [Q]) of `claim` on `target` over `seeds` (mAP: the queries valid
    on both sides), or None when a seed lacks a side or the sides were not scored on the same queries."""
    entries = [[((per_query.get(seed) or {}).get(target) or {}).get(item) for item in (claim.lower, claim.higher)]
               for seed in seeds]
    if not seeds or any(entry is None for pair in entries for entry in pair):
        return None
    pids = np.asarray(entries[0][0]["pid"])
    if any(not np.array_equal(np.asarray(entry["pid"]), pids) for pair in entries for entry in pair):
        return None
    field = claim.measure.per_query
    keep = np.ones(len(pids), bool)
    if field == "ap":
        keep = np.logical_and.reduce([np.asarray(entry["valid"], bool) for pair in entries for entry in pair])
    sides = [np.stack([np.asarray(pair[side][field], np.float64)[keep] for pair in entries]) for side in (0, 1)]
    return sides[0], sides[1], pids[keep]


def with_query_intervals(results, per_query, confidence=0.95) -> list:
    """`evaluate_claims` results with the rank-1 / mAP intervals over seeds and queries (module doc).

    Each result so upgraded gains "interval": "seeds+queries", its "seed_lo" / "seed_hi" (the seeds-only
    interval it replaces) and the terms "seed_half_width", "query_half_width", "dominant" (in percent);
    "lo", "hi", "verdict", "reason" then come from the combined interval. Others get "interval": "seeds".
    """
    upgraded = []
    for result in results:
        claim = next((c for c in CLAIMS if c.key == result["claim"]), None)
        arrays = None
        if claim is not None and claim.measure.per_query and result["verdict"] != NOT_RUN:
            arrays = _query_arrays(per_query, result["seeds"], result["target"], claim)
        if arrays is None or not len(arrays[2]):
            upgraded.append({**result, "interval": "seeds"})
            continue
        combined = paired_seed_query_difference(100 * arrays[0], 100 * arrays[1], arrays[2], confidence)
        upgraded.append({**result, "interval": "seeds+queries", "seed_lo": result["lo"], "seed_hi": result["hi"],
                         **{k: combined[k] for k in ("lo", "hi", "verdict", "reason", "seed_half_width",
                                                    "query_half_width", "dominant", "n_queries")}})
    return upgraded


def _number(value):
    return "–" if value is None else f"{value:+.2f}"


def verdict_table(results) -> str:
    """`evaluate_claims` results as a markdown table: claim, where, target, measure, seeds, mean paired
    difference and its interval (signed: > 0 is the paper's direction), verdict."""
    lines = ["| Claim | Where | Target | Measure | Seeds | Difference | 95% CI | Verdict |", "|" + "---|" * 8]
    for r in results:
        interval = "–" if r["lo"] is None else f"[{_number(r['lo'])}, {_number(r['hi'])}]"
        verdict = r["verdict"] if r["reason"] is None else f"{r['verdict']} ({r['reason']})"
        lines.append(f"| {r['claim']} | {r['where']} | {r['target'] or '–'} | {r['measure']} ({r['unit']}) | "
                     f"{r['n']} | {_number(r['mean'])} | {interval} | {verdict} |")
    return "\n".join(lines) + "\n"
