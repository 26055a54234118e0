"""The SBSGAN step profile's reading of op events (benchmarks/gan_profile.py)."""

import pytest

from bgshift_tf.benchmarks import gan_profile


def test_op_type_reads_the_op_from_an_event_and_skips_executor_events():
    assert gan_profile._op_type("d/down3_conv/BiasAdd:_MklNativeFusedConv2D") == "FusedConv2D"
    assert gan_profile._op_type("gradient_tape/g/up1/Conv2DBackpropInput:Conv2DBackpropInput") == "Conv2DBackpropInput"
    assert gan_profile._op_type("ExecutorState::Process") is None
    assert gan_profile._op_type("MemoryAllocation") is None


def test_classify_gives_shares_of_the_summed_op_time():
    times = {"FusedConv2D": (300.0, 3), "Conv2DBackpropFilterWithBias": (500.0, 2), "Mean": (150.0, 9),
             "SomethingNew": (50.0, 1)}
    shares, total_ms = gan_profile.classify(times)
    assert total_ms == pytest.approx(1.0)
    assert shares["conv backward (filter)"] == pytest.approx(0.5)
    assert shares["conv forward"] == pytest.approx(0.3)
    assert shares["elementwise + moments (instance norm, GP)"] == pytest.approx(0.15)
    assert shares["other"] == pytest.approx(0.05)
    assert list(shares)[0] == "conv backward (filter)"  # largest first


def test_profile_of_a_tiny_step_splits_its_op_time_and_times_untraced_calls(monkeypatch):
    from bgshift_tf.benchmarks import gan as gan_bench

    monkeypatch.setitem(gan_bench.SETTINGS, "quick", gan_bench.QUICK_SETTING)
    result = gan_profile.profile("quick", "d_step", "nearest", steps=1, timed_steps=2)
    assert sum(result["class_shares"].values()) == pytest.approx(1.0, abs=0.01)
    # A D step is convolutions and their gradients (the gradient penalty differentiates them twice).
    assert result["class_shares"]["conv forward"] > 0 and result["class_shares"]["conv backward (filter)"] > 0
    assert 0 < result["untraced_fastest_ms_per_step"] and result["timed_steps"] == 2
    assert {"intra_op", "inter_op"} == set(result["threads"]) and "(" in result["cpu"]
    assert all(row["count_per_step"] >= 1 for row in result["top_ops"])
