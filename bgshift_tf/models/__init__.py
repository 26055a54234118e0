"""bgshift_tf.models."""
