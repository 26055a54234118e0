"""The three-folder layout shared by Market-1501, DukeMTMC-reID and CUHK03-NP.

```
<data_dir>/bounding_box_train/<image>   -> split "train"
<data_dir>/bounding_box_test/<image>    -> split "gallery"
<data_dir>/query/<image>                -> split "query"
<mask_dir>/<same folder>/<image stem>.png   (optional body masks, mirroring the image folders)
```
Each dataset module supplies only its file-name pattern. Rules applied to every dataset:
- pid -1 is junk (Market-1501): dropped from every split.
- pid 0 is a distractor (Market-1501): kept in the gallery only, never in train or query.
- Files without an image extension (e.g. `Thumbs.db`) are ignored; an image whose name does not match
  the pattern is an error naming the file, or, with `skip_bad_names=True`, skipped and counted.
"""

import os
import re

from bgshift_tf.core import errors
from bgshift_tf.data.images import SPLIT_FOLDERS
from bgshift_tf.data.records import DatasetSplits, ImageRecord, relabel

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
JUNK_PID = -1
DISTRACTOR_PID = 0


def parse_file_name(filename: str, pattern: re.Pattern, dataset: str) -> tuple[int, int]:
    """Returns (pid, camera) from an image name using `pattern` (groups "pid" and "camera").

    Raises:
        ValueError naming the file and the expected convention when the name does not match.
    """
    match = pattern.fullmatch(filename)
    if match is None:
        raise errors.DataError(
            f"{dataset}: image file name {filename!r} does not follow the {dataset} naming convention "
            f"(pattern {pattern.pattern!r}). Pass skip_bad_names=True to skip and count such files."
        )
    return int(match.group("pid")), int(match.group("camera"))


def _check_folders(data_dir, mask_dir, dataset):
    """Raises MissingInputError naming the flag when `data_dir` (or a given `mask_dir`) is not a folder."""
    if not os.path.isdir(data_dir):
        raise errors.MissingInputError(f"{dataset}: dataset folder {data_dir!r} does not exist (flag --data_dir).")
    if mask_dir is not None and not os.path.isdir(mask_dir):
        raise errors.MissingInputError(
            f"{dataset}: mask folder {os.fspath(mask_dir)!r} does not exist (flag --mask_dir)."
        )


def _split_folder(data_dir, folder, dataset):
    """The path of split folder `folder` under `data_dir`; raises MissingInputError naming the layout if absent."""
    folder_path = os.path.join(data_dir, folder)
    if not os.path.isdir(folder_path):
        raise errors.MissingInputError(
            f"{dataset}: expected folder {folder_path!r} is missing; the layout needs "
            f"{sorted(SPLIT_FOLDERS.values())} under {data_dir!r}."
        )
    return folder_path


def _kept_pid(filename, folder_path, split, pattern, dataset, skip_bad_names, skipped):
    """(pid, camera) of image `filename` of `split`, or None when it is dropped (counted in `skipped`): a bad
    name with `skip_bad_names`, junk, or a distractor outside the gallery. A bad name otherwise raises."""
    try:
        pid, camera = parse_file_name(filename, pattern, dataset)
    except ValueError as error:
        if not skip_bad_names:
            raise errors.DataError(f"{error} File: {os.path.join(folder_path, filename)!r}") from None
        skipped["bad_name"] += 1
        return None
    if pid == JUNK_PID:
        skipped["junk"] += 1
        return None
    if pid == DISTRACTOR_PID and split != "gallery":
        skipped["distractor_outside_gallery"] += 1
        return None
    return pid, camera


def _list_split(data_dir, split, folder, *, dataset, pattern, mask_dir, domain, domain_name, skip_bad_names,
                skipped):
    """The ImageRecords of one split folder, sorted by file name; drops are counted in `skipped`."""
    folder_path = _split_folder(data_dir, folder, dataset)
    records = []
    for filename in sorted(os.listdir(folder_path)):
        if not filename.lower().endswith(IMAGE_EXTENSIONS):
            continue
        kept = _kept_pid(filename, folder_path, split, pattern, dataset, skip_bad_names, skipped)
        if kept is None:
            continue
        mask_path = None
        if mask_dir is not None:
            mask_path = os.path.join(os.fspath(mask_dir), folder, os.path.splitext(filename)[0] + ".png")
        records.append(
            ImageRecord(
                path=os.path.join(folder_path, filename),
                pid=kept[0],
                camera=kept[1],
                split=split,
                domain=domain,
                domain_name=domain_name,
                mask_path=mask_path,
            )
        )
    return records


def load_folders(
    data_dir,
    *,
    dataset: str,
    pattern: re.Pattern,
    mask_dir=None,
    domain: int = 0,
    domain_name: str | None = None,
    skip_bad_names: bool = False,
) -> DatasetSplits:
    """Lists the three split folders of `data_dir` into `DatasetSplits` (train relabelled 0..N-1).

    Records are sorted by file name within a split, so listing is deterministic.

    Raises:
        FileNotFoundError naming the missing folder; ValueError naming a badly named image.
    """
    data_dir = os.fspath(data_dir)
    domain_name = dataset if domain_name is None else domain_name
    _check_folders(data_dir, mask_dir, dataset)
    skipped = {"junk": 0, "distractor_outside_gallery": 0, "bad_name": 0}
    splits = {
        split: _list_split(data_dir, split, folder, dataset=dataset, pattern=pattern, mask_dir=mask_dir,
                           domain=domain, domain_name=domain_name, skip_bad_names=skip_bad_names, skipped=skipped)
        for split, folder in SPLIT_FOLDERS.items()
    }
    return DatasetSplits(
        name=dataset,
        train=relabel(splits["train"]),
        query=splits["query"],
        gallery=splits["gallery"],
        skipped=skipped,
    )


def folder_loader(dataset: str, pattern: re.Pattern, title: str):
    """The `load(data_dir, mask_dir=None, domain=0, domain_name=dataset, *, skip_bad_names=False)` of a dataset
    stored in this layout with file names matching `pattern` (`title`: its name in the docstring)."""

    def load(
        data_dir, mask_dir=None, domain: int = 0, domain_name: str = dataset, *, skip_bad_names=False
    ) -> DatasetSplits:
        return load_folders(data_dir, dataset=dataset, pattern=pattern, mask_dir=mask_dir, domain=domain,
                            domain_name=domain_name, skip_bad_names=skip_bad_names)

    load.__doc__ = f"Lists {title} at `data_dir` (see module docstring); train labels relabelled 0..N-1."
    return load
