"""Colours of the synthetic world: the clothing-colour distribution and float <-> PIL conversions.

Colours are RGB float triples in [0, 1]; PIL drawing takes int triples in 0..255 (`rgb`).
"""

import numpy as np


def sample_colour(rng, neutral_prob=0.4):
    """A clothing colour, RGB floats in [0, 1]: neutral (black..white) or saturated."""
    if rng.random() < neutral_prob:
        v = rng.choice([rng.uniform(0.08, 0.25), rng.uniform(0.35, 0.65), rng.uniform(0.8, 0.95)])
        return np.clip(v + rng.normal(0, 0.02, 3), 0, 1)
    hue, sat, val = rng.random(), rng.uniform(0.4, 0.9), rng.uniform(0.3, 0.9)
    return hsv_to_rgb(hue, sat, val)


def hsv_to_rgb(h, s, v):
    """RGB float array [3] of a colour given as hue, saturation, value, each in [0, 1]."""
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


def rgb(colour):
    """The PIL fill (int triple in 0..255) of an RGB float colour, clipped to [0, 1]."""
    return tuple((np.clip(colour, 0, 1) * 255 + 0.5).astype(int).tolist())


def jitter(rng, colour, amount=0.04):
    """`colour` with Gaussian noise of std `amount` per channel, clipped to [0, 1]."""
    return np.clip(np.asarray(colour) + rng.normal(0, amount, 3), 0, 1)


def to_float(image):
    """float32 [H, W, 3] in [0, 1] of a PIL RGB image."""
    return np.asarray(image, dtype=np.float32) / 255.0
