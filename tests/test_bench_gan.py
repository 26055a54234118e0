"""The bench's `gan` section (benchmarks/gan.py) in its quick run: every PyTorch twin mode (eager NCHW,
channels_last, torch.compile) gives a rate per step or the reason it did not run, and the best PyTorch mode of
each step is one that measured it. Skipped without torch (the bench extra)."""

import pytest

from bgshift_tf.benchmarks import gan

torch = pytest.importorskip("torch")


@pytest.mark.slow
def test_quick_run_reports_each_torch_mode_as_rates_or_an_error_and_picks_the_best_among_rates():
    row = gan.run(quick=True)["settings"]["quick"]
    assert list(row["torch"]) == list(gan.TORCH_MODES)
    for mode, rates in row["torch"].items():
        if "error" in rates:
            assert list(rates) == ["error"] and isinstance(rates["error"], str) and rates["error"], mode
            continue
        assert set(rates) == set(gan.STEPS), mode
        assert all((isinstance(v, float) and v > 0) or (isinstance(v, str) and v) for v in rates.values()), mode
        assert any(isinstance(v, float) for v in rates.values()), mode
    for mode in ("float32", "bf16_autocast", "float32_channels_last", "bf16_autocast_channels_last"):
        assert all(isinstance(row["torch"][mode][step], float) for step in gan.STEPS), mode  # eager: no reasons
    assert set(row["torch_best_mode"]) == set(gan.TF_STEPS)
    for step, mode in row["torch_best_mode"].items():
        measured = ("d_step", "g_step") if step == "dg_step" else (step,)  # dg_step: d_step then g_step
        assert all(isinstance(row["torch"][mode].get(k), float) for k in measured), (step, mode)
        if step != "dg_step":
            assert row["torch_best"][step] == max(
                r[step] for r in row["torch"].values() if isinstance(r.get(step), float))
    assert set(row["tf_vs_torch"]) == set(gan.TF_STEPS)
