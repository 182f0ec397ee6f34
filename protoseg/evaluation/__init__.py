"""Evaluation apart from data: inference over an image and the metrics over a split.

- ``inference``: whole-image and sliding-window inference (MMSegmentation's), logits resized with
  the model's ``align_corners`` through ``protoseg.models.layers.resize``.
- ``metrics``: ``SegMetric`` (IoU, mIoU, aAcc, mAcc), reducible across DDP ranks.

The evaluation loop over a split and its files are ``protoseg.engine.evaluate``.
"""
