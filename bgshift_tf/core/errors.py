"""Errors the user caused, and how every entry point reports them: one line, exit status 2.

A `UserError` is bad data, a bad flag value or an unreadable folder: something the person running the
command fixes, so its message names the culprit (file, flag, folder) and the fix. Entry points call
`errors.run(main)` instead of `absl.app.run(main)`; a `UserError` then ends as

    build_tfrecords: error: image '/data/q/0001_c1s1_000001_00.jpg' cannot be decoded: ... (fix or remove it)

on stderr with exit status 2. A flag that does not parse or fails its check (`bgshift_tf.core.flag_checks`:
ranges, choices, input paths that must exist, output paths that must be creatable), a `--flagfile` that is
missing or includes itself, and an `app.UsageError` end the same way, before `main` does any work. Any
other exception is a bug and keeps its traceback. `--verbose` shows the traceback of a `UserError` too: `run` defines it as a
boolean unless the entry point already has an integer `--verbose` (train_gan, train_reid: progress level),
where `--verbose=2` shows tracebacks.

Ctrl-C composes: `training.interrupts.exit_on_interrupt` inside `main` turns KeyboardInterrupt into its own
message and exit status 128+signum; `run` lets KeyboardInterrupt and SystemExit pass untouched.
"""

import contextlib
import json
import os
import sys

from absl import app, flags

from bgshift_tf.core import flag_checks

USER_ERROR_EXIT_STATUS = 2


class UserError(Exception):
    """An error the user can fix (bad data, flag or folder); the message names the culprit and the fix."""


class ArgumentError(UserError, ValueError):
    """A flag or argument value out of its range; the message names the flag and echoes the value."""


class DataError(UserError, ValueError):
    """An input file or folder whose contents cannot be used (undecodable image, inconsistent manifest)."""


class MissingInputError(UserError, FileNotFoundError):
    """An input file or folder that does not exist."""


def read_json(path, name, missing_hint):
    """The JSON document at `path` for an input the user named; a MissingInputError ("<name>: no such file;
    <missing_hint>") or DataError ("<name> is not valid JSON (...)") naming it as `name` (e.g. "--flag=path")."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise MissingInputError(f"{name}: no such file; {missing_hint}") from None
    except json.JSONDecodeError as error:
        raise DataError(f"{name} is not valid JSON ({error})") from None


@contextlib.contextmanager
def user_errors(*types):
    """Within the block, an exception of one of `types` is the user's: re-raised as a `UserError`.

    For library code that raises plain ValueError / FileExistsError for bad settings: an entry point
    wraps exactly the call that checks them, so a bug elsewhere still shows its traceback.
    """
    try:
        yield
    except types as error:
        raise UserError(str(error)) from error


def _show_traceback() -> bool:
    verbose = flags.FLAGS["verbose"].value
    return verbose is True or (not isinstance(verbose, bool) and verbose >= 2)


def report(error: UserError, command: str) -> None:
    """Prints `error` as the one line `<command>: error: <message>` (newlines folded) on stderr."""
    message = " ".join(str(error).split())
    print(f"{command}: error: {message}", file=sys.stderr, flush=True)


def run(main, command: str | None = None) -> None:
    """`absl.app.run(main)` that ends a `UserError` in one line on stderr and exit status 2.

    Args:
        main: the entry point's `main(argv)`.
        command: name used in the message; default the program's file name without extension.
    """
    command = command or os.path.splitext(os.path.basename(sys.argv[0]))[0]
    if "verbose" not in flags.FLAGS:
        flags.DEFINE_bool("verbose", False, "Show the full traceback when an error ends the command.")

    def parse(argv):
        try:
            flag_checks.flagfile_chain(argv[1:])
            return flags.FLAGS(argv)
        except flags.Error as error:
            report(error, command)
            sys.exit(USER_ERROR_EXIT_STATUS)

    def guarded(argv):
        try:
            return main(argv)
        except (UserError, app.UsageError) as error:
            if _show_traceback():
                raise
            report(error, command)
            sys.exit(USER_ERROR_EXIT_STATUS)

    app.run(guarded, flags_parser=parse)
