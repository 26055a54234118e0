"""Stopping a training run cleanly on Ctrl-C or SIGTERM.

- `SignalInterrupt(signum)`: the KeyboardInterrupt subclass `training.loop.train_loop` raises (after
  saving) when a signal stopped it; `signum` says which.
- `DeferredSigterm()`: context manager that records SIGTERM instead of raising inside whatever runs; the
  loop checks `received` between iterations, so it always stops at a state it can save whole.
- `sigterm_raises()`: context manager making SIGTERM raise `SignalInterrupt` wherever the main thread is,
  as Ctrl-C raises KeyboardInterrupt: for commands whose every write is atomic (the TFRecord builders),
  where stopping anywhere is safe and the `finally` clauses remove the temporary files;
  `@stops_cleanly(command)` puts such an entry point's `main` under it and `exit_on_interrupt`.
- `exit_on_interrupt(command)`: context manager for entry points; turns the loop's KeyboardInterrupt into
  a one-line message and exit status 128 + signal number (130 for Ctrl-C, 143 for SIGTERM), no traceback.
"""

import contextlib
import functools
import signal
import sys


class SignalInterrupt(KeyboardInterrupt):
    """What `train_loop` raises (after saving) when a signal such as SIGTERM stopped it; `signum` says which."""

    def __init__(self, signum):
        super().__init__(f"signal {signum}")
        self.signum = int(signum)


@contextlib.contextmanager
def exit_on_interrupt(command):
    """Entry points: on KeyboardInterrupt (Ctrl-C, or SIGTERM via `train_loop`) print how to resume, exit 128+signum.

    `train_loop` has saved a checkpoint by then; `command` names the entry point in the message.
    """
    try:
        yield
    except KeyboardInterrupt as err:
        signum = getattr(err, "signum", int(signal.SIGINT))  # a plain KeyboardInterrupt is Ctrl-C
        print(f"{command}: interrupted ({str(err) or 'Ctrl-C'}). Checkpoints and finished stages are kept; "
              f"run the same command again to resume.", file=sys.stderr, flush=True)
        sys.exit(128 + signum)


class DeferredSigterm:
    """Records SIGTERM while the loop runs (main thread only); the loop acts on it between iterations.

    Raising from the signal handler would interrupt whatever runs at that moment (a checkpoint write, a
    TensorFlow call that turns the exception into another error); the loop instead checks `received`
    after each iteration, so it always stops at a state it can save whole.
    """

    def __enter__(self):
        self.received = None
        self._previous = None
        try:
            self._previous = signal.signal(signal.SIGTERM, self._record)
        except ValueError:  # not the main thread: leave signal handling alone
            pass
        return self

    def _record(self, signum, frame):
        self.received = signum

    def raise_if_received(self):
        """Raises SignalInterrupt if SIGTERM arrived since `__enter__`."""
        if self.received is not None:
            raise SignalInterrupt(self.received)

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
        return False


@contextlib.contextmanager
def sigterm_raises():
    """Within the block SIGTERM raises `SignalInterrupt(SIGTERM)` in the main thread (not the main thread:
    signal handling is left alone), so cleanup runs as for Ctrl-C instead of the process dying at once."""
    def raise_interrupt(signum, frame):
        raise SignalInterrupt(signum)

    try:
        previous = signal.signal(signal.SIGTERM, raise_interrupt)
    except ValueError:
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def stops_cleanly(command):
    """Decorator for the `main(argv)` of a command whose writes are all atomic (shards under temporary names,
    manifests replaced whole): Ctrl-C or SIGTERM anywhere removes the temporary file being written and ends
    in `exit_on_interrupt`'s one line and status 130 / 143; the same command run again resumes."""
    def decorate(main):
        @functools.wraps(main)
        def stopping_cleanly(argv):
            with exit_on_interrupt(command), sigterm_raises():
                return main(argv)
        return stopping_cleanly
    return decorate
