"""TensorBoard summaries of a training run: written with core TF ops, read back as numpy.

- `write_scalar(tag, value, step)`, `write_images(tag, images, step)`: summaries on the default writer.
  `tf.summary.scalar` / `tf.summary.image` live in the tensorboard package, which is not a dependency: we
  write the same records (tensor + plugin metadata) with the core op `tf.summary.write`, so TensorBoard
  shows them as scalars and images.
- `read_scalars(logdir) -> {tag: (steps, values)}`: every scalar under a run's `logs/` (what the report's
  loss curves plot).
"""

import os

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2
from tensorflow.core.util import event_pb2


def _plugin_metadata(plugin_name):
    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = plugin_name
    return metadata.SerializeToString()


_SCALAR_METADATA = _plugin_metadata("scalars")
_IMAGE_METADATA = _plugin_metadata("images")


def write_scalar(tag, value, step):
    """Writes a TensorBoard scalar to the default summary writer."""
    tf.summary.write(tag, tf.constant(value, tf.float32), step=step, metadata=_SCALAR_METADATA)


def write_images(tag, images, step):
    """Writes images float32 in [-1, 1], [H,W,C] or [N,H,W,C] (C = 1 or 3), as a TensorBoard image summary."""
    images = tf.convert_to_tensor(images, tf.float32)
    if images.shape.rank == 3:
        images = images[None]
    if images.shape.rank != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"image summary '{tag}' needs [H,W,C] or [N,H,W,C] with C in (1, 3). "
                         f"Received: shape={images.shape}")
    pixels = tf.image.convert_image_dtype(tf.clip_by_value((images + 1.0) / 2.0, 0.0, 1.0), tf.uint8, saturate=True)
    # TensorBoard's image format: [width, height, png_1, ..., png_N] as strings.
    encoded = [tf.as_string(tf.shape(pixels)[2]), tf.as_string(tf.shape(pixels)[1])]
    encoded += [tf.io.encode_png(image) for image in pixels]
    tf.summary.write(tag, tf.stack(encoded), step=step, metadata=_IMAGE_METADATA)


def _scalar_value(value):
    """The float of a summary value (TF1 `simple_value` or a float tensor of one element), else None."""
    kind = value.WhichOneof("value")
    if kind == "simple_value":
        return float(value.simple_value)
    if kind == "tensor" and value.tensor.dtype in (tf.float32.as_datatype_enum, tf.float64.as_datatype_enum):
        array = tf.make_ndarray(value.tensor)
        if array.size == 1:
            return float(array.reshape(()))
    return None


def read_scalars(logdir) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Reads every scalar from the TensorBoard event files under a run's `logs/` folder.

    Handles TF2 `tf.summary.scalar` (tensor values) and TF1 `simple_value`s. Files in sub-folders get
    their folder as a tag prefix (`logs/eval/events...` -> "eval/<tag>"). If a step was written twice
    (a resumed run), the later write wins.

    Args:
      logdir: folder searched recursively for `events.out.tfevents.*` files.
    Returns:
      {tag: (steps int64 `[T]` ascending, values float64 `[T]`)}; empty if there are no event files.
    Raises:
      FileNotFoundError: `logdir` does not exist.
    """
    logdir = os.fspath(logdir)
    if not os.path.isdir(logdir):
        raise FileNotFoundError(f"TensorBoard log folder not found: {logdir!r}")
    points: dict[str, dict[int, tuple[float, float]]] = {}
    for folder, _, files in sorted(os.walk(logdir)):
        prefix = os.path.relpath(folder, logdir)
        prefix = "" if prefix == "." else prefix.replace(os.sep, "/") + "/"
        for file_name in sorted(f for f in files if f.startswith("events.out.tfevents")):
            for record in tf.data.TFRecordDataset(os.path.join(folder, file_name)):
                event = event_pb2.Event.FromString(record.numpy())
                for value in event.summary.value:
                    number = _scalar_value(value)
                    if number is None:
                        continue
                    series = points.setdefault(prefix + value.tag, {})
                    previous = series.get(event.step)
                    if previous is None or event.wall_time >= previous[0]:
                        series[event.step] = (event.wall_time, number)
    result = {}
    for tag, series in sorted(points.items()):
        steps = np.array(sorted(series), dtype=np.int64)
        result[tag] = (steps, np.array([series[s][1] for s in steps], dtype=np.float64))
    return result
