"""The ``protoseg`` command line: one subcommand per pipeline step.

Each subcommand lives in the module that implements it and registers itself through
``add_parser(subparsers)``; this file only assembles them and applies the one exit contract of the
whole CLI (docs/errors.md): the statuses of ``protoseg.engine.signals`` (0 done, 1 a bug with its
traceback, 2 a user error on ONE ``error: ...`` line, 3 a non-finite loss, 74 an environment fault,
75 preempted after a checkpoint, 130 interrupted by Ctrl-C).
"""
from __future__ import annotations

import argparse
import errno
import importlib
import sys

import protoseg
from protoseg.engine.signals import (EXIT_INTERRUPTED, EXIT_IOERR, EXIT_NONFINITE, EXIT_PREEMPTED, EXIT_USAGE,
                                     Interrupted, NonFiniteLossError, Preempted)

# module path -> the subcommands it provides (imported lazily so `protoseg --help` stays fast)
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "protoseg.data.cli",
    "protoseg.engine.cli",
    "protoseg.pipeline.cli",
    "protoseg.convert",
    "protoseg.engine.export",
)
# the user-error exceptions of the package, all exit 2 with one line ``error: <message>`` (looked up
# only in modules already imported: the one that raised is)
USER_ERRORS = (("protoseg.config.errors", "ConfigError"), ("protoseg.engine.checkpoint", "CheckpointError"),
               ("protoseg.data.errors", "DataError"), ("protoseg.engine.tracking", "TrackingError"),
               ("protoseg.pipeline.experiments", "ExperimentError"),
               ("protoseg.config.pipeline", "PipelineConfigError"), ("protoseg.convert.errors", "ConvertError"),
               ("protoseg.pipeline.compare", "CompareError"))
# the training's stops that are not user errors: (exception, exit status, message prefix)
TRAINING_STOPS = ((NonFiniteLossError, EXIT_NONFINITE, "error: "), (Preempted, EXIT_PREEMPTED, ""),
                  (Interrupted, EXIT_INTERRUPTED, ""))
INTERRUPTED_NOW = "interrupted (Ctrl-C): stopped at once, no new checkpoint (the last periodic one is kept)"
USER_ERRNOS = {errno.ENOENT: "no such file or directory", errno.ENOTDIR: "not a directory",
               errno.EISDIR: "is a directory", errno.ENAMETOOLONG: "file name too long"}
ENV_HINTS = {errno.ENOSPC: "disk full (ENOSPC): free space, then rerun (training: --resume auto continues "
                           "from the last checkpoint)",
             errno.EDQUOT: "disk quota exceeded (EDQUOT): free space or raise the quota, then rerun",
             errno.EACCES: "permission denied (EACCES): check the folder's owner and mode",
             errno.EPERM: "operation not permitted (EPERM): check the folder's owner and mode",
             errno.EROFS: "read-only file system (EROFS): write somewhere else",
             errno.EIO: "input/output error (EIO): the disk or network file system failed"}


def user_error_types() -> tuple[type, ...]:
    return tuple(getattr(sys.modules[m], n) for m, n in USER_ERRORS if m in sys.modules)


def classify(err: BaseException) -> tuple[int, str] | None:
    """The one exit-status table: (status, the line to print on stderr) for an exception escaping a
    subcommand, or None for a bug (status 1, the traceback is shown)."""
    if isinstance(err, KeyboardInterrupt):
        return EXIT_INTERRUPTED, INTERRUPTED_NOW
    if isinstance(err, OSError):
        code, msg = classify_os_error(err)
        return code, f"error: {msg}"
    for kind, code, prefix in TRAINING_STOPS:
        if isinstance(err, kind):
            return code, f"{prefix}{err}"
    if isinstance(err, user_error_types()):
        return EXIT_USAGE, "error: " + " ".join(str(err).split())  # one line, whatever the message holds
    return None


def exit_status(err: BaseException) -> int:
    """The status ``main`` gives an exception escaping a subcommand (1: a bug)."""
    if isinstance(err, SystemExit):
        return err.code if isinstance(err.code, int) else 1
    found = classify(err)
    return 1 if found is None else found[0]


def user_error(message: str) -> int:
    """Report a user error found without an exception: one ``error:`` line, status 2."""
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE


def classify_os_error(err: OSError) -> tuple[int, str]:
    """(exit status, one-line message) of an ``OSError``: a missing path is the user's (2), the
    rest an environment fault (74)."""
    where = err.filename if err.filename is not None else ""
    if err.filename2 is not None:
        where = f"{where} -> {err.filename2}"
    where = f"{where}: " if where else ""
    if err.errno in USER_ERRNOS:
        return EXIT_USAGE, f"{where}{USER_ERRNOS[err.errno]}"
    hint = ENV_HINTS.get(err.errno) or f"{err.strerror or err} ({errno.errorcode.get(err.errno, 'OSError')})"
    return EXIT_IOERR, f"{where}{hint}"


EPILOG = """\
which command for which job:
  reproduce the paper's tables    snakemake -c2 (or dvc repro); the rules run experiments config,
                                  train, experiments log-mlflow, tables, figures and compare-results
  one experiment of the list      snakemake -c1 runs/mini/KEY/s0/metrics.json  (keys: experiments list);
                                  by hand: protoseg experiments config KEY --out runs/mini/KEY/run.yaml
                                  && protoseg train --config runs/mini/KEY/run.yaml --resume auto
  a config file of your own       protoseg train --config FILE;  protoseg log-mlflow RUN_DIR
  check your results              protoseg compare-results (your results/ beside results/reference)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="protoseg", description="The protoseg command line: one subcommand per pipeline step.",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"protoseg {protoseg.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in SUBCOMMAND_MODULES:
        importlib.import_module(module_name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # bad arguments: argparse's usage line and status 2
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except (KeyboardInterrupt, Exception) as err:  # noqa: BLE001 - the one error path; bugs re-raised
        found = classify(err)
        if found is None:
            raise
        print(found[1], file=sys.stderr)
        return found[0]


if __name__ == "__main__":
    sys.exit(main())
