"""Sharded TFRecord writing (atomic per shard, resumable) and the per-folder JSON manifest.

Shards: `<out_dir>/<dataset>-<split>-00000-of-00008.tfrecord`; manifest: `<out_dir>/manifest.json`:
```
{"schema_version": 1, "dataset": "market1501",
 "splits": {"train": {"num_shards": 8, "shards": [{"file": "...", "num_examples": 1617,
                                                   "complete": true}, ...], ...}, ...},
 ... plus whatever the builder adds (counts, ids, cameras, build arguments)}
```
Each shard is written to `<name>.tmp-<pid>` and renamed with `os.replace` once complete, then marked
complete in the manifest (itself replaced atomically); a shard not yet written is listed with
`"complete": false`, which readers (`shard_files`) refuse. Ctrl-C or SIGTERM (`build_tfrecords`, `generate`:
`training.interrupts.stops_cleanly`) removes the temporary file being written; the temporary files of a
process that died without cleaning up (SIGKILL) are removed by the next run. A re-run skips shards already complete with the
same planned size unless `overwrite=True`; a crash leaves no partial shard under its final name.

Every reader goes through `read_manifest`, which checks the manifest against itself (each split lists
`num_shards` shards whose counts add up to `num_examples`) and against the folder (no shard file of the
split's count on disk that the manifest does not list); `shard_files` adds that every listed shard is
complete and present. A manifest failing these checks is a `ManifestError` naming the folder, and
`write_shards(overwrite=True)` (`build_tfrecords --overwrite`) replaces it.
"""

import contextlib
import json
import logging
import os
import re

import tensorflow as tf

from bgshift_tf.core import atomic_io, errors
from bgshift_tf.data import schema

MANIFEST_NAME = "manifest.json"
_SHARD_FILE = re.compile(r"(?P<prefix>.+)-\d{5}-of-(?P<count>\d{5})\.tfrecord")
_SHARD_TEMPORARY = re.compile(r"(?P<shard>.+\.tfrecord)\.tmp-(?P<pid>\d+)")


class CorruptShardError(errors.DataError, RuntimeError):
    """A TFRecord shard that cannot be read to its end; the message names the shard."""


class ManifestError(errors.DataError):
    """A manifest that is not JSON, of another schema version, or disagrees with itself or its folder."""


def shard_name(dataset: str, split: str, index: int, num_shards: int) -> str:
    return f"{dataset}-{split}-{index:05d}-of-{num_shards:05d}.tfrecord"


def read_manifest(out_dir) -> dict:
    """Returns the manifest of a shard folder, checked (see the module docstring).

    Raises:
        errors.MissingInputError naming the manifest path when there is none; ManifestError naming the
        folder when it is not JSON, of another schema version, or inconsistent.
    """
    out_dir = os.fspath(out_dir)
    path = os.path.join(out_dir, MANIFEST_NAME)
    if not os.path.isfile(path):
        raise errors.MissingInputError(
            f"no TFRecord manifest {path!r}; build the folder with `python -m bgshift_tf.build_tfrecords`"
        )
    rebuild = "rebuild the folder with `build_tfrecords --overwrite`"
    try:
        with open(path, "rb") as f:
            manifest = json.loads(f.read())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ManifestError(f"TFRecord manifest {path!r} is not valid JSON ({error}); {rebuild}") from None
    if not isinstance(manifest, dict) or manifest.get("schema_version") != schema.SCHEMA_VERSION:
        version = manifest.get("schema_version") if isinstance(manifest, dict) else None
        raise ManifestError(
            f"{path!r} has schema_version={version!r} but this code reads {schema.SCHEMA_VERSION}; {rebuild}"
        )
    problems = _manifest_problems(manifest, out_dir)
    if problems:
        raise ManifestError(f"TFRecord manifest {path!r} does not match its folder: {'; '.join(problems)}; {rebuild}")
    return manifest


def _manifest_problems(manifest, out_dir) -> list:
    """What is wrong with a parsed manifest: shard lists, counts and the shard files on disk."""
    splits = manifest.get("splits")
    if not isinstance(splits, dict):
        return [f"'splits' must be an object, found {type(splits).__name__}"]
    problems, listed = [], set()
    for split, entry in sorted(splits.items()):
        try:
            files = [shard["file"] for shard in entry["shards"]]
            counts = [int(shard["num_examples"]) for shard in entry["shards"]]
            num_shards, num_examples = int(entry["num_shards"]), int(entry["num_examples"])
        except (KeyError, TypeError, ValueError) as error:
            problems.append(f"split {split!r} lacks a field or has a wrong type ({error!r})")
            continue
        listed.update(files)
        if len(files) != num_shards:
            problems.append(f"split {split!r} lists {len(files)} shards but num_shards={num_shards}")
        if sum(counts) != num_examples:
            problems.append(f"split {split!r} shard counts add up to {sum(counts)} but num_examples={num_examples}")
    counts_in_use = {(m["prefix"], m["count"]) for m in map(_SHARD_FILE.fullmatch, listed) if m}
    for name in sorted(os.listdir(out_dir)):
        match = _SHARD_FILE.fullmatch(name)
        if match and (match["prefix"], match["count"]) in counts_in_use and name not in listed:
            problems.append(f"shard file {name!r} is on disk but not in the manifest")
    return problems


def _read_or_new_manifest(out_dir, overwrite=False):
    """The folder's manifest, or a new empty one when there is none (or, with `overwrite`, a broken one)."""
    path = os.path.join(os.fspath(out_dir), MANIFEST_NAME)
    if os.path.isfile(path):
        try:
            return read_manifest(out_dir)
        except ManifestError as error:
            if not overwrite:
                raise
            logging.warning("replacing the TFRecord manifest: %s", error)
    return {"schema_version": schema.SCHEMA_VERSION, "splits": {}}


def update_manifest(out_dir, updates: dict) -> dict:
    """Merges `updates` into the top level of `<out_dir>/manifest.json` (created if absent); atomic."""
    path = os.path.join(os.fspath(out_dir), MANIFEST_NAME)
    manifest = _read_or_new_manifest(out_dir)
    manifest.update(updates)
    atomic_io.write_json(path, manifest)
    return manifest


def shard_files(out_dir, split: str) -> list:
    """Full paths of the complete shards of `split` in `out_dir`, in shard order.

    Raises:
        ManifestError naming the folder when the split has no shards or some are incomplete/missing
        (and whatever `read_manifest` raises).
    """
    manifest = read_manifest(out_dir)
    entry = manifest["splits"].get(split)
    if entry is None:
        raise ManifestError(
            f"TFRecord folder {os.fspath(out_dir)!r} has no split {split!r}; it has {sorted(manifest['splits'])}"
        )
    files = []
    for shard in entry["shards"]:
        path = os.path.join(os.fspath(out_dir), shard["file"])
        if not shard["complete"] or not os.path.isfile(path):
            raise ManifestError(
                f"shard {path!r} is incomplete or missing; re-run build_tfrecords on {os.fspath(out_dir)!r}"
            )
        files.append(path)
    return files


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _remove_dead_temporaries(out_dir, dataset: str, split: str) -> None:
    """Removes `<shard>.tmp-<pid>` files of the split left by writer processes that no longer run."""
    for name in os.listdir(out_dir):
        match = _SHARD_TEMPORARY.fullmatch(name)
        if match and match["shard"].startswith(f"{dataset}-{split}-") and not _process_alive(int(match["pid"])):
            logging.warning("removing %s, left by an interrupted writer (process %s)", name, match["pid"])
            os.remove(os.path.join(out_dir, name))


def _shard_bounds(num_examples, num_shards):
    return [(i * num_examples // num_shards, (i + 1) * num_examples // num_shards) for i in range(num_shards)]


def write_shards(
    examples, out_dir, dataset: str, split: str, num_shards: int, overwrite: bool = False, progress=None
) -> list:
    """Writes `examples` as `num_shards` TFRecord shards of contiguous, near-equal slices.

    Args:
        examples: sequence (len + indexing; any other iterable is materialised) of field dicts for
            `schema.serialize_example`. Indexing lazily is worthwhile: slices of shards that are
            skipped on a re-run are never touched.
        out_dir: destination folder (created).
        dataset, split: used in the shard names.
        num_shards: number of shards (>= 1); fewer examples than shards gives empty shards.
        overwrite: rewrite shards even when the manifest marks them complete.
        progress: optional callable(n) told how many examples were written or skipped.
    Returns:
        Full paths of the shards, in order.
    """
    if num_shards < 1:
        raise ValueError(f"`num_shards` must be >= 1. Received: num_shards={num_shards}")
    if not hasattr(examples, "__len__") or not hasattr(examples, "__getitem__"):
        examples = list(examples)
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    manifest_path = os.path.join(out_dir, MANIFEST_NAME)
    _remove_dead_temporaries(out_dir, dataset, split)
    manifest = _read_or_new_manifest(out_dir, overwrite=overwrite)
    previous = manifest["splits"].get(split, {})
    done = {
        s["file"]: s["num_examples"]
        for s in previous.get("shards", [])
        if s["complete"] and previous.get("num_shards") == num_shards and manifest.get("dataset") == dataset
    }
    bounds = _shard_bounds(len(examples), num_shards)
    entries = [
        {"file": shard_name(dataset, split, i, num_shards), "num_examples": end - start, "complete": False}
        for i, (start, end) in enumerate(bounds)
    ]
    for entry in entries:
        path = os.path.join(out_dir, entry["file"])
        entry["complete"] = not overwrite and done.get(entry["file"]) == entry["num_examples"] and os.path.isfile(path)
    manifest["dataset"] = dataset
    manifest["splits"][split] = {"num_shards": num_shards, "num_examples": len(examples), "shards": entries}
    atomic_io.write_json(manifest_path, manifest)
    paths = []
    for entry, (start, end) in zip(entries, bounds):
        path = os.path.join(out_dir, entry["file"])
        paths.append(path)
        if entry["complete"]:
            if progress:
                progress(end - start)
            continue
        tmp_path = f"{path}.tmp-{os.getpid()}"
        try:
            with tf.io.TFRecordWriter(tmp_path) as writer:
                for index in range(start, end):
                    writer.write(schema.serialize_example(examples[index]))
                    if progress:
                        progress(1)
            os.replace(tmp_path, path)
        finally:
            if os.path.exists(tmp_path):
                os.remove(tmp_path)
        entry["complete"] = True
        atomic_io.write_json(manifest_path, manifest)
    return paths


def _expected_counts(files):
    """Shard path -> num_examples from the manifests next to the shards (when there is one)."""
    counts = {}
    for folder in {os.path.dirname(os.path.abspath(f)) for f in files}:
        try:
            manifest = read_manifest(folder)
        except (FileNotFoundError, ValueError):
            continue
        for entry in manifest["splits"].values():
            for shard in entry["shards"]:
                counts[os.path.join(folder, shard["file"])] = shard["num_examples"]
    return counts


def verify_shards(files, *, skip_corrupt: bool = False) -> dict:
    """Reads every shard to its end and names the ones that cannot be read.

    TensorFlow's own DataLossError says "corrupted record at 360" without the file; this check is
    how a bad shard gets its name. A TFRecord reader cannot resynchronise after a bad record, so
    the rest of a corrupt shard is lost: with `skip_corrupt=True` the readable prefix is kept (the
    input pipeline stops that shard at the error) and the lost records are counted from the manifest.

    Returns:
        {"num_records": readable records, "num_skipped": lost records (when the manifest knows the
        shard size; otherwise the corrupt shard counts 1), "corrupt_shards": {path: message}}.
    Raises:
        CorruptShardError naming the shard (unless skip_corrupt); FileNotFoundError for a missing one.
    """
    expected = _expected_counts(files)
    result = {"num_records": 0, "num_skipped": 0, "corrupt_shards": {}}
    for path in files:
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"TFRecord shard {path!r} does not exist")
        # Count in-graph (fast), then re-read from the first unreadable record to get TF's error.
        records = tf.data.TFRecordDataset(path).ignore_errors()
        readable = int(records.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))
        message = None
        try:
            for _ in tf.data.TFRecordDataset(path).skip(readable).take(1):
                pass
        except tf.errors.DataLossError as error:
            reason = error.message.split("}}")[-1].strip()  # drop TF's function-node prefix
            message = f"TFRecord shard {path!r} is corrupt after {readable} readable records: {reason}"
        expected_count = expected.get(os.path.abspath(path))
        if message is None and expected_count is not None and readable < expected_count:
            # Cut exactly at a record boundary: only the manifest can tell.
            message = (
                f"TFRecord shard {path!r} holds {readable} records but its manifest says {expected_count} (truncated)"
            )
        if message is not None:
            if not skip_corrupt:
                raise CorruptShardError(message + " (rebuild it with --overwrite, or read with skip_corrupt=True)")
            lost = max((expected_count if expected_count is not None else readable + 1) - readable, 1)
            logging.warning("%s; skipping %d record(s)", message, lost)
            result["corrupt_shards"][path] = message
            result["num_skipped"] += lost
        result["num_records"] += readable
    return result


@contextlib.contextmanager
def naming_corrupt_shards(files):
    """Turns a bare DataLossError raised while reading `files` into a CorruptShardError naming the shard.

    For readers that skip the up-front `verify_shards` (a resumed run, a one-pass record scan): the
    verification runs only when a read has failed, to find which shard it was.
    """
    try:
        yield
    except tf.errors.DataLossError as error:
        verify_shards(files)  # raises CorruptShardError naming the first bad shard
        raise CorruptShardError(
            f"reading TFRecord shards {[os.fspath(f) for f in files]} failed but each reads to its end now: "
            f"{error.message.strip()}"
        ) from error
