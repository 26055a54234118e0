"""bgshift_tf.core: the bottom layer, shared by every other layer and importing none of them.

It owns what the whole package needs and no layer owns alone: atomic file writes (`atomic_io`), the user
errors and how entry points report them (`errors`), flag checks (`flag_checks`), compute precision
(`precision`), and the re-ID metric every layer measures with: pairwise distances (`distance`) and
CMC / mAP / mINP (`rank`), which training's hold-out early stopping needs as much as evaluation does.
The layers above (pyproject.toml `[tool.importlinter]`, checked by `lint-imports`): entry points /
workflow / report / export / generation | evaluation / training / models / data / core.
"""
