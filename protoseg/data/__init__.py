"""Datasets: preparation of the official downloads, miniature twins, datasets and pipelines.

- ``prepare`` / ``check``: official folder -> prepared root (one layout for all datasets).
- ``mini``: synthetic twins in the official on-disk formats.
- ``specs``: ``DatasetSpec`` / ``get_spec`` (classes, ignore value, recipe sizes).
- ``dataset`` / ``transforms``: ``SegmentationDataset`` and the train/test pipelines.
- ``parallel``: per-file work in worker processes, results filed into the manifest.

Inference and metrics are ``protoseg.evaluation``; atomic writes are ``protoseg.atomic_io``.
"""
