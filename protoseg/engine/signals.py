"""How a run stops: the exit statuses of the ``protoseg`` command, the exceptions that end training,
the signal flag the loop checks after every iteration, and the SLURM requeue. Light on purpose (no
torch): ``protoseg/cli.py`` imports it for every command.

The exit statuses (the CLI's one table, docs/errors.md):

====  =====================================================================================
0     done
1     an unexpected internal error (a bug: the traceback is printed; please report it)
2     a user error: bad argument, config, data, checkpoint or run folder; ONE line ``error: ...``
      naming the file, key or value and what was expected; nothing written or lost
3     a loss term became NaN/inf (the last good checkpoint is kept)
74    an environment fault (EX_IOERR): disk full (ENOSPC/EDQUOT), permission denied
      (EACCES/EPERM/EROFS), an I/O error; one line naming the file
75    preempted (SIGUSR1/SIGTERM) after writing a checkpoint (EX_TEMPFAIL): rerun with
      ``--resume auto``; the only status the workflow retries
130   interrupted by Ctrl-C (SIGINT) after writing a checkpoint; a second Ctrl-C aborts at once
      (also 130, no new checkpoint)
====  =====================================================================================
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

EXIT_USAGE = 2  # a user error: bad argument, config, data, checkpoint or run folder
EXIT_NONFINITE = 3  # a loss term became NaN/inf
EXIT_IOERR = 74  # EX_IOERR: disk full, permission denied, an I/O error
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: checkpoint written after SIGUSR1/SIGTERM; the workflow retries
EXIT_INTERRUPTED = 130  # 128 + SIGINT: checkpoint written after Ctrl-C (a second Ctrl-C aborts at once)


class NonFiniteLossError(RuntimeError):
    def __init__(self, iteration: int, term: str, value: float | None = None):
        self.iteration, self.term = iteration, term
        super().__init__(f"iteration {iteration}: loss term {term!r} is not finite ({value}); stopping. "
                         "The last good checkpoint is kept.")


class Interrupted(Exception):
    """Raised after the checkpoint of a first Ctrl-C (SIGINT) is written."""

    def __init__(self, iteration: int):
        self.iteration = iteration
        super().__init__(f"interrupted (Ctrl-C) at iteration {iteration}: checkpoint written; continue "
                         f"with --resume auto; exiting with status {EXIT_INTERRUPTED}")


class Preempted(Exception):
    """Raised after the checkpoint of a SIGUSR1/SIGTERM is written."""

    def __init__(self, iteration: int, signum: int, requeued: bool):
        self.iteration, self.signum, self.requeued = iteration, signum, requeued
        super().__init__(f"signal {signal.Signals(signum).name} at iteration {iteration}: checkpoint "
                         f"written; {'requeued' if requeued else 'exiting'} with status {EXIT_PREEMPTED}")


class SignalFlag:
    """SIGUSR1/SIGTERM/SIGINT set a flag the loop checks after every iteration (never stops mid-step);
    a second SIGINT (Ctrl-C) raises KeyboardInterrupt at once."""

    def __init__(self):
        self.signum = 0
        self._old: dict[int, Any] = {}

    def install(self) -> "SignalFlag":
        for s in (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT):
            try:
                self._old[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame) -> None:
        if signum == signal.SIGINT and self.signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: abort now, no checkpoint
        if signum == signal.SIGINT:
            print("\nCtrl-C: stopping after this iteration with a checkpoint (Ctrl-C again aborts at once)",
                  file=sys.stderr, flush=True)
        self.signum = signum

    def restore(self) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


def requeue() -> bool:
    """``scontrol requeue $SLURM_JOB_ID`` inside SLURM; False outside or if it fails."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return False
    try:
        subprocess.run(["scontrol", "requeue", job], check=True, timeout=60)
        return True
    except (OSError, subprocess.SubprocessError) as err:
        print(f"warning: scontrol requeue {job} failed: {err}", file=sys.stderr)
        return False
