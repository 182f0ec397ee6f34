"""The training loop, top to bottom: ``train(cfg, resume=...)``.

Files of a run (``<output_dir>/<name>/``): ``config.yaml`` (resolved), ``run_info.json`` (git commit,
data hash, world size), ``train_log.jsonl`` (loss terms, lr, throughput every ``log_interval``),
``val_log.jsonl`` (periodic validation), ``checkpoints/`` and, at the end, ``metrics.json``,
``per_class_iou.csv``, ``confusion.png``.

Data order: iteration ``t`` uses the global batch ``t mod n_batches`` of the permutation of epoch
``t // n_batches`` (seeded by ``(seed, epoch)``); rank ``r`` takes its contiguous share of each
accumulation step. The order therefore depends on the iteration only, which is the data-order position
a checkpoint records, and 1 process sees the same global batches as N.
"""
from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler

from protoseg.data.atomic import write_bytes_atomic, write_json_atomic
from protoseg.data.dataset import SegmentationDataset
from protoseg.method.losses import ce_loss

from . import checkpoint as ckpt_lib
from .config import ConfigError, RunConfig, flatten_dict
from .distributed import DistInfo, all_reduce_max, cleanup, gather_objects, init_distributed, maybe_sync_bn
from .evaluate import build_eval_loader, evaluate_model, write_eval_outputs
from .optim import build_optimizer, build_scheduler

EXIT_PREEMPTED = 75  # EX_TEMPFAIL: checkpoint written after SIGUSR1/SIGTERM; the workflow retries
EXIT_NONFINITE = 3  # a loss term became NaN/inf
FAULT_SIGKILL_ENV = "PROTOSEG_FAULT_SIGKILL_AT_ITER"  # test hook: SIGKILL itself inside iteration N
# keys that may differ between a checkpoint's config and a resuming run's
RESUME_FREE_KEYS = {"run.output_dir", "data.root", "data.num_workers", "train.progress", "train.log_interval",
                    "train.keep_ckpts", "train.final_ckpt", "data.eval_batch_size"}


class NonFiniteLossError(RuntimeError):
    def __init__(self, iteration: int, term: str, value: float | None = None):
        self.iteration, self.term = iteration, term
        super().__init__(f"iteration {iteration}: loss term {term!r} is not finite ({value}); stopping. "
                         "The last good checkpoint is kept.")


class Preempted(Exception):
    """Raised after the checkpoint of a SIGUSR1/SIGTERM is written."""

    def __init__(self, iteration: int, signum: int, requeued: bool):
        self.iteration, self.signum, self.requeued = iteration, signum, requeued
        super().__init__(f"signal {signal.Signals(signum).name} at iteration {iteration}: checkpoint "
                         f"written; {'requeued' if requeued else 'exiting'} with status {EXIT_PREEMPTED}")


# ---- data order ------------------------------------------------------------------------------------
class _EpochItems(Dataset):
    """Items keyed by ``(epoch, index)``: the augmentation of a sample is fixed by (seed, epoch, index)
    whatever the worker or the resume point."""

    def __init__(self, ds: SegmentationDataset):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, i = key
        image, label = self.ds.load(i)
        out = self.ds.pipeline(image, label, np.random.default_rng([self.ds.seed, epoch, i]))
        return {"image": out["image"], "label": out["label"]}


class IterationBatchSampler(Sampler[list]):
    """This rank's micro-batches from iteration ``start`` to ``total`` (``grad_accum`` per iteration)."""

    def __init__(self, n: int, *, global_batch: int, grad_accum: int, rank: int, world_size: int,
                 seed: int, start: int, total: int):
        if n < global_batch:
            raise ConfigError(f"train.batch_size={global_batch} exceeds the {n} training images")
        per_rank = global_batch // (grad_accum * world_size)
        if per_rank * grad_accum * world_size != global_batch:
            raise ConfigError(f"train.batch_size={global_batch} is not divisible by grad_accum x world size "
                              f"= {grad_accum} x {world_size}")
        self.n, self.B, self.accum, self.b = n, global_batch, grad_accum, per_rank
        self.rank, self.seed, self.start, self.total = rank, seed, start, total
        self.per_epoch = n // global_batch

    def position(self, iteration: int) -> dict[str, int]:
        return {"iteration": iteration, "epoch": iteration // self.per_epoch,
                "batch_in_epoch": iteration % self.per_epoch}

    def global_batch(self, iteration: int) -> list[int]:
        epoch, j = divmod(iteration, self.per_epoch)
        perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + epoch))
        return perm[j * self.B:(j + 1) * self.B].tolist()

    def __iter__(self) -> Iterator[list]:
        for t in range(self.start, self.total):
            epoch = t // self.per_epoch
            g = self.global_batch(t)
            for a in range(self.accum):
                micro = g[a * self.B // self.accum:(a + 1) * self.B // self.accum]
                yield [(epoch, i) for i in micro[self.rank * self.b:(self.rank + 1) * self.b]]

    def __len__(self) -> int:
        return (self.total - self.start) * self.accum


# ---- helpers ---------------------------------------------------------------------------------------
def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def compute_losses(out, labels: torch.Tensor, *, ignore_index: int, aux_weight: float,
                   align_corners: bool = False, reduction: str = "per_rank",
                   info: DistInfo | None = None) -> dict[str, torch.Tensor]:
    """Eq. 13 of the head (``ce``, ``ppc``, ``ppd``) plus ``aux`` (weight 0.4 in the recipes) and
    ``total``. The logged terms are this rank's means; with ``reduction="global"`` under DDP the
    ``total`` weighs each rank's means by its share of the global labelled pixels (one all-reduce),
    so that DDP's gradient average equals the gradient of one process on the global batch."""
    from protoseg.heads import segmentation_loss

    terms = segmentation_loss(out.head, labels, ignore_index=ignore_index, align_corners=align_corners)
    weights = {"ce": 1.0, **out.head.loss_weights}
    if out.aux_logits is not None:
        terms["aux"] = ce_loss(out.aux_logits, labels, ignore_index=ignore_index, align_corners=align_corners)
        weights["aux"] = aux_weight
    scale: dict[str, torch.Tensor | float] = {name: 1.0 for name in weights}
    if reduction == "global" and info is not None and info.distributed:
        labelled = (labels != ignore_index).sum()
        counts = {"ce": labelled, "aux": labelled, **out.head.loss_pixels}
        names = list(weights)
        local = torch.stack([counts[n].detach().float() for n in names])
        total = local.clone()
        dist.all_reduce(total)
        scale = dict(zip(names, local * info.world_size / total.clamp_min(1)))
    terms["total"] = sum(weights[n] * scale[n] * terms[n] for n in weights)
    return terms


def _first_nonfinite(terms: dict[str, torch.Tensor], info: DistInfo) -> str | None:
    names = list(terms)
    local = next((i + 1 for i, k in enumerate(names) if not torch.isfinite(terms[k].detach()).all()), 0)
    worst = int(all_reduce_max(float(local), info))
    return names[worst - 1] if worst else None


def git_commit(repo: Path | None = None) -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=repo or Path(__file__).resolve().parents[2], timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def data_hash(root: str | Path) -> str:
    """sha256 of the prepared root's manifest.json (it lists the sha256 of every file), else of meta.json."""
    from protoseg.data.atomic import sha256_file

    for name in ("manifest.json", "meta.json"):
        p = Path(root) / name
        if p.is_file():
            return sha256_file(p)
    return "unknown"


def _check_resume_config(saved: dict, current: dict, path: Path) -> None:
    a, b = flatten_dict(saved), flatten_dict(current)
    diff = sorted(k for k in set(a) | set(b) if k not in RESUME_FREE_KEYS and a.get(k) != b.get(k))
    if diff:
        raise ConfigError(f"{path}: cannot resume, the config differs in {diff} "
                          f"(checkpoint: {[a.get(k) for k in diff]}, now: {[b.get(k) for k in diff]})")


def _truncate_jsonl(path: Path, last_iter: int) -> None:
    if not path.is_file():
        return
    rows = [ln for ln in path.read_text().splitlines() if ln.strip()]
    keep = []
    for ln in rows:
        try:
            if json.loads(ln)["iter"] <= last_iter:
                keep.append(ln)
        except (ValueError, KeyError):
            pass
    write_bytes_atomic(path, ("\n".join(keep) + "\n" if keep else "").encode())


def _append_jsonl(path: Path, row: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()


class _SignalFlag:
    """SIGUSR1/SIGTERM set a flag the loop checks after every iteration (never stops mid-step)."""

    def __init__(self):
        self.signum = 0
        self._old: dict[int, Any] = {}

    def install(self) -> "_SignalFlag":
        for s in (signal.SIGUSR1, signal.SIGTERM):
            try:
                self._old[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame) -> None:
        self.signum = signum

    def restore(self) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


def requeue() -> bool:
    """``scontrol requeue $SLURM_JOB_ID`` inside SLURM; False outside or if it fails."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return False
    try:
        subprocess.run(["scontrol", "requeue", job], check=True, timeout=60)
        return True
    except (OSError, subprocess.SubprocessError) as err:
        print(f"warning: scontrol requeue {job} failed: {err}", file=sys.stderr)
        return False


# ---- the loop --------------------------------------------------------------------------------------
def train(cfg: RunConfig, *, resume: str | None = None) -> dict[str, Any]:
    """Train ``cfg``; ``resume``: ``None`` (fresh run; inside a requeued SLURM job: ``auto``),
    ``"auto"`` (newest valid checkpoint of the run, fresh if none) or a checkpoint path.
    Returns the final metrics (rank 0; empty dict with ``train.final_eval=false``)."""
    from protoseg.models import build_model

    info = init_distributed()
    try:
        return _train(cfg, info, resume, build_model)
    finally:
        cleanup()


def _train(cfg: RunConfig, info: DistInfo, resume: str | None, build_model) -> dict[str, Any]:
    t_cfg, device = cfg.train, info.device
    run_dir = cfg.run_dir
    ckpt_dir = run_dir / "checkpoints"
    spec = cfg.dataset_spec()
    if not cfg.data.root:
        raise ConfigError("data.root is empty: give the prepared root (data.root=/path/to/prepared)")
    if cfg.model.num_classes != spec.num_classes:
        raise ConfigError(f"model.num_classes={cfg.model.num_classes} but dataset {spec.name!r} has "
                          f"{spec.num_classes} classes")
    if cfg.model.method is not None and cfg.model.method.ignore_index != spec.ignore_index:
        raise ConfigError(f"model.method.ignore_index={cfg.model.method.ignore_index} but dataset "
                          f"{spec.name!r} uses {spec.ignore_index}")
    if resume is None and int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0:
        resume = "auto"  # a requeued SLURM job resumes by itself

    if t_cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    amp_dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[t_cfg.amp]
    if amp_dtype is not None and device.type != "cuda":
        warnings.warn(f"train.amp={t_cfg.amp} ignored on CPU", RuntimeWarning, stacklevel=2)
        amp_dtype = None

    # model init: the same seed on every rank, then per-rank seeds
    seed_all(cfg.run.seed)
    model = build_model(cfg.model).to(device)
    model, synced = maybe_sync_bn(model, info, t_cfg.sync_bn)
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim, t_cfg.iters)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    seed_all(cfg.run.seed + info.rank)

    start = 0
    cfg_dict = cfg.to_dict()
    if resume is not None:
        found = (ckpt_lib.find_resume(ckpt_dir) if resume == "auto"
                 else (Path(resume), ckpt_lib.load_checkpoint(resume)))
        if found is None:
            if info.is_main:
                print(f"resume auto: no valid checkpoint in {ckpt_dir}; starting from iteration 0",
                      file=sys.stderr)
        else:
            path, ck = found
            _check_resume_config(ck["config"], cfg_dict, path)
            model.load_state_dict(ck["model"])
            start = int(ck["iteration"])
            if "optimizer" not in ck:  # a weights-only final.pt (train.final_ckpt=weights): a finished run
                if start < t_cfg.iters:
                    raise ConfigError(f"{path}: weights-only checkpoint at iteration {start} < train.iters="
                                      f"{t_cfg.iters}: it cannot resume training")
            else:
                optimizer.load_state_dict(ck["optimizer"])
                scheduler.load_state_dict(ck["scheduler"])
                scaler.load_state_dict(ck["scaler"])
                rngs = ck["rng"]
                if len(rngs) != info.world_size:
                    warnings.warn(f"{path}: saved by {len(rngs)} ranks, resuming with {info.world_size}: "
                                  "RNG states re-seeded, the run is no longer bitwise reproducible",
                                  RuntimeWarning, stacklevel=2)
                    seed_all(cfg.run.seed + info.rank + 7919 * start)
                else:
                    ckpt_lib.set_rng_state(rngs[info.rank])
            if info.is_main:
                print(f"resumed from {path} at iteration {start}", file=sys.stderr)
            del ck
    elif info.is_main and ckpt_lib.list_checkpoints(ckpt_dir):
        raise ConfigError(f"{run_dir}: holds checkpoints of an earlier run; pass --resume auto to "
                          "continue it, or choose another run.name")

    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(run_dir / "config.yaml", cfg.dump().encode())
        write_json_atomic(run_dir / "run_info.json", {
            "git_commit": git_commit(), "data_hash": data_hash(cfg.data.root), "world_size": info.world_size,
            "device": str(device), "torch": torch.__version__, "sync_bn": synced, "resumed_from": start,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S")})
        _truncate_jsonl(run_dir / "train_log.jsonl", start)
        _truncate_jsonl(run_dir / "val_log.jsonl", start)

    raw_model = model
    if info.distributed:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            broadcast_buffers=False)  # prototypes are identical on all ranks by construction

    dataset = SegmentationDataset.from_spec(cfg.data.root, spec, train=True, seed=cfg.run.seed)
    if not cfg.data.photometric:
        import dataclasses

        dataset.pipeline = dataclasses.replace(dataset.pipeline, photometric=False)
    sampler = IterationBatchSampler(len(dataset), global_batch=t_cfg.batch_size, grad_accum=t_cfg.grad_accum,
                                    rank=info.rank, world_size=info.world_size, seed=cfg.run.seed,
                                    start=start, total=t_cfg.iters)
    loader = DataLoader(_EpochItems(dataset), batch_sampler=sampler, num_workers=cfg.data.num_workers,
                        pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(cfg.run.seed))
    eval_loader = build_eval_loader(cfg.data.root, spec, spec.eval_split, num_workers=0, rank=info.rank,
                                    world_size=info.world_size)

    flag = _SignalFlag().install()
    fault_at = int(os.environ.get(FAULT_SIGKILL_ENV, "-1"))
    bar = None
    if info.is_main and t_cfg.progress and sys.stderr.isatty():  # not a terminal (a log file): lines below
        from tqdm import tqdm

        bar = tqdm(total=t_cfg.iters, initial=start, desc=cfg.run.name, dynamic_ncols=True, file=sys.stderr)
    data_iter = iter(loader)
    sums: dict[str, float] = {}
    n_sum, t_last, it_last = 0, time.perf_counter(), start
    last_saved = -1

    def save(iteration: int, name: str | None = None) -> None:
        nonlocal last_saved
        rngs = gather_objects(ckpt_lib.rng_state(), info)
        if info.is_main and name == "final.pt" and t_cfg.final_ckpt != "full":
            state = raw_model.state_dict()
            if t_cfg.final_ckpt == "weights_fp16":
                state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
            ckpt_lib.save_atomic({"format": ckpt_lib.FORMAT_VERSION, "iteration": iteration,
                                  "model": state, "config": cfg_dict,
                                  "world_size": info.world_size}, ckpt_dir / name)
            for p in ckpt_lib.list_checkpoints(ckpt_dir):  # the finished run needs no resume state
                if p.name != "final.pt":
                    p.unlink(missing_ok=True)
        elif info.is_main:
            ckpt_lib.save_atomic({
                "format": ckpt_lib.FORMAT_VERSION, "iteration": iteration, "model": raw_model.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(), "rng": rngs, "data_position": sampler.position(iteration),
                "config": cfg_dict, "world_size": info.world_size,
            }, ckpt_dir / (name or ckpt_lib.checkpoint_name(iteration)))
            if name is None:
                ckpt_lib.prune_checkpoints(ckpt_dir, t_cfg.keep_ckpts)
        last_saved = iteration

    try:
        for it in range(start, t_cfg.iters):
            model.train()
            step_terms: dict[str, float] = {}
            for a in range(t_cfg.grad_accum):
                batch = next(data_iter)
                images = batch["image"].to(device, non_blocking=True)
                labels = batch["label"].to(device, non_blocking=True)
                sync = (contextlib.nullcontext() if not info.distributed or a == t_cfg.grad_accum - 1
                        else model.no_sync())
                with sync:
                    with torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                        out = model(images, labels)
                        terms = compute_losses(out, labels, ignore_index=spec.ignore_index,
                                               aux_weight=cfg.model.aux_loss_weight,
                                               align_corners=cfg.model.align_corners,
                                               reduction=t_cfg.loss_reduction, info=info)
                    bad = _first_nonfinite(terms, info)
                    if bad is not None:
                        raise NonFiniteLossError(it, bad, float(terms[bad].detach().float().mean()))
                    scaler.scale(terms["total"] / t_cfg.grad_accum).backward()
                for k, v in terms.items():
                    step_terms[k] = step_terms.get(k, 0.0) + float(v.detach()) / t_cfg.grad_accum
            if it == fault_at:
                os.kill(os.getpid(), signal.SIGKILL)
            if t_cfg.max_grad_norm > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(raw_model.parameters(), t_cfg.max_grad_norm)
            lr = optimizer.param_groups[0]["lr"]
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            done = it + 1

            for k, v in step_terms.items():
                sums[k] = sums.get(k, 0.0) + v
            n_sum += 1
            if done % t_cfg.log_interval == 0 or done == t_cfg.iters:
                now = time.perf_counter()
                ips = (done - it_last) * t_cfg.batch_size / max(now - t_last, 1e-9)
                row = {"iter": done, "lr": lr, **{k: v / n_sum for k, v in sums.items()}, "img_per_s": ips,
                       "epoch": sampler.position(done)["epoch"]}
                if info.is_main:
                    _append_jsonl(run_dir / "train_log.jsonl", row)
                    if bar is None:  # one progress line per log_interval (logs, SLURM output)
                        terms_text = " ".join(f"{k} {v / n_sum:.4g}" for k, v in sums.items())
                        print(f"{cfg.run.name} iter {done}/{t_cfg.iters} {terms_text} lr {lr:.3g} "
                              f"{ips:.1f} img/s", file=sys.stderr, flush=True)
                    else:
                        bar.set_postfix({k: f"{v / n_sum:.4g}" for k, v in sums.items()} |
                                        {"lr": f"{lr:.3g}", "img/s": f"{ips:.1f}"}, refresh=False)
                sums, n_sum, t_last, it_last = {}, 0, now, done
            if bar is not None:
                bar.update(1)

            if done % t_cfg.ckpt_interval == 0 and done < t_cfg.iters:
                save(done)
            if t_cfg.val_interval and done % t_cfg.val_interval == 0 and done < t_cfg.iters:
                m = evaluate_model(raw_model, eval_loader, spec, device=device, amp_dtype=amp_dtype)
                if info.is_main:
                    _append_jsonl(run_dir / "val_log.jsonl", {"iter": done, "mIoU": m["mIoU"], "aAcc": m["aAcc"],
                                                              "mAcc": m["mAcc"]})
            if all_reduce_max(float(flag.signum), info) > 0:
                signum = flag.signum or signal.SIGTERM
                if last_saved != done:
                    save(done)
                requeued = requeue() if info.is_main else False
                raise Preempted(done, signum, requeued)
    finally:
        flag.restore()
        if bar is not None:
            bar.close()

    if start < t_cfg.iters or not (ckpt_dir / "final.pt").is_file():
        save(t_cfg.iters, "final.pt")
    metrics: dict[str, Any] = {}
    if t_cfg.final_eval:
        metrics = evaluate_model(raw_model, eval_loader, spec, device=device, amp_dtype=amp_dtype)
        if info.is_main:
            write_eval_outputs(run_dir, metrics, spec.class_names, extra={
                "iteration": t_cfg.iters, "split": spec.eval_split, "dataset": spec.name,
                "checkpoint": str(ckpt_dir / "final.pt"), "seed": cfg.run.seed})
    return metrics
