"""bgshift_tf.evaluation: ranking metrics, re-ranking, distances, feature extraction, run evaluation."""

from bgshift_tf.evaluation.rank import evaluate_rank

__all__ = ["evaluate_rank"]
