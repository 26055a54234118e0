"""bgshift_tf.benchmarks."""
