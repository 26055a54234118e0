"""Market-1501.

Reference:
    Zheng et al. Scalable Person Re-identification: A Benchmark. ICCV 2015.

Statistics (Market-1501-v15.09.15):
    train: 751 ids / 12,936 images; query: 750 ids / 3,368 images; gallery: 19,732 images on disk
    (750 ids + distractors pid 0000 + junk pid -1); 6 cameras.

Layout: `bounding_box_train/`, `bounding_box_test/`, `query/`; file names `0002_c1s1_000451_03.jpg`
= pid 0002, camera 1, sequence 1, frame 000451, box 03. pid -1 (junk) is dropped everywhere; pid 0000
(distractors) stays in the gallery only. The synthetic world writes every domain in this layout.
"""

import re

from bgshift_tf.data.datasets.layout import load_folders
from bgshift_tf.data.records import DatasetSplits

FILE_NAME = re.compile(r"(?P<pid>-1|\d{4})_c(?P<camera>\d)s\d+_\d+_\d+\.jpg")


def load(
    data_dir, mask_dir=None, domain: int = 0, domain_name: str = "market1501", *, skip_bad_names=False
) -> DatasetSplits:
    """Lists Market-1501 at `data_dir` (see module docstring); train labels relabelled 0..N-1."""
    return load_folders(
        data_dir,
        dataset="market1501",
        pattern=FILE_NAME,
        mask_dir=mask_dir,
        domain=domain,
        domain_name=domain_name,
        skip_bad_names=skip_bad_names,
    )
