"""Sends images to the exported models behind TF Serving (REST or gRPC) and writes the results.

Usage (server started as in README "Serving"):
    python -m bgshift_tf.serving_client --server=http://localhost:8501 --model=sbsgan_generator \
        --signature=soft_mask_jpeg --images='data_synthetic/synmarket/query/*.jpg' --out_dir=runs/served_masks
    python -m bgshift_tf.serving_client --server=http://localhost:8501 --model=da2s_embedder \
        --signature=embed --images=a.jpg,b.jpg --image_size=64,32 --out_dir=runs/served_features
    python -m bgshift_tf.serving_client --protocol=grpc --server=localhost:8500 --model=sbsgan_generator \
        --signature=style_transfer --target_domain=1 --images='q/*.jpg' --out_dir=runs/styled

Generator signatures write one PNG per image; embed signatures write features.npy (+ features_files.txt).
"""

from absl import flags

from bgshift_tf.core import errors, flag_checks
from bgshift_tf.export import client, client_job

_SERVER = flags.DEFINE_string("server", "http://localhost:8501", "REST base URL, or host:port for gRPC.")
_PROTOCOL = flags.DEFINE_enum("protocol", "rest", ["rest", "grpc"], "TF Serving API to use.")
_MODEL = flags.DEFINE_string("model", "sbsgan_generator", "Served model name.")
_VERSION = flags.DEFINE_integer("version", None, "Model version; default: the server's latest.",
                                   lower_bound=1)
_SIGNATURE = flags.DEFINE_enum("signature", "soft_mask", sorted(client.SIGNATURES), "Signature to call.")
_IMAGES = flags.DEFINE_string("images", None, "Image files or globs, comma-separated.", required=True)
_OUT_DIR = flags.DEFINE_string("out_dir", None, "Where to write PNGs / features.npy.", required=True)
_TARGET_DOMAIN = flags.DEFINE_integer("target_domain", None, "style_transfer: target domain index.",
                                         lower_bound=0)
_IMAGE_SIZE = flags.DEFINE_list("image_size", None, "H,W to resize files to before sending pixels.")
_TIMEOUT = flags.DEFINE_float("timeout", 30.0, "Seconds per request.")
flag_checks.in_range("timeout", lower=0, lower_open=True)
flag_checks.input_path("images", patterns=True)
flag_checks.output_dir("out_dir")
flags.register_validator("image_size", lambda values: values is None or (
    len(values) == 2 and all(v.isdigit() and int(v) > 0 for v in values)), "must be H,W: two positive integers, e.g. 64,32")


def main(argv):
    del argv
    paths = client_job.run_client(
        _SERVER.value, _MODEL.value, _SIGNATURE.value, _IMAGES.value, _OUT_DIR.value,
        protocol=_PROTOCOL.value, version=_VERSION.value, target_domain=_TARGET_DOMAIN.value,
        timeout=_TIMEOUT.value, image_size=tuple(int(v) for v in _IMAGE_SIZE.value) if _IMAGE_SIZE.value else None,
    )
    print(f"wrote {len(paths)} files to {_OUT_DIR.value}")


if __name__ == "__main__":
    errors.run(main, "serving_client")
