"""``python -m protoseg.pipeline.dvc_commit STAGE...``: ``dvc commit -f STAGE...`` in one DVC session,
writing ``dvc.lock`` once.

The ``dvc commit`` command commits its targets one at a time, and after each it reads and rewrites the
whole ``dvc.lock`` with a pure-Python YAML library: with this pipeline's 188-stage lock file that is
about 5 s of CPU per stage, far more than hashing and linking a mini stage's outputs. Here every
stage is saved (hashes) and committed (outputs linked into the cache, ``cache.type``) as ``dvc commit
-f`` does, then the lock file is written once for all of them (``record_lock`` runs this).
"""
from __future__ import annotations

import sys


def commit(names: list[str]) -> int:
    """Commit the stages ``names`` of the DVC repository here; returns how many were recorded."""
    from dvc.repo import Repo

    with Repo() as repo, repo.lock:
        stages = [info.stage for name in names for info in repo.stage.collect_granular(name)]
        groups: dict = {}
        for stage in stages:
            stage.save()
            stage.commit()
            groups.setdefault(stage.dvcfile.path, (stage.dvcfile, []))[1].append(stage)
        for dvcfile, group in groups.values():
            dvcfile.dump_stages(group, update_pipeline=False)
    return len(stages)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print("usage: python -m protoseg.pipeline.dvc_commit STAGE...", file=sys.stderr)
        sys.exit(2)
    commit(sys.argv[1:])
