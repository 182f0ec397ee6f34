"""``python -m protoseg.pipeline.dvc_commit [--file dvc.yaml] STAGE...``: ``dvc commit -f STAGE...`` in
one DVC session, reading ``dvc.yaml`` and ``dvc.lock`` once and writing ``dvc.lock`` once.

The ``dvc commit`` command commits its targets one at a time, and after each it reads and rewrites the
whole ``dvc.lock`` with a pure-Python YAML library: with this pipeline's 188-stage lock file that is
about 5 s of CPU per stage, far more than hashing and linking a mini stage's outputs. DVC's own
``collect_granular`` re-parses both files for every stage name as well (measured: 2 of the 2.7 s a
stage cost before). Here both files are parsed once, every stage is saved (hashes) and committed
(outputs linked into the cache, ``cache.type``) as ``dvc commit -f`` does, then the lock file is
written once for all of them (``record_lock`` runs this).
"""
from __future__ import annotations

import sys


def commit(names: list[str], dvc_file: str = "dvc.yaml") -> int:
    """Commit the stages ``names`` of ``dvc_file`` in the DVC repository here; returns how many were
    recorded. An unknown stage name raises DVC's error before anything is written."""
    from dvc.dvcfile import load_file
    from dvc.repo import Repo

    with Repo() as repo, repo.lock:
        dvcfile = load_file(repo, dvc_file)  # parsed once: its ``stages`` (and the lock) are cached
        stages = [dvcfile.stages[name] for name in names]
        for stage in stages:
            stage.save()
            stage.commit()
        dvcfile.dump_stages(stages, update_pipeline=False)
    return len(stages)


if __name__ == "__main__":
    args = sys.argv[1:]
    dvc_file = "dvc.yaml"
    if args[:1] == ["--file"] and len(args) > 1:
        dvc_file, args = args[1], args[2:]
    if not args:
        print("usage: python -m protoseg.pipeline.dvc_commit [--file dvc.yaml] STAGE...", file=sys.stderr)
        sys.exit(2)
    commit(args, dvc_file)
