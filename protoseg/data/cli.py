"""Subcommands ``protoseg prepare`` and ``protoseg make-mini`` (registered in ``protoseg/cli.py``, whose
one error path turns a ``DataError`` into one ``error:`` line and status 2)."""
from __future__ import annotations

import argparse
import json

from protoseg.data.errors import DataError
from protoseg.data.formats import FORMATS

DATASET_CHOICES = tuple(FORMATS)


def _prepare(args: argparse.Namespace) -> int:
    from protoseg.data.check import check_root
    from protoseg.data.prepare import prepare

    if args.check:
        report = check_root(args.check, dataset=args.dataset, workers=args.workers or 1,
                            progress=not args.quiet, checksums=args.checksums)
        print(json.dumps(report, indent=1))
        return 0
    if not args.src or not args.dst:
        raise DataError("prepare needs --src and --dst (or --check ROOT)")
    meta = prepare(args.dataset, args.src, args.dst, splits=args.splits, workers=args.workers,
                   progress=not args.quiet, topn_by=args.topn_by, force=args.force)
    print(json.dumps({k: meta[k] for k in ("dataset", "splits", "num_classes", "run")}, indent=1))
    return 0


def _make_mini(args: argparse.Namespace) -> int:
    from protoseg.data.mini import make_mini

    counts = make_mini(args.dataset, args.dst, seed=args.seed)
    print(json.dumps({"dataset": args.dataset, "dst": args.dst, "seed": args.seed, "images": counts}))
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "prepare", help="turn an extracted official dataset folder into a prepared root",
        description="Convert an official dataset folder (--src) into a prepared root (--dst), "
                    "or validate a prepared root (--check).")
    p.add_argument("dataset", choices=DATASET_CHOICES)
    p.add_argument("--src", help="the extracted official folder (e.g. ADEChallengeData2016)")
    p.add_argument("--dst", help="the prepared root to write")
    p.add_argument("--check", metavar="ROOT", help="validate a prepared root instead of preparing")
    p.add_argument("--checksums", action="store_true", help="with --check: verify every sha256 too")
    p.add_argument("--splits", nargs="+", help="splits to prepare (default: the dataset's train/eval)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: cores, <= 8)")
    p.add_argument("--topn-by", choices=("pixels", "list"), default="pixels",
                   help="ade20k-full: rank classes by measured training pixels or by the 847 list order")
    p.add_argument("--force", action="store_true",
                   help="adopt a non-empty --dst that prepare did not write (its files are kept)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_prepare)

    m = subparsers.add_parser(
        "make-mini", help="write a miniature synthetic twin in the official on-disk format",
        description="Write a small synthetic dataset in exactly the official layout of DATASET "
                    "(pretrain: the mini scale's pre-training set, in ADE20K's layout).")
    m.add_argument("dataset", choices=(*DATASET_CHOICES, "pretrain"))
    m.add_argument("--dst", required=True, help="an empty or absent folder")
    m.add_argument("--seed", type=int, default=0)
    m.set_defaults(func=_make_mini)
