from bgshift_tf.benchmarks import input_pipeline


def test_quick_benchmark_reports_positive_rates_for_every_case():
    result = input_pipeline.run(quick=True)
    cases = ("train_256x128", "train_128x64_to_256x128", "train_with_masks", "eval_256x128")
    for case in cases:
        assert result[f"{case}_images_per_second"] > 0
        assert result[f"{case}_images_per_cpu_second"] > 0
    assert result["image_size"] == [256, 128] and result["quick"] is True
