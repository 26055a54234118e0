"""Atomic file writes, used by every writer in the package.

A file is written under a temporary name in the target's own folder and then renamed onto the target with
`os.replace` (atomic on POSIX within one file system). A crash or an exception therefore never leaves a
half-written file at the target path, and an existing file is only ever replaced by a complete one.
"""

import json
import os
import tempfile

import numpy as np


def atomic_write(path, write) -> str:
    """Calls `write(tmp_path)` to produce the file, then renames it onto `path`; returns `path`.

    The temporary file is removed when `write` raises, and the error propagates.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.tmp-")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes files private; outputs are for everyone to read
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def write_bytes(path, data: bytes) -> str:
    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(data)

    return atomic_write(path, write)


def write_text(path, text: str) -> str:
    """Writes UTF-8 text atomically. Returns the path."""

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    return atomic_write(path, write)


def write_npz(path, arrays) -> str:
    """Writes a dict of numpy arrays as an uncompressed .npz (`np.savez`). Returns the path."""

    def write(tmp_path):
        with open(tmp_path, "wb") as f:
            np.savez(f, **arrays)

    return atomic_write(path, write)


def json_default(value):
    """JSON encoding of the non-JSON values configs and results carry (numpy values, tuples, paths)."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"value {value!r} of type {type(value).__name__} is not JSON-serializable")


def write_json(path, obj) -> str:
    """Writes `obj` as indented, key-sorted JSON (numpy values converted)."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=json_default) + "\n")
