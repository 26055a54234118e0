"""Tiny, freshly initialised models and exports shared by the deployment tests (test_export, test_tflite,
test_onnx, test_serving_client, test_search_endpoint), and the JSON POST the server tests send."""

import json
import os
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request

import numpy as np

GENERATOR_SIZE = (32, 16)
REID_SIZE = (64, 32)
NUM_DOMAINS = 3
VENV_BIN = os.path.dirname(sys.executable)


def tiny_generator():
    from bgshift_tf.models.generator import Generator

    # The soft-mask branch of configs/gan_demo.flags: nearest upsampling (concat/reshape, which TFLite's XNNPACK
    # delegate takes whole: test_tflite's single-partition checks) and an attention-mask output.
    return Generator(num_domains=NUM_DOMAINS, image_size=GENERATOR_SIZE, base_filters=8, num_res_blocks=1,
                     upsample="nearest", attention="soft_mask")


def tiny_da2s():
    from bgshift_tf.models.reid import DA2S

    model = DA2S(num_classes=5, backbone="densenet_small", input_shape=(*REID_SIZE, 3))
    return model


def tiny_ide():
    from bgshift_tf.models.reid import IDE

    return IDE(num_classes=5, backbone="densenet_small", input_shape=(*REID_SIZE, 3))


def random_images(size, count=3, seed=0):
    """uint8 [count, H, W, 3] seeded random pixels."""
    return np.random.default_rng(seed).integers(0, 256, size=(count, *size, 3), dtype=np.uint8)


def run_fresh_python(script, timeout=240, pythonpath=""):
    """Runs `script` in a new interpreter (no bgshift_tf import unless `pythonpath` points at the package);
    returns stdout. Fails with stderr shown."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": pythonpath}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                            timeout=timeout, env=env, cwd="/")
    assert result.returncode == 0, f"fresh process failed:\n{result.stderr[-4000:]}"
    return result.stdout


def post_json(url, body, timeout=60):
    """POSTs `body` as JSON to `url`; returns (HTTP status, parsed JSON answer), error statuses included."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
