"""Every re-ID model the workflow can train, and the SBSGANs they need: one frozen record each, and the
policies that turn a record into runs: its `train_reid` config (`reid_train_config`, `train_targets`), its
evaluation inputs with the hard-mask fallback and the evaluation protocol (`eval_inputs`, `eval_mode`,
`EVAL_METRICS`), and the rules for which model a run shows: exported (`export_model_key`), in the ranked
lists (`ranked_lists_model_key`), judging identity kept (`IDENTITY_MODEL`).

The stage builders (`workflow.main_job`), the evaluation inputs and the report tables all read these
records; a key that is not here fails loudly (`model`). Adding a model is one `ReidModel` line (plus,
for a new paper row, its entry in `report.paper_results`). `ctx` below is the run's `RunLayout`.

Image inputs use the vocabulary of `data.variants`. Training inputs: IDE one variant, DA-2S one per
stream (`hard_mask` training masks the original records on the fly with their parser masks).
Evaluation inputs, per stream, on each test domain: `original` = the domain's TFRecords, `soft_mask`
= that domain's images through the model's SBSGAN; a `hard_mask` test input falls back to the original
images (with a note) on a domain whose query/gallery records have no masks.
"""

import dataclasses

from bgshift_tf.data import shards
from bgshift_tf.data.variants import HARD_MASK, ORIGINAL, SOFT_MASK, STYLE_TRANSFER


ALL_DOMAINS, SOURCE_AND_TARGET = "all", "source+target"


@dataclasses.dataclass(frozen=True)
class Sbsgan:
    """One trained SBSGAN: `train_gan<suffix>` with `changes` over the run's GAN flagfile, generating
    `variants` into `generated<suffix>/`; `label` names its soft-mask row in the report's image grid.

    `domains`: ALL_DOMAINS (one SBSGAN on the run's K domains) or SOURCE_AND_TARGET (the paper's
    Soft-mask_{2-Domains}: one SBSGAN per target domain on the source and that target only, see
    `per_target`); `target` is set on those per-target records.
    """

    suffix: str
    changes: tuple = ()  # (key, value) pairs
    variants: tuple = (SOFT_MASK, HARD_MASK, STYLE_TRANSFER)
    label: str = ""
    domains: str = ALL_DOMAINS
    target: str = ""

    def per_target(self, targets) -> list:
        """The SBSGANs actually trained: [self] on all domains, or one per target (suffix `<suffix>_<target>`)."""
        if self.domains == ALL_DOMAINS:
            return [self]
        return [dataclasses.replace(self, suffix=f"{self.suffix}_{t}", target=t) for t in targets]

    def on(self, domain):
        """The SBSGAN whose images a model of this SBSGAN uses on `domain` (test domain, or the target a
        per-target model was trained for)."""
        return self if self.domains == ALL_DOMAINS else self.per_target([domain])[0]

    def trained_domains(self, domains, source) -> list:
        """The domains (in run order) this SBSGAN trains on: all of them, or the source and its target."""
        return list(domains) if self.domains == ALL_DOMAINS else [d for d in domains if d in (source, self.target)]


PAPER_SBSGAN = Sbsgan("")
NO_SC_SBSGAN = Sbsgan("_nosc", changes=(("lambda_sc", 0.0),), variants=(SOFT_MASK,), label="w/o L_sc")
TWO_DOMAIN_SBSGAN = Sbsgan("_2dom", variants=(SOFT_MASK,), domains=SOURCE_AND_TARGET)


@dataclasses.dataclass(frozen=True)
class ReidModel:
    """One re-ID model: `train_<key>` / `eval_<key>` stages, `reid/<key>/`, and its report row.

    Attributes:
        key: stage and folder name.
        network: "ide" or "da2s".
        train_variants: training images per stream (IDE: 1, DA-2S: 2), from the source domain.
        eval_variants: test images per stream on every test domain; two equal DA-2S streams mean the
            same image goes to both.
        sbsgan: the SBSGAN whose generated images it trains and tests on.
        table: "table2", "table3" or None (the paper table holding its row).
        name: display name of its row.
        paper_key: its row key in that table of `report.paper_results`.
        use_se / use_isdc / isdc_se: DA-2S blocks (None for IDE; isdc_se: an SE block on every ISDC output).
    """

    key: str
    network: str
    train_variants: tuple
    eval_variants: tuple
    table: str | None
    name: str
    paper_key: str
    sbsgan: Sbsgan = PAPER_SBSGAN
    use_se: bool | None = None
    use_isdc: bool | None = None
    isdc_se: bool | None = None

    def per_target(self):
        """True when the model is trained once per target domain (its SBSGAN's `domains` is SOURCE_AND_TARGET):
        `train_<key>_<target>` in `reid/<key>_<target>/`, tested on that target only."""
        return self.sbsgan.domains != ALL_DOMAINS

    def generated_variants(self):
        """The generated (non-original, non-hard-mask-training) variants its training reads."""
        return tuple(v for v in self.train_variants if v not in (ORIGINAL, HARD_MASK))


_SOFT_STYLE, _ORIG_SOFT = (SOFT_MASK, STYLE_TRANSFER), (ORIGINAL, SOFT_MASK)

MODELS = (
    ReidModel("ide_original", "ide", (ORIGINAL,), (ORIGINAL,), "table2", "Original", "original"),
    ReidModel("ide_hardmask", "ide", (HARD_MASK,), (HARD_MASK,), "table2", "Hard mask (noisy parser masks)",
              "hard_mask_jppnet"),
    ReidModel("ide_style", "ide", (STYLE_TRANSFER,), (ORIGINAL,), "table2",
              "Style-transferred (SBSGAN style branch)", "style_stargan"),
    ReidModel("ide_softmask_nosc", "ide", (SOFT_MASK,), (SOFT_MASK,), "table2", "Soft-mask w/o L_sc",
              "soft_mask_wo_sc", sbsgan=NO_SC_SBSGAN),
    ReidModel("ide_softmask", "ide", (SOFT_MASK,), (SOFT_MASK,), "table2", "Soft-mask", "soft_mask"),
    ReidModel("ide_softmask_2dom", "ide", (SOFT_MASK,), (SOFT_MASK,), "table2",
              "Soft-mask (SBSGAN on the source and the target only)", "soft_mask_2domains",
              sbsgan=TWO_DOMAIN_SBSGAN),
    ReidModel("da2s_base", "da2s", _SOFT_STYLE, _ORIG_SOFT, "table3", "Baseline (2 streams, no SE, no ISDC)",
              "baseline", use_se=False, use_isdc=False),
    ReidModel("da2s_se", "da2s", _SOFT_STYLE, _ORIG_SOFT, "table3", "Baseline + SE block", "baseline_se",
              use_se=True, use_isdc=False),
    ReidModel("da2s_isdcse", "da2s", _SOFT_STYLE, _ORIG_SOFT, "table3", "Baseline + SE + ISDC-SE",
              "baseline_se_isdc_se", use_se=True, use_isdc=True, isdc_se=True),
    ReidModel("da2s", "da2s", _SOFT_STYLE, _ORIG_SOFT, "table3", "Baseline + SE + ISDC (DA-2S)", "da2s",
              use_se=True, use_isdc=True),
    ReidModel("da2s_2style", "da2s", (STYLE_TRANSFER, STYLE_TRANSFER), (ORIGINAL, ORIGINAL), "table3",
              "DA-2S† (2 × style-transferred)", "da2s_2style", use_se=True, use_isdc=True),
    ReidModel("da2s_2soft", "da2s", (SOFT_MASK, SOFT_MASK), (SOFT_MASK, SOFT_MASK), "table3",
              "DA-2S‡ (2 × soft-mask)", "da2s_2soft", use_se=True, use_isdc=True),
)
_BY_KEY = {spec.key: spec for spec in MODELS}


def model(key) -> ReidModel:
    """The record of model `key`, or ValueError naming it and the known keys."""
    if key not in _BY_KEY:
        raise ValueError(f"unknown re-ID model key {key!r}; known: {sorted(_BY_KEY)} (workflow/model_table.py)")
    return _BY_KEY[key]


def table_keys(table) -> tuple:
    """Keys of the models in paper table `table` ("table2" | "table3"), in row order."""
    return tuple(spec.key for spec in MODELS if spec.table == table)


def main_model_keys(ide_variants, da2s) -> list:
    """Keys the main job trains: the IDE trained on each of `ide_variants` with the paper's SBSGAN, then
    DA-2S when `da2s`; in table order."""
    return [spec.key for spec in MODELS
            if (spec.network == "ide" and spec.sbsgan == PAPER_SBSGAN and spec.train_variants[0] in ide_variants)
            or (da2s and spec.key == "da2s")]


def ordered(keys) -> list:
    """`keys` (each checked) without repeats, in table order."""
    wanted = {model(key).key for key in keys}
    return [spec.key for spec in MODELS if spec.key in wanted]


def sbsgans(keys, targets) -> list:
    """The SBSGANs models `keys` need on target domains `targets` (per-target ones once per target), the
    paper's first."""
    needed = [PAPER_SBSGAN] + [model(key).sbsgan for key in keys]
    return [trained for sbsgan in dict.fromkeys(needed) for trained in sbsgan.per_target(targets)]


# === From a record to its runs ===

# The re-ID model whose features judge "identity kept" by the style transfers: the IDE trained on the source's
# original images, which has seen neither the generator's images nor the target domains.
IDENTITY_MODEL = "ide_original"

EVAL_METRICS = ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP", "bootstrap_ci", "num_valid_queries",
                "num_queries", "convention")


def hardmask_available(ctx, domain):
    """True when the hard-mask folder of `domain` holds query and gallery (every record had a mask)."""
    try:
        splits = shards.read_manifest(ctx.images(domain, HARD_MASK))["splits"]
    except FileNotFoundError:
        return False
    return all(split in splits for split in ("query", "gallery"))


def train_targets(ctx, key):
    """The targets model `key` is trained for: [None] (one model for all), or each target (per-target model)."""
    return list(ctx.targets) if model(key).per_target() else [None]


def reid_train_config(ctx, key, target=None):
    """The `train_reid` config of model `key` (its record; `target` for a per-target model): its network
    and training folders."""
    spec = model(key)
    suffix = spec.sbsgan.on(target).suffix
    folders = [ctx.tfrecords(ctx.source) if v == HARD_MASK else ctx.images(ctx.source, v, suffix)
               for v in spec.train_variants]
    config = {**ctx.reid, "model": spec.network, "run_dir": ctx.reid_dir(key, target),
              "verbose": ctx.config["verbose"]}
    if spec.network == "ide":
        return {**config, "train_dir": folders[0], "hard_mask": spec.train_variants[0] == HARD_MASK,
                "stream1_dir": "", "stream2_dir": ""}
    return {**config, "stream1_dir": folders[0], "stream2_dir": folders[1], "train_dir": "", "hard_mask": False,
            "use_se": spec.use_se, "use_isdc": spec.use_isdc, "isdc_se": bool(spec.isdc_se)}


def eval_inputs(ctx, key, domain):
    """(stream-1 folder, stream-2 folder or None, both-streams-same-input flag, note) of model `key` on
    `domain`, from its `eval_variants`."""
    spec = model(key)
    folders, notes = [], []
    for variant in spec.eval_variants:
        if variant == HARD_MASK and not hardmask_available(ctx, domain):
            folders.append(ctx.tfrecords(domain))
            notes.append(f"{domain}: no masks on query/gallery, tested on original images")
        else:
            folders.append(ctx.images(domain, variant, spec.sbsgan.on(domain).suffix))
    same_input = len(folders) == 2 and folders[0] == folders[1]
    second = folders[1] if len(folders) == 2 and not same_input else None
    return folders[0], second, same_input, "; ".join(notes)


def eval_mode(ctx, domain):
    """`evaluate_rank`'s mode on `domain`: single-gallery-shot CMC on CUHK03 classic (query = gallery, the
    paper's protocol; split 0 as built by the tfrecords stage), else the standard one."""
    return "cuhk03_sgs" if ctx.dataset(domain) == "cuhk03_classic" else "standard"


def export_model_key(model_keys):
    """The re-ID model exported for serving: DA-2S when trained, else the soft-mask IDE, else the first."""
    return next((key for key in ("da2s", "ide_softmask") if key in model_keys), model_keys[0])


def ranked_lists_model_key(model_keys):
    """The re-ID model of the report's ranked lists: DA-2S when trained, else the first."""
    return "da2s" if "da2s" in model_keys else model_keys[0]


def identity_model_key(model_keys):
    """`IDENTITY_MODEL` when among `model_keys`, else None (identity kept is then not measured)."""
    return IDENTITY_MODEL if IDENTITY_MODEL in model_keys else None
