"""Flag checks every entry point registers, so that a bad value ends the command before any work starts.

absl runs a flag's validators when the command line is parsed (`errors.run` reports a failure as one line,
`<command>: error: flag --out_dir=/x: ...`, exit status 2). This module adds the checks absl's own
`lower_bound` / `upper_bound` / enum choices do not cover:

- `input_path`: an input file or folder (or each item of a list flag, or each comma-separated file or glob
  pattern of a TFRecord flag) exists;
- `output_dir` / `output_file`: an output can be created: not an existing file where a folder goes (or a
  folder where a file goes), and its nearest existing ancestor is a writable folder;
- `in_range`: numeric bounds for flags defined in a loop or elsewhere (open or closed ends);
- `multiple_of`: image sizes the networks can take;
- `flagfile_chain`: a `--flagfile` that is missing or includes itself (absl would skip the cycle).

Empty values (None, "", []) always pass: an optional flag left unset is checked where it is used.
"""

import glob
import os

from absl import flags

_GLOB_CHARS = "*?["


def _items(value, patterns):
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if str(v)]
    return [v for v in str(value).split(",") if v] if patterns else [str(value)]


def check_input(path, kind=None, patterns=False):
    """The problem with input `path` (a file or folder that must exist), or None when it is usable."""
    if patterns and any(c in path for c in _GLOB_CHARS):
        return None if glob.glob(os.path.expanduser(path)) else "no file matches this pattern"
    path = os.path.expanduser(path)
    if not os.path.exists(path):
        return "no such file or folder"
    if kind == "dir" and not os.path.isdir(path):
        return "is a file, not a folder"
    if kind == "file" and os.path.isdir(path):
        return "is a folder, not a file"
    if not os.access(path, os.R_OK):
        return "cannot be read (permission denied)"
    return None


def check_output(path, kind="dir"):
    """The problem with creating output `path` (a folder if kind == "dir", else a file), or None."""
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.exists(path):
        if kind == "dir" and not os.path.isdir(path):
            return "is a file, not a folder; choose another path or remove the file"
        if kind == "file" and os.path.isdir(path):
            return "is a folder, not a file; choose a file path"
        return None if os.access(path if kind == "dir" else os.path.dirname(path), os.W_OK) else (
            "is not writable (permission denied)")
    parent = os.path.dirname(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        return f"cannot be created: {parent} is a file, not a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot be created: {parent} is not writable (permission denied)"
    return None


def _register(name, problem_of, flag_values):
    def checker(value):
        problem = problem_of(value)
        if problem:
            raise flags.ValidationError(problem)
        return True

    flags.register_validator(name, checker, flag_values=flag_values)


def _input_problem(value, kind, patterns):
    several = isinstance(value, (list, tuple)) or (patterns and "," in str(value))
    for item in _items(value, patterns):
        problem = check_input(item, kind, patterns)
        if problem:
            return f"{item}: {problem}" if several else problem
    return None


def input_path(*names, kind=None, patterns=False, flag_values=flags.FLAGS):
    """Registers on each flag of `names`: the input path(s) it names exist (kind "dir" / "file": and are one).

    A list flag: each item. `patterns`: a comma-separated list of files or glob patterns (the TFRecord
    flags), each matching something.
    """
    for name in names:
        _register(name, lambda value: _input_problem(value, kind, patterns), flag_values)


def output_dir(*names, flag_values=flags.FLAGS):
    """Registers on each flag of `names`: the output folder it names exists as a writable folder or can be made."""
    for name in names:
        _register(name, lambda value: check_output(value, "dir") if value else None, flag_values)


def output_file(*names, flag_values=flags.FLAGS):
    """Registers on each flag of `names`: the output file it names can be written (its folder made)."""
    for name in names:
        _register(name, lambda value: check_output(value, "file") if value else None, flag_values)


def in_range(name, lower=None, upper=None, lower_open=False, upper_open=False, flag_values=flags.FLAGS):
    """Registers on flag `name`: lower <= value <= upper (`*_open`: strict); None (unset) passes."""
    left, right = "(" if lower_open else "[", ")" if upper_open else "]"
    span = f"{left}{'-inf' if lower is None else lower}, {'inf' if upper is None else upper}{right}"

    def checker(value):
        if value is None:
            return True
        if lower is not None and (value <= lower if lower_open else value < lower):
            raise flags.ValidationError(f"must be in {span}")
        if upper is not None and (value >= upper if upper_open else value > upper):
            raise flags.ValidationError(f"must be in {span}")
        return True

    flags.register_validator(name, checker, flag_values=flag_values)


def multiple_of(names, factor_of, why, depends_on=(), flag_values=flags.FLAGS):
    """Registers on the flags `names` (image sizes) together: each is a positive multiple of
    `factor_of(values)` (values: {flag name: value} of `names` and `depends_on`); `why` says which network
    needs it."""
    def checker(values):
        factor = factor_of(values)
        bad = {n: values[n] for n in names if values[n] is not None and (values[n] < 1 or values[n] % factor)}
        if bad:
            shown = ", ".join(f"--{n}={v}" for n, v in bad.items())
            raise flags.ValidationError(f"{shown}: must be a positive multiple of {factor} ({why})")
        return True

    flags.register_multi_flags_validator([*names, *depends_on], checker, flag_values=flag_values)


def flagfile_chain(args):
    """Raises `flags.Error` naming the file when a `--flagfile=` of `args` (a command line) is missing or
    includes itself, directly or through others; absl would report the first unclearly and skip the second."""
    pending = [(arg.partition("=")[2], ()) for arg in args if arg.startswith(("--flagfile=", "-flagfile="))]
    pending += [(args[i + 1], ()) for i, arg in enumerate(args[:-1]) if arg in ("--flagfile", "-flagfile")]
    while pending:
        path, chain = pending.pop()
        if not path:
            continue
        shown = " -> ".join([*chain, path])
        if path in chain:
            raise flags.IllegalFlagValueError(f"--flagfile={chain[0]} includes itself ({shown}); remove the cycle")
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except OSError as error:
            via = f" (included by {' -> '.join(chain)})" if chain else ""
            reason = "no such file" if isinstance(error, FileNotFoundError) else error.strerror or str(error)
            raise flags.IllegalFlagValueError(f"--flagfile={path}: {reason}{via}") from None
        pending += [(line.strip().partition("=")[2], (*chain, path)) for line in lines
                    if line.strip().startswith(("--flagfile=", "-flagfile="))]


def list_choices(name, choices, flag_values=flags.FLAGS):
    """Registers on list flag `name`: every item is one of `choices` (an enum list flag)."""
    choices = list(choices)

    def checker(value):
        unknown = [item for item in value or () if item not in choices]
        if unknown:
            raise flags.ValidationError(f"{', '.join(unknown)} not among the choices {','.join(choices)}")
        return True

    flags.register_validator(name, checker, flag_values=flag_values)
