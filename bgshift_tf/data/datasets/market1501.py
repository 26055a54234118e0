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

from bgshift_tf.data.datasets.layout import folder_loader

FILE_NAME = re.compile(r"(?P<pid>-1|\d{4})_c(?P<camera>\d)s\d+_\d+_\d+\.jpg")


load = folder_loader("market1501", FILE_NAME, "Market-1501")
