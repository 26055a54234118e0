"""The image variants: one spelling of each, used by generation, analysis, flags, folder names and the report.

    original        the camera image as recorded
    hard_mask       image x parser mask: black background, and black wherever the parser missed the body
    soft_mask       SBSGAN's soft-mask branch G(x, D-bar): background suppressed, the whole person kept
    style_transfer  SBSGAN's style branch G(x, D_k): the image in the style of domain k

Generated datasets live in `<root>/<domain>_<variant>` (`<domain>_style_transfer_to_<target>` for style
transfer, which needs a target domain); see `folder_name`.
"""

ORIGINAL = "original"
HARD_MASK = "hard_mask"
SOFT_MASK = "soft_mask"
STYLE_TRANSFER = "style_transfer"

ALL = (ORIGINAL, HARD_MASK, SOFT_MASK, STYLE_TRANSFER)
# The variants `generation.translate` writes (the original is the TFRecord folder itself).
GENERATED = (SOFT_MASK, STYLE_TRANSFER, HARD_MASK)


def check(variants, *, allowed=ALL, what="variants"):
    """`variants` as a tuple, or ValueError naming `what` (a flag or argument) and the bad names."""
    variants = tuple(variants)
    bad = [v for v in variants if v not in allowed]
    if bad or not variants:
        raise ValueError(f"`{what}` must be a non-empty subset of {list(allowed)}. Received: {list(variants)}")
    return variants


def folder_name(domain, variant, target=None):
    """`<domain>_<variant>`, or `<domain>_style_transfer_to_<target>`: the folder of a generated dataset."""
    check([variant], allowed=GENERATED, what="variant")
    if (variant == STYLE_TRANSFER) != (target is not None):
        raise ValueError(f"a target domain goes with style_transfer only. Received: variant={variant!r}, "
                         f"target={target!r}")
    return f"{domain}_{variant}" + (f"_to_{target}" if target is not None else "")
