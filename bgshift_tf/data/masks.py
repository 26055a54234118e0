"""Body masks brought by the user: binary PNGs (0/255 or 0/1) or LIP-style parsing label maps.

A mask folder mirrors the image folder: `<mask_dir>/<split folder>/<image stem>.png`. Every accepted
format becomes the same thing: a single-channel uint8 PNG with values {0, 255} (0 = background), the
same height and width as its image. Label maps: 0 = background, any other label = body (LIP's 19
part labels all count as body, since SBSGAN only needs foreground vs background).

How a PNG's pixels are read, by PIL mode (`mask_array`):
    1, L, P, I, I;16   one value per pixel: the value itself (P: the palette INDEX, not its colour),
                       so a LIP label map saved with a palette keeps its labels.
    RGB                a colour label map: body where ANY channel is non-zero (body in blue = 2 counts).
    RGBA, LA           the alpha is the mask when the colour channels are constant over the image (a
                       cut-out saved with transparency); otherwise the colour rule above, alpha ignored.
    anything else      (CMYK, float, 16-bit colour, ...) rejected with a MaskError naming the file.
"""

import io
import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from bgshift_tf.core import errors


class MaskError(errors.DataError):
    """A mask file that is missing, unreadable or the wrong size; the message names the file."""


def binarize(mask: np.ndarray) -> np.ndarray:
    """Maps any accepted mask array to uint8 {0, 255}.

    Args:
        mask: [H, W] (binary 0/1, binary 0/255 or label map) or [H, W, C] (palette/RGB saved maps:
            a pixel is body when any channel is non-zero).
    Returns:
        uint8 [H, W] with 0 = background, 255 = body.
    """
    mask = np.asarray(mask)
    if mask.ndim == 3:
        mask = mask.any(axis=-1)
    return np.where(mask != 0, 255, 0).astype(np.uint8)


_SINGLE_CHANNEL_MODES = ("1", "L", "P", "I", "I;16")
_COLOUR_MODES = {"RGB": 3, "RGBA": 3, "LA": 1}  # mode -> number of colour channels before any alpha


def mask_array(image: Image.Image, mask_path: str) -> np.ndarray:
    """The label array of an opened mask PNG following the module docstring's rule: [H, W] or [H, W, C].

    Raises:
        MaskError naming `mask_path` when the mode has no rule.
    """
    if image.mode in _SINGLE_CHANNEL_MODES:
        return np.asarray(image)
    if image.mode not in _COLOUR_MODES:
        raise MaskError(
            f"mask file {mask_path!r} has PIL mode {image.mode!r}; masks must be one of "
            f"{[*_SINGLE_CHANNEL_MODES, *_COLOUR_MODES]} (save it as a grayscale 0/255 PNG)"
        )
    array = np.asarray(image)
    colours = array[..., : _COLOUR_MODES[image.mode]]
    if array.shape[-1] > colours.shape[-1] and (colours == colours.reshape(-1, colours.shape[-1])[0]).all():
        return array[..., -1]
    return colours


def encode_png(mask: np.ndarray) -> bytes:
    """uint8 [H, W] -> PNG bytes (grayscale)."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(mask, dtype=np.uint8)).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def load_mask_png(mask_path, image_size: tuple[int, int]) -> bytes:
    """Reads one mask and returns it as binary 0/255 PNG bytes.

    Args:
        mask_path: the mask PNG.
        image_size: (height, width) of the image the mask belongs to.
    Raises:
        MaskError naming the file when it is missing, unreadable or not `image_size`.
    """
    mask_path = os.fspath(mask_path)
    if not os.path.isfile(mask_path):
        raise MaskError(
            f"mask file {mask_path!r} is missing (masks mirror the image folders: <mask_dir>/<split folder>/<stem>.png)"
        )
    try:
        with Image.open(mask_path) as image:
            image.load()  # decode every pixel now: a truncated file fails here, naming the file
            array = mask_array(image, mask_path)
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise MaskError(f"mask file {mask_path!r} cannot be read as an image: {error}") from None
    if array.shape[:2] != tuple(image_size):
        raise MaskError(
            f"mask file {mask_path!r} has size (height, width)={array.shape[:2]} but its image has "
            f"{tuple(image_size)}"
        )
    return encode_png(binarize(array))
