"""The repository stands alone: no test, doc or script reads or points at a folder beside the checkout
(the data the tests need is in tests/data/, see its README)."""
from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# a sibling folder of the checkout: ../<name>, parents[2] of a test file, or the task's shared/ tree
OUTSIDE = re.compile(r"\.\./shared\b|\bshared/(spec|data|paper|hooks)\b|parents\[2\]|REPO\.parent\b")


def _files():
    for pattern in ("tests/**/*.py", "docs/**/*.md", "README.md", "scripts/**/*", "benchmarks/**/*.py", ".ci/*"):
        for path in REPO.glob(pattern):
            if path.is_file() and path.suffix not in (".png", ".pt", ".json") and path != Path(__file__).resolve():
                yield path


def test_no_test_doc_or_script_points_outside_the_repository():
    hits = []
    for path in _files():
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                hits.append(f"{path.relative_to(REPO)}:{n}: {line.strip()[:120]}")
    assert not hits, "\n".join(hits)


def test_test_data_is_in_the_repository(pinned_sha256):
    assert (REPO / "tests/data/official_hrnet_w48_proto_keys.tsv").is_file()
    assert all((REPO / path).is_file() for path in pinned_sha256)
