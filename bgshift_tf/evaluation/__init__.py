"""bgshift_tf.evaluation: feature extraction, re-ranking, gallery search, run evaluation, statistics, the
study's claims and the domain-distance analysis (the metric itself, CMC / mAP, is `core.rank`)."""
