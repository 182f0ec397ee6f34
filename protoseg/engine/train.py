"""The training loop, top to bottom: ``train(cfg, resume=...)``.

Files of a run (``<output_dir>/<name>/``): ``config.yaml`` (resolved), ``run_info.json`` (provenance:
one record per attempt, never overwritten: start iteration, git commit, data hash, host, time, world
size; ``finished`` at the end; ``provenance.py``), ``machine.json`` (CPU, cores, threads, GPUs),
``train_log.jsonl`` (loss terms, lr, throughput every ``log_interval``), ``val_log.jsonl`` (periodic
validation), ``checkpoints/`` and, at the end, ``metrics.json``, ``per_class_iou.csv``, ``confusion.png``.

``train`` runs: ``RunConfig.check_data`` -> ``_build`` (model, optimizer) -> ``_restore`` (resume) ->
``_write_run_header`` -> ``_loaders`` -> ``_loop`` (``_step`` per iteration, ``Checkpointer``) -> ``_finish``.
The parts live beside it: the data order (``data_order``), the resume checks (``resume``), the
training log (``train_log``), signals, requeue and exit statuses (``signals``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import signal
import socket
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from protoseg.atomic_io import remove_stale_temps, write_bytes_atomic, write_json_atomic
from protoseg.config import ConfigError, RunConfig
from protoseg.data.class_frequency import frequency_class_weights, label_pixel_counts
from protoseg.data.dataset import SegmentationDataset

from . import checkpoint as ckpt_lib
from .data_order import EpochItems, IterationBatchSampler
from .distributed import DistInfo, all_reduce_max, cleanup, gather_objects, init_distributed, maybe_sync_bn
from .evaluate import build_eval_loader, evaluate_model, write_eval_outputs
from .optim import build_optimizer, build_scheduler
from .provenance import data_hash, git_commit, machine_description, now, record_attempt, record_finished
from .resume import check_resume_config, check_resume_data
from .signals import Interrupted, NonFiniteLossError, Preempted, SignalFlag, requeue
from .train_log import TrainLog, append_jsonl, truncate_jsonl

FAULT_SIGKILL_ENV = "PROTOSEG_FAULT_SIGKILL_AT_ITER"  # test hook: SIGKILL itself inside iteration N


# ---- helpers ---------------------------------------------------------------------------------------
def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def compute_losses(out, labels: torch.Tensor, *, ignore_index: int, aux_weight: float,
                   align_corners: bool = False, reduction: str = "per_rank",
                   info: DistInfo | None = None, class_weight: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The head's loss terms (``ce``, ``ppc``, ``ppd``) plus ``aux`` (weight 0.4 in the recipes) and
    their Eq. 13 ``total`` (``method.losses.total_loss``). The logged terms are this rank's means; with
    ``reduction="global"`` under DDP the ``total`` weighs each rank's means by its share of the global
    labelled pixels (one all-reduce), so that DDP's gradient average equals the gradient of one
    process on the global batch.
    ``class_weight`` ([C], ``data.class_weight``) weighs the head's CE as the release's FSCELoss
    (weighted mean over pixels); the auxiliary CE stays unweighted."""
    from protoseg.heads import segmentation_loss

    return segmentation_loss(out.head, labels, ignore_index=ignore_index, align_corners=align_corners,
                             class_weight=class_weight, aux_logits=out.aux_logits, aux_weight=aux_weight,
                             global_pixels=reduction == "global" and info is not None and info.distributed)


def _first_nonfinite(terms: dict[str, torch.Tensor], info: DistInfo) -> str | None:
    names = list(terms)
    local = next((i + 1 for i, k in enumerate(names) if not torch.isfinite(terms[k].detach()).all()), 0)
    worst = int(all_reduce_max(float(local), info))
    return names[worst - 1] if worst else None


# ---- the loop --------------------------------------------------------------------------------------
def train(cfg: RunConfig, *, resume: str | None = None, allow_data_change: bool = False) -> dict[str, Any]:
    """Train ``cfg``; ``resume``: ``None`` (fresh run; inside a requeued SLURM job: ``auto``),
    ``"auto"`` (newest valid checkpoint of the run, fresh if none) or a checkpoint path. A resume
    whose prepared data differs (data hash) is refused unless ``allow_data_change``.
    Returns the final metrics (rank 0; empty dict with ``train.final_eval=false``)."""
    from protoseg.models import build_model

    info = init_distributed()
    try:
        return _train(cfg, info, resume, build_model, allow_data_change)
    finally:
        cleanup()


@dataclass
class _Training:
    """What one training process holds between the steps below."""

    cfg: RunConfig
    info: DistInfo
    spec: Any  # protoseg.data.specs.DatasetSpec
    raw_model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    synced: bool  # SyncBN in use
    amp_dtype: torch.dtype | None
    class_weight: torch.Tensor | None
    model: torch.nn.Module | None = None  # raw_model, in DDP when distributed
    start: int = 0  # the iteration training continues from
    resumed_from: Path | None = None
    data_changed_from: str | None = None
    cfg_dict: dict = field(default_factory=dict)


def _train(cfg: RunConfig, info: DistInfo, resume: str | None, build_model,
           allow_data_change: bool = False) -> dict[str, Any]:
    """Restore, run header, loaders, the loop, the final checkpoint and evaluation."""
    spec = cfg.check_data()  # before anything of the run is written
    if resume is None and int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0:
        resume = "auto"  # a requeued SLURM job resumes by itself
    t = _build(cfg, info, spec, build_model)
    if info.is_main:  # partial files of a killed writer (our temp-name pattern only)
        remove_stale_temps(cfg.run_dir / "checkpoints", recursive=False)
        remove_stale_temps(cfg.run_dir, recursive=False)
    _restore(t, resume, allow_data_change)
    run_data_hash = _write_run_header(t)
    t.model = t.raw_model
    if info.distributed:
        t.model = torch.nn.parallel.DistributedDataParallel(
            t.raw_model, device_ids=[info.device.index] if info.device.type == "cuda" else None,
            broadcast_buffers=False)  # prototypes are identical on all ranks by construction
    sampler, loader, eval_loader = _loaders(t)
    ckpt = Checkpointer(t, sampler, run_data_hash)
    _loop(t, sampler, loader, eval_loader, ckpt)
    return _finish(t, eval_loader, ckpt)


def _build(cfg: RunConfig, info: DistInfo, spec, build_model) -> _Training:
    """Numerics (determinism, AMP), then the model (the same seed on every rank), optimizer,
    schedule and gradient scaler; then the per-rank seeds."""
    t_cfg, device = cfg.train, info.device
    if t_cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    amp_dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[t_cfg.amp]
    if amp_dtype is not None and device.type != "cuda":
        warnings.warn(f"train.amp={t_cfg.amp} ignored on CPU", RuntimeWarning, stacklevel=2)
        amp_dtype = None
    seed_all(cfg.run.seed)
    model = build_model(cfg.model).to(device)
    if cfg.optim.backbone_lr_mult == 0:
        model.freeze_backbone()
    model, synced = maybe_sync_bn(model, info, t_cfg.sync_bn)
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim, t_cfg.iters)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    class_weight = (torch.tensor(cfg.data.class_weight, dtype=torch.float32, device=device)
                    if cfg.data.class_weight is not None else None)
    seed_all(cfg.run.seed + info.rank)
    return _Training(cfg=cfg, info=info, spec=spec, raw_model=model, optimizer=optimizer, scheduler=scheduler,
                     scaler=scaler, synced=synced, amp_dtype=amp_dtype, class_weight=class_weight,
                     cfg_dict=cfg.to_dict())


def _restore(t: _Training, resume: str | None, allow_data_change: bool) -> None:
    """Continue from a checkpoint (``--resume``): its config and data must be this run's."""
    cfg, info = t.cfg, t.info
    ckpt_dir = cfg.run_dir / "checkpoints"
    if resume is None:
        if info.is_main and ckpt_lib.list_checkpoints(ckpt_dir):
            raise ConfigError(f"{cfg.run_dir}: holds checkpoints of an earlier run; pass --resume auto to "
                              "continue it, or choose another run.name")
        return
    found = (ckpt_lib.find_resume(ckpt_dir) if resume == "auto"
             else (Path(resume), ckpt_lib.load_checkpoint(resume)))
    if found is None:
        if info.is_main:
            print(f"resume auto: no valid checkpoint in {ckpt_dir}; starting from iteration 0", file=sys.stderr)
        return
    path, ck = found
    check_resume_config(ck["config"], t.cfg_dict, path)
    t.data_changed_from = check_resume_data(ck, cfg.run_dir, cfg.data.root, path, allow_data_change)
    t.resumed_from = path
    t.raw_model.load_state_dict(ck["model"])
    t.start = int(ck["iteration"])
    if "optimizer" not in ck:  # a weights-only final.pt (train.final_ckpt=weights): a finished run
        if t.start < cfg.train.iters:
            raise ConfigError(f"{path}: weights-only checkpoint at iteration {t.start} < train.iters="
                              f"{cfg.train.iters}: it cannot resume training")
    else:
        t.optimizer.load_state_dict(ck["optimizer"])
        t.scheduler.load_state_dict(ck["scheduler"])
        t.scaler.load_state_dict(ck["scaler"])
        rngs = ck["rng"]
        if len(rngs) != info.world_size:
            warnings.warn(f"{path}: saved by {len(rngs)} ranks, resuming with {info.world_size}: "
                          "RNG states re-seeded, the run is no longer bitwise reproducible",
                          RuntimeWarning, stacklevel=2)
            seed_all(cfg.run.seed + info.rank + 7919 * t.start)
        else:
            ckpt_lib.set_rng_state(rngs[info.rank])
    if info.is_main:
        print(f"resumed from {path} at iteration {t.start}", file=sys.stderr)


def _write_run_header(t: _Training) -> str:
    """``config.yaml``, ``machine.json`` and this attempt's record in ``run_info.json`` (rank 0); the
    logs cut back to the start iteration. Returns the data hash of the prepared root."""
    cfg, info = t.cfg, t.info
    run_dir = cfg.run_dir
    run_data_hash = data_hash(cfg.data.root)
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(run_dir / "config.yaml", cfg.dump().encode())
        write_json_atomic(run_dir / "machine.json", machine_description())
        attempt = {"start_iteration": t.start, "git_commit": git_commit(), "data_hash": run_data_hash,
                   "host": socket.gethostname(), "started": now(), "world_size": info.world_size,
                   "device": str(info.device), "torch": torch.__version__, "sync_bn": t.synced,
                   "resumed_from_checkpoint": str(t.resumed_from) if t.resumed_from else None}
        if t.data_changed_from is not None:
            attempt["allow_data_change"] = {"from": t.data_changed_from, "to": run_data_hash}
        record_attempt(run_dir, attempt)
        truncate_jsonl(run_dir / "train_log.jsonl", t.start)
        truncate_jsonl(run_dir / "val_log.jsonl", t.start)
    return run_data_hash


def _loaders(t: _Training) -> tuple[IterationBatchSampler, DataLoader, DataLoader]:
    """The training sampler and loader from ``t.start`` on (data order: ``data_order``) and the
    evaluation loader of the dataset's evaluation split; sets ``t.class_weight`` when the config
    derives it from the training split (``data.class_weight_power``)."""
    cfg, info, t_cfg = t.cfg, t.info, t.cfg.train
    dataset = SegmentationDataset.from_spec(cfg.data.root, t.spec, train=True, seed=cfg.run.seed)
    if not cfg.data.photometric:
        dataset.pipeline = dataclasses.replace(dataset.pipeline, photometric=False)
    dataset.cache_decoded = cfg.data.cache_decoded
    if cfg.data.class_weight_power is not None:  # weights from this split's label frequencies
        t.class_weight = frequency_class_weights(label_pixel_counts(dataset),
                                                 cfg.data.class_weight_power).to(info.device)
    sampler = IterationBatchSampler(len(dataset), global_batch=t_cfg.batch_size, grad_accum=t_cfg.grad_accum,
                                    rank=info.rank, world_size=info.world_size, seed=cfg.run.seed,
                                    start=t.start, total=t_cfg.iters)
    loader = DataLoader(EpochItems(dataset), batch_sampler=sampler, num_workers=cfg.data.num_workers,
                        pin_memory=info.device.type == "cuda",
                        generator=torch.Generator().manual_seed(cfg.run.seed))
    eval_loader = build_eval_loader(cfg.data.root, t.spec, t.spec.eval_split, num_workers=0,
                                    batch_size=cfg.data.eval_batch_size, rank=info.rank,
                                    world_size=info.world_size)
    return sampler, loader, eval_loader


class Checkpointer:
    """The run's checkpoints (written by rank 0; every rank gives its RNG state): periodic ones with
    everything a resume needs, pruned to ``train.keep_ckpts``, and ``final.pt`` as
    ``train.final_ckpt`` says. ``last_saved``: the iteration of the newest one written."""

    def __init__(self, t: _Training, sampler: IterationBatchSampler, data_hash: str):
        self.t, self.sampler, self.data_hash = t, sampler, data_hash
        self.dir = t.cfg.run_dir / "checkpoints"
        self.last_saved = -1

    def save(self, iteration: int, name: str | None = None) -> None:
        t = self.t
        rngs = gather_objects(ckpt_lib.rng_state(), t.info)
        if t.info.is_main and name == "final.pt" and t.cfg.train.final_ckpt != "full":
            self._save_weights(iteration, name)
        elif t.info.is_main:
            ckpt_lib.save_atomic({
                "format": ckpt_lib.FORMAT_VERSION, "iteration": iteration, "model": t.raw_model.state_dict(),
                "optimizer": t.optimizer.state_dict(), "scheduler": t.scheduler.state_dict(),
                "scaler": t.scaler.state_dict(), "rng": rngs, "data_position": self.sampler.position(iteration),
                "config": t.cfg_dict, "world_size": t.info.world_size, "data_hash": self.data_hash,
            }, self.dir / (name or ckpt_lib.checkpoint_name(iteration)))
            if name is None:
                ckpt_lib.prune_checkpoints(self.dir, t.cfg.train.keep_ckpts)
        self.last_saved = iteration

    def _save_weights(self, iteration: int, name: str) -> None:
        """A weights-only final checkpoint; the finished run needs no resume state."""
        t = self.t
        state = t.raw_model.state_dict()
        if t.cfg.train.final_ckpt == "weights_fp16":
            state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        ckpt_lib.save_atomic({"format": ckpt_lib.FORMAT_VERSION, "iteration": iteration, "model": state,
                              "config": t.cfg_dict, "world_size": t.info.world_size}, self.dir / name)
        for p in ckpt_lib.list_checkpoints(self.dir):
            if p.name != name:
                p.unlink(missing_ok=True)


def _loop(t: _Training, sampler: IterationBatchSampler, loader: DataLoader, eval_loader: DataLoader,
          ckpt: Checkpointer) -> None:
    """Iterations ``t.start`` .. ``train.iters``: step, log, periodic checkpoint and validation; a
    signal stops after the iteration with a checkpoint (``Interrupted`` / ``Preempted``)."""
    t_cfg, info = t.cfg.train, t.info
    flag = SignalFlag().install()
    fault_at = int(os.environ.get(FAULT_SIGKILL_ENV, "-1"))
    log = TrainLog(t.cfg, info, sampler, t.start)
    data_iter = iter(loader)
    try:
        for it in range(t.start, t_cfg.iters):
            step_terms, lr = _step(t, data_iter, it, fault_at)
            done = it + 1
            log.add(done, step_terms, lr)
            if done % t_cfg.ckpt_interval == 0 and done < t_cfg.iters:
                ckpt.save(done)
            if t_cfg.val_interval and done % t_cfg.val_interval == 0 and done < t_cfg.iters:
                m = evaluate_model(t.raw_model, eval_loader, t.spec, device=info.device, amp_dtype=t.amp_dtype)
                if info.is_main:
                    append_jsonl(t.cfg.run_dir / "val_log.jsonl", {"iter": done, "mIoU": m["mIoU"],
                                                                   "aAcc": m["aAcc"], "mAcc": m["mAcc"]})
            if all_reduce_max(float(flag.signum), info) > 0:
                signum = flag.signum or signal.SIGTERM
                if ckpt.last_saved != done:
                    ckpt.save(done)
                if signum == signal.SIGINT:
                    raise Interrupted(done)
                requeued = requeue() if info.is_main else False
                raise Preempted(done, signum, requeued)
    finally:
        flag.restore()
        log.close()


def _step(t: _Training, data_iter, it: int, fault_at: int) -> tuple[dict[str, float], float]:
    """One iteration: the losses (``compute_losses``) of ``train.grad_accum`` micro-batches, then one
    optimizer and schedule step. Returns the iteration's mean loss terms and the lr it used."""
    t_cfg, info, device, model = t.cfg.train, t.info, t.info.device, t.model
    model.train()
    step_terms: dict[str, float] = {}
    for a in range(t_cfg.grad_accum):
        batch = next(data_iter)
        images = batch["image"].to(device, non_blocking=True)
        labels = batch["label"].to(device, non_blocking=True)
        if t_cfg.label_stride > 1:  # the losses on the decoder's grid (train.label_stride)
            labels = labels[:, ::t_cfg.label_stride, ::t_cfg.label_stride]
        sync = (contextlib.nullcontext() if not info.distributed or a == t_cfg.grad_accum - 1
                else model.no_sync())
        with sync:
            with torch.autocast(device_type=device.type, dtype=t.amp_dtype, enabled=t.amp_dtype is not None):
                out = model(images, labels)
                terms = compute_losses(out, labels, ignore_index=t.spec.ignore_index,
                                       aux_weight=t.cfg.model.aux_loss_weight,
                                       align_corners=t.cfg.model.align_corners,
                                       reduction=t_cfg.loss_reduction, info=info, class_weight=t.class_weight)
            bad = _first_nonfinite(terms, info)
            if bad is not None:
                raise NonFiniteLossError(it, bad, float(terms[bad].detach().float().mean()))
            t.scaler.scale(terms["total"] / t_cfg.grad_accum).backward()
        for k, v in terms.items():
            step_terms[k] = step_terms.get(k, 0.0) + float(v.detach()) / t_cfg.grad_accum
    if it == fault_at:
        os.kill(os.getpid(), signal.SIGKILL)
    if t_cfg.max_grad_norm > 0:
        t.scaler.unscale_(t.optimizer)
        torch.nn.utils.clip_grad_norm_(t.raw_model.parameters(), t_cfg.max_grad_norm)
    lr = t.optimizer.param_groups[0]["lr"]
    t.scaler.step(t.optimizer)
    t.scaler.update()
    t.optimizer.zero_grad(set_to_none=True)
    t.scheduler.step()
    return step_terms, lr


def _finish(t: _Training, eval_loader: DataLoader, ckpt: Checkpointer) -> dict[str, Any]:
    """``final.pt``, the final evaluation (``metrics.json`` and the other outputs) and ``finished``."""
    t_cfg, info, run_dir = t.cfg.train, t.info, t.cfg.run_dir
    if t.start < t_cfg.iters or not (ckpt.dir / "final.pt").is_file():
        ckpt.save(t_cfg.iters, "final.pt")
    metrics: dict[str, Any] = {}
    if t_cfg.final_eval:
        metrics = evaluate_model(t.raw_model, eval_loader, t.spec, device=info.device, amp_dtype=t.amp_dtype)
        if info.is_main:
            write_eval_outputs(run_dir, metrics, t.spec.class_names, extra={
                "iteration": t_cfg.iters, "split": t.spec.eval_split, "dataset": t.spec.name,
                "checkpoint": str(ckpt.dir / "final.pt"), "seed": t.cfg.run.seed})
    if info.is_main:
        record_finished(run_dir)
    return metrics
