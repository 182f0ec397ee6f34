"""Training engine: config, optimizer groups and schedule, checkpoints, the training loop, DDP,
evaluation, prediction and MLflow logging (see docs/engine.md).

- ``config``: ``RunConfig`` / ``load_config`` (typed sections, ``key=value`` overrides).
- ``optim``: parameter groups, SGD/AdamW, poly schedule with linear warm-up.
- ``checkpoint``: atomic checkpoints, ``find_resume`` (``--resume auto``).
- ``train``: ``train(cfg, resume=...)``: build, restore, loop, finish; beside it ``data_order``
  (the sampler and items), ``resume`` (what a resume must match), ``train_log`` (``train_log.jsonl``)
  and ``signals`` (signals, SLURM requeue, the CLI's exit statuses).
- ``distributed``: torchrun/srun set-up, SyncBN.
- ``evaluate`` / ``predict``: metrics files; overlays and nearest-prototype maps.
- ``tracking``: ``log_runs`` (``protoseg log-mlflow``).
"""
