"""A fix for DVC's ``dvc repro --dry`` on a pipeline whose intermediate files do not exist yet.

DVC (3.x, open upstream: treeverse/dvc#9818) asks its run cache whether a changed stage's result is
cached, and to do so hashes every dependency (``dvc.stage.cache._can_hash``). In a dry run the
upstream stages are not run, so on a fresh clone the first stage that depends on another stage's
output (here ``pretrain_<backbone>`` on its run.yaml) fails with ``[Errno 2] No such file or
directory`` and ``dvc repro --dry`` exits 255. A dependency that does not exist cannot have a cached
run, so the fix answers "not cached" (what DVC does for any other stage it cannot hash) instead of
raising; nothing else changes.

The patch is applied when ``dvc.stage.cache`` is imported, through a ``.pth`` file in the environment
(``write_pth()``; ``scripts/install.sh`` calls it). It touches no module
but DVC's, imports nothing at start-up beyond this file, and does nothing when DVC is not used.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from pathlib import Path

TARGET = "dvc.stage.cache"
PTH_NAME = "protoseg_dvc_compat.pth"


def _patch(module) -> None:
    original = module._can_hash
    if getattr(original, "_protoseg_fixed", False):
        return

    def _can_hash(stage):
        try:
            return original(stage)
        except FileNotFoundError:  # a dependency not made yet (dry run): no cached run can match
            return False

    _can_hash._protoseg_fixed = True
    module._can_hash = _can_hash


class _Finder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the loader of ``dvc.stage.cache`` so the module is patched once run."""

    def find_spec(self, name, path, target=None):
        if name != TARGET:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader = spec.loader

        class _Loader(importlib.abc.Loader):
            def create_module(self, spec):
                return loader.create_module(spec)

            def exec_module(self, module):
                loader.exec_module(module)
                _patch(module)

        spec.loader = _Loader()
        return spec


def install_hook() -> None:
    """Called from the ``.pth`` file at interpreter start-up."""
    if TARGET in sys.modules:
        _patch(sys.modules[TARGET])
    elif not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


def write_pth(site_dir: str | Path | None = None) -> Path:
    """Write the ``.pth`` file into ``site_dir`` (default: this environment's site-packages)."""
    import sysconfig

    path = Path(site_dir or sysconfig.get_paths()["purelib"]) / PTH_NAME
    # one line; an environment without protoseg (uninstalled) starts as if the file were not there
    path.write_text("import sys; exec('try:\\n import protoseg._dvc_compat as m; m.install_hook()\\n"
                    "except ImportError:\\n pass')\n")
    return path


if __name__ == "__main__":
    print(f"wrote {write_pth()}")
