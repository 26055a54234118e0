import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from data_fixtures import image_array

from bgshift_tf.data import schema
from bgshift_tf.data.masks import encode_png
from bgshift_tf.data.records import encode_jpeg


def _fields(**overrides):
    mask = np.zeros((32, 16), np.uint8)
    mask[8:24, 4:12] = 255
    fields = {
        "image": encode_jpeg(image_array(3)),
        "mask": encode_png(mask),
        "has_mask": 1,
        "pid": 1501,
        "label": 7,
        "camera": 6,
        "domain": 2,
        "domain_name": "syncuhk",
        "split": "train",
        "filename": "1501_c6s4_001902_02.jpg",
        "height": 32,
        "width": 16,
    }
    fields.update(overrides)
    return fields


def test_round_trip_every_field_bytes_in_equal_bytes_out():
    fields = _fields()
    parsed = schema.parse_example(schema.serialize_example(fields))
    assert sorted(parsed) == sorted(schema.FIELDS)
    for name in schema.BYTES_FIELDS:
        value = fields[name].encode() if isinstance(fields[name], str) else fields[name]
        assert parsed[name].numpy() == value, name
    for name in schema.INT_FIELDS:
        assert parsed[name].dtype == tf.int64 and parsed[name].numpy() == fields[name], name


def test_batch_parse_and_decoders():
    fields = [_fields(), _fields(mask=b"", has_mask=0, label=-1, split="query")]
    parsed = schema.parse_example(tf.constant([schema.serialize_example(f) for f in fields]))
    np.testing.assert_array_equal(parsed["label"].numpy(), [7, -1])
    image = schema.decode_image(parsed["image"][0])
    assert image.dtype == tf.uint8 and image.shape == (32, 16, 3)
    # PIL and TF decode the same JPEG up to chroma-upsampling rounding
    expected = np.asarray(Image.open(io.BytesIO(fields[0]["image"]))).astype(int)
    assert np.abs(image.numpy().astype(int) - expected).max() <= 6
    mask = schema.decode_mask(parsed["mask"][0], parsed["height"][0], parsed["width"][0]).numpy()
    assert mask.shape == (32, 16, 1) and mask.dtype == np.float32
    assert mask.sum() == 16 * 8 and mask[8:24, 4:12].min() == 1.0
    empty = schema.decode_mask(parsed["mask"][1], parsed["height"][1], parsed["width"][1]).numpy()
    assert empty.shape == (32, 16, 1) and empty.max() == 0.0


def test_serialize_errors_name_the_field():
    fields = _fields()
    del fields["camera"]
    with pytest.raises(ValueError, match=r"missing fields \['camera'\]"):
        schema.serialize_example(fields)
    with pytest.raises(ValueError, match=r"unknown fields \['colour'\]"):
        schema.serialize_example(_fields(colour=1))
    with pytest.raises(TypeError, match="'pid'.*'12'"):
        schema.serialize_example(_fields(pid="12"))
    with pytest.raises(TypeError, match="'image'.*int"):
        schema.serialize_example(_fields(image=5))
