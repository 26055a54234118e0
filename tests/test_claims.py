"""Tests of evaluation.claims: the claim list and the verdicts on constructed per-seed numbers."""

import pytest

from bgshift_tf.data import variants
from bgshift_tf.evaluation import claims
from bgshift_tf.workflow import model_table

# Rows helper M adds to model_table this round (Soft-mask 2 domains; +SE+ISDC-SE).
NEW_ROWS = {"ide_softmask_2dom", "da2s_isdcse"}


@pytest.fixture(autouse=True)
def _reset_keras_state():
    """Overrides conftest's per-test Keras reset: these tests are pure Python."""
    yield


def _claim(key):
    (claim,) = [c for c in claims.CLAIMS if c.key == key]
    return claim


def test_claim_keys_are_unique_and_items_known():
    keys = [c.key for c in claims.CLAIMS]
    assert len(keys) == len(set(keys))
    row_keys = {spec.key for spec in model_table.MODELS} | NEW_ROWS
    for claim in claims.CLAIMS:
        known = row_keys if claim.measure.source == "rows" else set(variants.ALL)
        assert {claim.lower, claim.higher} <= known, claim.key


def test_chains_expand_into_adjacent_pairs_per_metric():
    chain = [(c.lower, c.higher, c.measure.key) for c in claims.CLAIMS if c.name.startswith("baseline < +SE")]
    assert chain == [(lo, hi, m) for lo, hi in (("da2s_base", "da2s_se"), ("da2s_se", "da2s_isdcse"),
                                                 ("da2s_isdcse", "da2s")) for m in ("R-1", "mAP")]
    # Fig. 6: smaller distance is the claim, so the worse side (`lower`) is the larger distance.
    distance = {c.key: (c.lower, c.higher) for c in claims.CLAIMS if c.measure is claims.DOMAIN_DISTANCE}
    assert distance == {"domain_distance:soft_mask<style_transfer": ("style_transfer", "soft_mask"),
                        "domain_distance:hard_mask<style_transfer": ("style_transfer", "hard_mask"),
                        "domain_distance:style_transfer<original": ("original", "style_transfer")}
    assert _claim("R-1:ide_softmask<ide_softmask_2dom").where.startswith("Table 2")


def _seed(original, hardmask, distances=None, missed=None):
    """One seed's data: rank-1/mAP of two Table 2 rows on target "duke" (percent), Fig. 6 distances,
    the missed-body PSNR of soft/hard masks on domain "market"."""
    data = {"rows": {"duke": {"ide_original": {"R-1": original, "mAP": original / 2},
                              "ide_hardmask": {"R-1": hardmask, "mAP": hardmask / 2}}}}
    if distances:
        data["domain_distance"] = {"duke": dict(zip(("original", "style_transfer", "soft_mask"), distances))}
    if missed:
        data["quality"] = {"market": {"soft_mask": {"missed_psnr": missed[0]},
                                      "hard_mask": {"missed_psnr": missed[1]}}}
    return data


def _results(per_seed):
    return {(r["claim"], r["target"]): r for r in claims.evaluate_claims(per_seed)}


def test_verdicts_on_constructed_seeds():
    # R-1 differences hard - original: [5, 6, 5] -> holds; mAP the same halved -> holds.
    # Distances (original, style, soft): soft < style by [2, 2.5, 2] -> holds; style vs original: the
    # signed differences original - style are [1, -1, 2] -> inconclusive.
    # Missed PSNR soft - hard: [-3, -4, -3] -> reversed.
    per_seed = {
        0: _seed(20, 25, distances=(10, 9, 7), missed=(10, 13)),
        1: _seed(21, 27, distances=(10, 11, 8.5), missed=(10, 14)),
        2: _seed(22, 27, distances=(12, 10, 8), missed=(11, 14)),
    }
    results = _results(per_seed)
    rank1 = results[("R-1:ide_original<ide_hardmask", "duke")]
    assert rank1["verdict"] == "holds" and rank1["per_seed"] == {0: 5.0, 1: 6.0, 2: 5.0} and rank1["seeds"] == [0, 1, 2]
    assert rank1["lower_values"] == [20.0, 21.0, 22.0] and rank1["text"].startswith("A clear performance")
    assert results[("mAP:ide_original<ide_hardmask", "duke")]["verdict"] == "holds"
    soft = results[("domain_distance:soft_mask<style_transfer", "duke")]
    assert soft["verdict"] == "holds" and soft["per_seed"] == {0: 2.0, 1: 2.5, 2: 2.0} and soft["sign"] == -1
    assert results[("domain_distance:style_transfer<original", "duke")]["verdict"] == "inconclusive"
    missed = results[("missed_psnr:hard_mask<soft_mask", "market")]
    assert missed["verdict"] == "reversed" and missed["per_seed"] == {0: -3.0, 1: -4.0, 2: -3.0}


def test_missing_rows_are_listed_as_not_run():
    results = claims.evaluate_claims({0: _seed(20, 25), 1: _seed(21, 27)})
    # Every claim is reported: rows claims per target, the others once with target None.
    assert {r["claim"] for r in results} == {c.key for c in claims.CLAIMS}
    by_key = {(r["claim"], r["target"]): r for r in results}
    soft = by_key[("R-1:ide_hardmask<ide_softmask", "duke")]
    assert soft["verdict"] == "not run" and "ide_softmask" in soft["reason"] and soft["n"] == 0
    assert by_key[("domain_distance:soft_mask<style_transfer", None)]["verdict"] == "not run"
    # Two seeds, differences [5, 6]: 5.5 +- t_{0.975,1} 12.706 * 0.7071 / sqrt(2) = 5.5 +- 6.35 spans 0.
    measured = by_key[("R-1:ide_original<ide_hardmask", "duke")]
    assert measured["verdict"] == "inconclusive" and measured["lo"] == pytest.approx(5.5 - 6.353, abs=1e-3)


def test_one_seed_and_partial_seeds():
    one = _results({0: _seed(20, 25)})[("R-1:ide_original<ide_hardmask", "duke")]
    assert one["verdict"] == "inconclusive" and "1 seed" in one["reason"] and one["per_seed"] == {0: 5.0}
    # Seed 1 lacks the hard-mask row and seed 2 has a NaN: only the seeds measuring both sides pair up.
    partial = {0: _seed(20, 25), 1: _seed(21, 27), 2: _seed(22, float("nan")), 3: _seed(20, 26)}
    del partial[1]["rows"]["duke"]["ide_hardmask"]
    result = _results(partial)[("R-1:ide_original<ide_hardmask", "duke")]
    assert result["seeds"] == [0, 3] and result["per_seed"] == {0: 5.0, 3: 6.0}


def test_verdict_table_lists_every_result():
    results = claims.evaluate_claims({0: _seed(20, 25), 1: _seed(21, 27), 2: _seed(22, 27)})
    lines = claims.verdict_table(results).splitlines()
    assert len(lines) == 2 + len(results)
    # Differences [5, 6, 5]: mean 5.33, interval 5.33 +- 4.3027 * 0.5774 / sqrt(3) = [3.90, 6.77].
    (row,) = [line for line in lines if line.startswith("| R-1:ide_original<ide_hardmask |")]
    assert "| 3 | +5.33 | [+3.90, +6.77] | holds |" in row
    (missing,) = [line for line in lines if line.startswith("| missed_psnr:hard_mask<soft_mask |")]
    assert missing.endswith("| 0 | – | – | not run (no seed measured both 'hard_mask' and 'soft_mask') |")
