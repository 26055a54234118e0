"""bgshift_tf: background-shift suppression for cross-domain person re-ID.

SBSGAN (soft-mask generation + style transfer) and DA-2S (two-stream re-ID with ISDC modules and an SE
block), after Huang et al., "SBSGAN: Suppression of Inter-Domain Background Shift for Person
Re-Identification", ICCV 2019. See README.md for the architecture and the entry points.
"""

__version__ = "0.1.0"
