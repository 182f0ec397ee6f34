"""The ``protoseg`` command line: one subcommand per pipeline step.

Each subcommand lives in the module that implements it and registers itself through
``add_parser(subparsers)``; this file only assembles them.
"""
from __future__ import annotations

import argparse
import importlib
import sys

import protoseg

# module path -> the subcommands it provides (imported lazily so `protoseg --help` stays fast)
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "protoseg.data.cli",
    "protoseg.engine.cli",
    "protoseg.pipeline.cli",
)


EPILOG = """\
which command for which job:
  reproduce the paper's tables    snakemake -c2 (or dvc repro); the rules run experiments train,
                                  experiments log-mlflow, tables, figures and compare-results
  one experiment of the list      protoseg experiments train KEY --seed 0  (keys: experiments list)
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
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
