"""The SBSGAN recipe ablation's bookkeeping (`workflow.gan_ablation`): trials parsed, result files of
another budget refused before anything trains."""

import json

import pytest

from bgshift_tf.core import atomic_io
from bgshift_tf.workflow import gan_ablation


def test_trials_are_parsed_and_bad_ones_named():
    assert gan_ablation.parse_trials(["base:", "attn:upsample=nearest;attention=soft_mask"]) == {
        "base": [], "attn": ["upsample=nearest", "attention=soft_mask"]}
    with pytest.raises(ValueError, match="'base:x=1'"):
        gan_ablation.parse_trials(["base:", "base:x=1"])


BUDGET = {"gan_flagfile": "g.flags", "gan_overrides": ["steps_per_call=10"], "precision": "float32",
          "max_images": 256, "split": "train"}


def test_a_result_file_of_another_budget_is_refused_naming_each_difference():
    gan_ablation.check_budget("out.json", None, BUDGET)  # new file
    gan_ablation.check_budget("out.json", {"trials": {}, "budget": dict(BUDGET)}, BUDGET)
    # Files written before `split` existed were measured on train images.
    old = {k: v for k, v in BUDGET.items() if k != "split"}
    gan_ablation.check_budget("out.json", {"budget": old}, BUDGET)
    with pytest.raises(ValueError) as error:
        gan_ablation.check_budget("out.json", {"budget": old}, {**BUDGET, "split": "query", "max_images": 0})
    message = str(error.value)
    assert "'out.json'" in message and "split: 'train' there, 'query' now" in message
    assert "max_images: 256 there, 0 now" in message


def test_run_ablation_refuses_before_the_world_is_built(tmp_path):
    from bgshift_tf.workflow import config

    pipeline = {**config.DEFAULT_CONFIG, "data": "synthetic", "preset": "tiny", "name": "abl",
                "runs_root": str(tmp_path / "runs"), "gan_flagfile": "bgshift_tf/configs/gan_tiny.flags",
                "gan_overrides": [], "precision": "float32"}
    out = str(tmp_path / "ablation.json")
    held = {"trials": {"base": {"settings": [], "seeds": {"0": {"mean": {"fg_psnr": 17.0}}}}},
            "budget": {**BUDGET, "gan_flagfile": "bgshift_tf/configs/gan_tiny.flags", "gan_overrides": []}}
    atomic_io.write_json(out, held)
    with pytest.raises(ValueError, match="split: 'train' there, 'query' now"):
        gan_ablation.run_ablation(pipeline, {"base": []}, [0], out, max_images=256, split="query", log=lambda m: None)
    assert not (tmp_path / "runs").exists()  # nothing built, nothing trained
    with open(out) as f:
        assert json.load(f) == held  # the file is left as it was
