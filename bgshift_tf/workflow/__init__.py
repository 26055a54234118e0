"""bgshift_tf.workflow: the stage runner and the jobs built on it (main job, experiments)."""
