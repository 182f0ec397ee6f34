"""Datasets: preparation of the official downloads, miniature twins, loaders, inference, metrics.

- ``prepare`` / ``check``: official folder -> prepared root (one layout for all datasets).
- ``mini``: synthetic twins in the official on-disk formats.
- ``specs``: ``DatasetSpec`` / ``get_spec`` (classes, ignore value, recipe sizes).
- ``dataset`` / ``transforms``: ``SegmentationDataset`` and the train/test pipelines.
- ``inference``: whole-image and sliding-window inference.
- ``metrics``: ``SegMetric`` (IoU, mIoU, aAcc, mAcc), reducible across DDP ranks.
"""
