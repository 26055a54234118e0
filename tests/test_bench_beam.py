"""The bench's `beam` section (benchmarks/beam.py): the Beam feature job timed against the single-process path."""

import pytest

from bgshift_tf.benchmarks import beam as beam_bench
from bgshift_tf.export import beam_jobs

pytestmark = pytest.mark.slow  # Beam pipelines and a SavedModel export: 66 s for both beside the study


def test_quick_section_times_both_paths_on_the_same_images():
    result = beam_bench.run(quick=True)
    assert result["num_images"] == 64 and result["image_size"] == [128, 64]
    single = result["single_process_images_per_second"]
    assert single > 0
    case = next(iter(beam_bench.BEAM_CASES))  # quick: the first case only
    rate = result[f"{case}_images_per_second"]
    assert rate > 0 and result[f"{case}_ratio"] == pytest.approx(rate / single, rel=0.01)


def test_a_beam_job_that_loses_records_is_an_error_not_a_rate(monkeypatch):
    real = beam_jobs.run_job

    def lossy(*args, **kwargs):
        manifest = real(*args, **kwargs)
        manifest["splits"]["train"]["num_examples"] -= 1
        return manifest

    monkeypatch.setattr(beam_jobs, "run_job", lossy)
    with pytest.raises(RuntimeError, match="beam_direct wrote 63 feature records for 64 images"):
        beam_bench.run(quick=True)
