"""bgshift_tf.core.errors: how entry points end on user errors, bugs and Ctrl-C (subprocesses: exit status
and stderr of a real program are the behaviour; the scripts import only absl, so each starts in well under a second)."""

import os
import subprocess
import sys
import textwrap

import pytest

from bgshift_tf.core import errors

_SCRIPT = """
import sys
from absl import flags
from bgshift_tf.core import errors
if "--int_verbose" in sys.argv:
    sys.argv.remove("--int_verbose")
    flags.DEFINE_integer("verbose", 1, "progress level, as train_gan has")

def main(argv):
    kind = argv[1]
    if kind == "data":
        raise errors.DataError("image 'a.jpg' cannot be decoded:\\n truncated (replace it)")
    if kind == "wrapped":
        with errors.user_errors(FileExistsError):
            raise FileExistsError("Refusing to overwrite 'out'. Choose another --out_dir.")
    if kind == "interrupt":
        raise KeyboardInterrupt
    raise ZeroDivisionError("a bug")

errors.run(main, "demo")
"""


def _run(*args):
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(_SCRIPT), *args], capture_output=True, text=True,
                          timeout=120, env=env)


@pytest.mark.parametrize("kind, message", [
    ("data", "demo: error: image 'a.jpg' cannot be decoded: truncated (replace it)"),
    ("wrapped", "demo: error: Refusing to overwrite 'out'. Choose another --out_dir."),
])
def test_user_error_is_one_line_and_exit_status_2(kind, message):
    result = _run(kind)
    assert result.returncode == errors.USER_ERROR_EXIT_STATUS == 2
    assert result.stderr.strip() == message


def test_bugs_keep_their_traceback_and_verbose_shows_user_error_tracebacks():
    bug = _run("bug")
    assert bug.returncode == 1 and "Traceback" in bug.stderr and "ZeroDivisionError: a bug" in bug.stderr
    verbose = _run("data", "--verbose")
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr and "DataError" in verbose.stderr
    assert _run("data", "--int_verbose", "--verbose=1").returncode == 2  # progress level 1: still one line
    assert "Traceback" in _run("data", "--int_verbose", "--verbose=2").stderr


def test_keyboard_interrupt_is_left_to_exit_on_interrupt():
    result = _run("interrupt")
    assert result.returncode != 2 and "demo: error" not in result.stderr


def test_user_error_types_stay_catchable_as_the_builtin_ones():
    assert issubclass(errors.DataError, ValueError) and issubclass(errors.MissingInputError, FileNotFoundError)
    with pytest.raises(errors.UserError, match="bad") as raised:
        with errors.user_errors(ValueError):
            raise ValueError("bad")
    assert isinstance(raised.value.__cause__, ValueError)
    with pytest.raises(KeyError):
        with errors.user_errors(ValueError):
            raise KeyError("a bug is not wrapped")
