"""One run folder: the resolved domains and trainer settings, and every path inside `<runs_root>/<name>/`.

    world/                        synthetic world (data.synthetic.make_world)
    tfrecords/<domain>/           TFRecord shards (the `original` variant)
    gan<suffix>/                  SBSGAN run (suffix "" = the paper's; "_nosc" = the lambda_sc = 0 ablation;
                                  "_2dom_<target>" = on the source and <target> only)
    generated<suffix>/<folder>/   generated datasets, named by `data.variants.folder_name`:
                                  <domain>_soft_mask, <domain>_hard_mask, <source>_style_transfer_to_<target>
    reid/<model>[_<target>]/      re-ID runs (per-target models: one per target)
    eval/<model>/<domain>.json    evaluations (+ _features/ caches)
    quality.json  domain_distance/  saved_models/
    figures/                      PNGs of the report + figures.json (titles, captions)
    report.html  pipeline_config.json  stages/<stage>.json  timings.json

A seeded layout (`RunLayout(config, seed=k)`, the experiments job's `--seeds`) keeps world/, masks/ and
tfrecords/ in `<runs_root>/<name>/` (one fixed world) and puts everything trained or measured from trained
models in `<runs_root>/<name>/seed_<k>/` (its `run_dir`), with the trainers' `seed` set to k.
"""

import os

from bgshift_tf.core import precision
from bgshift_tf.data import synthetic
from bgshift_tf.data import variants
from bgshift_tf.training import gan_run, reid
from bgshift_tf.workflow import config as config_lib


# A `domain_mask_dirs` entry asking the pipeline to make the masks (`masks` stage, `make_masks`).
AUTO_MASKS = "auto"


def seed_folder(seed) -> str:
    """`seed_<k>`: the folder of training seed k inside the run folder."""
    return f"seed_{int(seed)}"


class RunLayout:
    """Resolved settings (`config`, `domains`, `source`, `targets`, `precision`, `gan`, `reid`) and paths of one
    run (of one training `seed` when given: see the module docstring). `precision` is the dtype policy
    `config["precision"]` resolves to here (`auto` picked once)."""

    def __init__(self, config, seed=None):
        self.config = config
        self.seed = seed
        self.data_dir = os.path.join(config["runs_root"], config["name"])
        self.run_dir = self.data_dir if seed is None else os.path.join(self.data_dir, seed_folder(seed))
        self.world_dir = os.path.join(self.data_dir, "world")
        if config["data"] == "synthetic":
            world = synthetic.resolve_config(config["preset"], **self.world_overrides())
            self.domains = list(world["domains"])
        else:
            self.domains = list(config["domain_names"])
            lengths = {key: len(config[key]) for key in ("domain_names", "domain_datasets", "domain_data_dirs",
                                                         "domain_mask_dirs")}
            if len(set(lengths.values())) != 1 or not self.domains:
                raise ValueError(f"real data needs one entry per domain in each of {sorted(lengths)}. "
                                 f"Received lengths: {lengths}")
        if config["source"] not in self.domains:
            raise ValueError(f"`source` must be one of the domains {self.domains}. "
                             f"Received: source={config['source']!r}")
        self.source = config["source"]
        self.targets = list(config["targets"]) or [d for d in self.domains if d != self.source]
        bad = [t for t in self.targets if t not in self.domains or t == self.source]
        if bad or not self.targets:
            raise ValueError(f"`targets` must be domains other than the source {self.source!r} among "
                             f"{self.domains}. Received: targets={config['targets']}")
        self.target = self.targets[0]
        self.eval_domains = self.targets + [self.source]
        self.precision = precision.resolve(config["precision"])
        self.gan = config_lib.trainer_config(config["gan_flagfile"], config["gan_overrides"],
                                             gan_run.DEFAULT_CONFIG, "gan", precision=self.precision)
        self.reid = config_lib.trainer_config(config["reid_flagfile"], config["reid_overrides"],
                                              reid.DEFAULT_CONFIG, "reid", precision=self.precision)
        if seed is not None:
            self.gan["seed"] = self.reid["seed"] = int(seed)

    def world_overrides(self):
        keys = {"world_num_ids": "num_ids", "world_images_per_id": "images_per_id"}
        return {name: self.config[key] for key, name in keys.items() if self.config[key]}

    def dataset(self, domain):
        """The dataset layout of `domain` (`data.build.DATASETS`); a synthetic world is in the Market-1501 one."""
        if self.config["data"] == "synthetic":
            return "market1501"
        return self.config["domain_datasets"][self.domains.index(domain)]

    def path(self, *parts):
        return os.path.join(self.run_dir, *parts)

    def auto_mask_domains(self):
        """The real-data domains whose `domain_mask_dirs` entry is "auto" (masks made by the `masks` stage)."""
        if self.config["data"] != "real":
            return []
        return [d for d, m in zip(self.domains, self.config["domain_mask_dirs"]) if m == AUTO_MASKS]

    def masks(self, domain):
        """`masks/<domain>`: the body masks the `masks` stage makes for an "auto" domain."""
        return os.path.join(self.data_dir, "masks", domain)

    def tfrecords(self, domain):
        return os.path.join(self.data_dir, "tfrecords", domain)

    def generated_root(self, suffix=""):
        return self.path(f"generated{suffix}")

    def images(self, domain, variant, suffix="", target=None):
        """The TFRecord folder of `variant` images of `domain` (SBSGAN `suffix`; style transfer to `target`,
        default the primary target). `original` is the domain's own TFRecords."""
        if variant == variants.ORIGINAL:
            return self.tfrecords(domain)
        if variant == variants.STYLE_TRANSFER:
            target = target or self.target
        return os.path.join(self.generated_root(suffix), variants.folder_name(domain, variant, target))

    def gan_dir(self, suffix=""):
        return self.path(f"gan{suffix}")

    def gan_config(self, suffix="", domains=None, **changes):
        """The SBSGAN trainer config of this run on `domains` (default all; the domain labels are their
        positions in that list), with `changes` for ablations (e.g. lambda_sc=0)."""
        domains = self.domains if domains is None else domains
        return {**self.gan, **changes, "domain_dirs": [self.tfrecords(d) for d in domains],
                "run_dir": self.gan_dir(suffix), "verbose": self.config["verbose"]}

    def reid_dir(self, key, target=None):
        """`reid/<key>/`, or `reid/<key>_<target>/` for a model trained once per target domain."""
        return self.path("reid", key if target is None else f"{key}_{target}")

    def eval_dir(self, key):
        return self.path("eval", key)

    def figures_dir(self):
        return self.path("figures")

    def figures_index(self):
        """`figures/figures.json`: {section: [{"image": file name, "title", "caption"}]}."""
        return self.path("figures", "figures.json")

    def report(self):
        return self.path("report.html")
