"""Tests for bgshift_tf.data.variants: the one spelling of the image variants and their folder names."""

import pytest

from bgshift_tf.data import variants


def test_folder_names_of_the_generated_variants():
    assert variants.folder_name("synmarket", variants.SOFT_MASK) == "synmarket_soft_mask"
    assert variants.folder_name("synmarket", variants.HARD_MASK) == "synmarket_hard_mask"
    assert variants.folder_name("synmarket", variants.STYLE_TRANSFER, "synduke") == (
        "synmarket_style_transfer_to_synduke")
    assert set(variants.GENERATED) == set(variants.ALL) - {variants.ORIGINAL}


def test_unknown_or_incomplete_variants_fail_loudly():
    with pytest.raises(ValueError, match=r"Received: \['softmask'\]"):
        variants.folder_name("synmarket", "softmask")
    with pytest.raises(ValueError, match="variant='style_transfer', target=None"):
        variants.folder_name("synmarket", variants.STYLE_TRANSFER)
    with pytest.raises(ValueError, match="target='synduke'"):
        variants.folder_name("synmarket", variants.SOFT_MASK, "synduke")
    with pytest.raises(ValueError, match=r"`--variants` must .*Received: \[\]"):
        variants.check([], what="--variants")
    assert variants.check(iter(["original", "hard_mask"])) == ("original", "hard_mask")
