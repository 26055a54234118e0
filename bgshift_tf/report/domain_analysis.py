"""Domain-distance analysis straight from TFRecord folders, drawn and written (what `python -m
bgshift_tf.visualize` runs): `evaluation.domain_distance.measure_tfrecord_dirs` computes it,
`report.tsne.plot_domain_distance` draws it, and this module writes `<out_dir>/domain_distance.{png,json}`.
"""

import json
import os

from bgshift_tf.core import atomic_io
from bgshift_tf.evaluation.domain_distance import measure_tfrecord_dirs
from bgshift_tf.report import figures, tsne


def analyze_tfrecord_dirs(tfrecord_dirs, *, variants, out_dir, **settings) -> dict:
    """Runs the domain-distance analysis and writes `<out_dir>/domain_distance.{png,json}`.

    Args:
      tfrecord_dirs, variants: as for `evaluation.domain_distance.measure_tfrecord_dirs`.
      out_dir: folder of the figure and the JSON (created).
      **settings: the other (keyword-only) arguments of `measure_tfrecord_dirs` (domain_names, split,
        num_per_domain, image_size, feature_size, seed, perplexity, gan_run_dir, reid_run_dir,
        style_target, precision).
    Returns:
      the JSON written (`domain_distance.to_json` of the result plus "features", "split", "tfrecord_dirs",
      "figure" = the PNG path).
    """
    result, summary = measure_tfrecord_dirs(tfrecord_dirs, variants=variants, **settings)
    os.makedirs(out_dir, exist_ok=True)
    figure_path = figures.save_figure(tsne.plot_domain_distance(result), os.path.join(out_dir, "domain_distance.png"))
    summary = {**summary, "figure": figure_path}
    atomic_io.write_text(os.path.join(out_dir, "domain_distance.json"), json.dumps(summary, indent=2))
    return summary
