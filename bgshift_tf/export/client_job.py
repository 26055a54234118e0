"""The serving client's command-line job (`python -m bgshift_tf.serving_client`): image files -> a served
signature (`client.RestClient` or `client.GrpcClient`) -> PNG files or a features array, and the image-file
helpers it reads and writes with (PIL only here).
"""

import glob
import io
import os
import pathlib

import numpy as np

from bgshift_tf.core import atomic_io, errors
from bgshift_tf.export.client import GENERATOR_OUTPUT, SIGNATURES, GrpcClient, RestClient


def load_images(paths, size=None):
    """Image files -> uint8 [N, H, W, 3] (RGB); `size` (h, w) resizes each (needed when sizes differ)."""
    from PIL import Image

    arrays = []
    for path in paths:
        try:
            with Image.open(path) as image:
                image = image.convert("RGB")
        except OSError as error:
            raise errors.DataError(f"image {path!r} cannot be decoded: {error}") from None
        if size is not None:
            image = image.resize((size[1], size[0]), Image.BILINEAR)
        arrays.append(np.asarray(image, dtype=np.uint8))
    if len({a.shape for a in arrays}) > 1:
        raise errors.ArgumentError(f"Images differ in size ({sorted({a.shape for a in arrays})}); pass a size to "
                                   "resize them, or send the encoded files with a *_jpeg signature.")
    return np.stack(arrays)


def expand_image_paths(patterns):
    """Comma-separated or list of files/globs -> sorted, de-duplicated file list (ValueError if empty)."""
    if isinstance(patterns, str):
        patterns = [p for p in patterns.split(",") if p]
    paths = sorted({path for pattern in patterns for path in (glob.glob(pattern) or [pattern])})
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing or not paths:
        raise errors.ArgumentError(f"No image files found for {patterns!r} (missing: {missing})")
    return paths


def save_pngs(images, out_dir, names):
    """Writes uint8 [N, H, W, 3] as `<out_dir>/<name>.png` (atomically); returns the paths."""
    from PIL import Image

    return [atomic_io.atomic_write(os.path.join(out_dir, f"{name}.png"),
                                   lambda tmp, image=image: Image.fromarray(image).save(tmp, format="PNG"))
            for image, name in zip(images, names)]


def run_client(server, model_name, signature, image_patterns, out_dir, *, protocol="rest", version=None,
               target_domain=None, timeout=30.0, image_size=None):
    """Sends image files to a served signature and writes the results.

    Generator signatures write `<out_dir>/<image stem>.png`; embed signatures write `<out_dir>/features.npy`
    (float32 [N, D]) and `<out_dir>/features_files.txt` (the image order).

    Args:
        server: REST base URL ("http://host:8501") or gRPC "host:8500".
        model_name, version: the served model.
        signature: one of SIGNATURES.
        image_patterns: files/globs (list or comma-separated).
        out_dir: output folder.
        protocol: "rest" or "grpc".
        target_domain: for style_transfer, one domain index for every image.
        image_size: (h, w) to resize files to before sending pixel signatures (None: all files same size).

    Returns:
        The written paths.
    """
    if signature not in SIGNATURES:
        raise errors.ArgumentError(
            f"`signature` must be one of {sorted(SIGNATURES)}. Received: signature={signature!r}")
    if protocol not in ("rest", "grpc"):
        raise errors.ArgumentError(f"`protocol` must be 'rest' or 'grpc'. Received: protocol={protocol!r}")
    client = (RestClient(server, model_name, version, timeout) if protocol == "rest"
              else GrpcClient(server, model_name, version, timeout))
    paths = expand_image_paths(image_patterns)
    kind, output = SIGNATURES[signature]
    if kind == "bytes":
        result = getattr(client, signature)([pathlib.Path(path).read_bytes() for path in paths])
    elif signature == "style_transfer":
        if target_domain is None:
            raise errors.ArgumentError("signature 'style_transfer' needs --target_domain.")
        images = load_images(paths, image_size)
        result = client.style_transfer(images, np.full([len(images)], target_domain, np.int32))
    else:
        result = getattr(client, signature)(load_images(paths, image_size))
    stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    if output == GENERATOR_OUTPUT:
        return save_pngs(result, out_dir, stems)
    features_path = os.path.join(out_dir, "features.npy")
    atomic_io.write_bytes(features_path, _npy_bytes(result))
    return [features_path, atomic_io.write_text(os.path.join(out_dir, "features_files.txt"), "\n".join(paths) + "\n")]


def _npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()
