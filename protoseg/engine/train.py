"""The training loop, top to bottom: ``train(cfg, resume=...)``.

Files of a run (``<output_dir>/<name>/``): ``config.yaml`` (resolved), ``run_info.json`` (provenance:
one record per attempt, never overwritten: start iteration, git commit, data hash, host, time, world
size; ``finished`` at the end), ``train_log.jsonl`` (loss terms, lr, throughput every ``log_interval``),
``val_log.jsonl`` (periodic validation), ``checkpoints/`` and, at the end, ``metrics.json``,
``per_class_iou.csv``, ``confusion.png``.

Data order: iteration ``t`` uses the global batch ``t mod n_batches`` of the permutation of epoch
``t // n_batches`` (seeded by ``(seed, epoch)``); rank ``r`` takes its contiguous share of each
accumulation step. The order therefore depends on the iteration only, which is the data-order position
a checkpoint records, and 1 process sees the same global batches as N.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from protoseg.atomic_io import remove_stale_temps, write_bytes_atomic, write_json_atomic
from protoseg.data.dataset import SegmentationDataset

from . import checkpoint as ckpt_lib
from .config import ConfigError, RunConfig, flatten_dict
from .distributed import DistInfo, all_reduce_max, cleanup, gather_objects, init_distributed, maybe_sync_bn
from .evaluate import build_eval_loader, evaluate_model, write_eval_outputs
from .optim import build_optimizer, build_scheduler

EXIT_PREEMPTED = 75  # EX_TEMPFAIL: checkpoint written after SIGUSR1/SIGTERM; the workflow retries
EXIT_INTERRUPTED = 130  # 128 + SIGINT: checkpoint written after Ctrl-C (a second Ctrl-C aborts at once)
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


class Interrupted(Exception):
    """Raised after the checkpoint of a first Ctrl-C (SIGINT) is written."""

    def __init__(self, iteration: int):
        self.iteration = iteration
        super().__init__(f"interrupted (Ctrl-C) at iteration {iteration}: checkpoint written; continue "
                         f"with --resume auto; exiting with status {EXIT_INTERRUPTED}")


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


def git_commit(repo: Path | None = None) -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=repo or Path(__file__).resolve().parents[2], timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def data_hash(root: str | Path) -> str:
    """sha256 of the prepared root's manifest.json (it lists the sha256 of every file), else of meta.json."""
    from protoseg.atomic_io import sha256_file

    for name in ("manifest.json", "meta.json"):
        p = Path(root) / name
        if p.is_file():
            return sha256_file(p)
    return "unknown"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _read_run_info(path: Path) -> dict:
    try:
        info = json.loads(path.read_text()) if path.is_file() else {}
    except (ValueError, UnicodeDecodeError):
        info = {}
    return info if isinstance(info, dict) else {}


def record_attempt(run_dir: Path, attempt: dict) -> dict:
    """Append ``attempt`` to ``run_info.json``'s ``attempts`` (earlier records are kept; a file of the
    old one-record format becomes the first attempt). Top-level ``git_commit``/``data_hash`` stay
    those of the first attempt; ``git_commits``/``data_hashes`` list every distinct one."""
    path = run_dir / "run_info.json"
    info = _read_run_info(path)
    attempts = info.get("attempts") if isinstance(info.get("attempts"), list) else []
    if not attempts and info.get("started"):  # written by an older version: one record, keep it
        attempts = [{"start_iteration": info.get("resumed_from", 0), "git_commit": info.get("git_commit"),
                     "data_hash": info.get("data_hash"), "started": info.get("started")}]
    attempts.append(attempt)
    first = attempts[0]
    info.update({k: v for k, v in attempt.items() if k in ("world_size", "device", "torch", "sync_bn")})
    info.update({"git_commit": first.get("git_commit"), "data_hash": first.get("data_hash"),
                 "git_commits": list(dict.fromkeys(a.get("git_commit") for a in attempts)),
                 "data_hashes": list(dict.fromkeys(a.get("data_hash") for a in attempts)),
                 "resumed_from": attempt["start_iteration"], "started": first.get("started"),
                 "attempts": attempts})
    info.pop("finished", None)
    write_json_atomic(path, info)
    return info


def _record_finished(run_dir: Path) -> None:
    path = run_dir / "run_info.json"
    info = _read_run_info(path)
    info["finished"] = _now()
    if isinstance(info.get("attempts"), list) and info["attempts"]:
        info["attempts"][-1]["finished"] = info["finished"]
    write_json_atomic(path, info)


def _check_resume_data(ck: dict, run_dir: Path, root: str, path: Path, allow: bool) -> str | None:
    """The data hash the checkpoint was trained on must be the current root's (else ConfigError,
    naming both), unless ``allow``. Returns the previous hash when it differs and is allowed."""
    before = ck.get("data_hash")
    if before is None:  # a checkpoint of an older version: the run's last recorded attempt
        attempts = _read_run_info(run_dir / "run_info.json").get("attempts") or []
        before = attempts[-1].get("data_hash") if attempts and isinstance(attempts[-1], dict) else None
    now = data_hash(root)
    if before is None or before == now:
        return None
    if not allow:
        raise ConfigError(f"{path}: cannot resume, the data changed: the checkpoint was trained on data hash "
                          f"{before}, data.root={root} has {now}. Point data.root at the original prepared "
                          "root, or pass --allow-data-change to continue on the new data (recorded in "
                          "run_info.json)")
    warnings.warn(f"resuming on changed data (data hash {before} -> {now}); recorded in run_info.json",
                  RuntimeWarning, stacklevel=2)
    return before


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
    """SIGUSR1/SIGTERM/SIGINT set a flag the loop checks after every iteration (never stops mid-step);
    a second SIGINT (Ctrl-C) raises KeyboardInterrupt at once."""

    def __init__(self):
        self.signum = 0
        self._old: dict[int, Any] = {}

    def install(self) -> "_SignalFlag":
        for s in (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT):
            try:
                self._old[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame) -> None:
        if signum == signal.SIGINT and self.signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: abort now, no checkpoint
        if signum == signal.SIGINT:
            print("\nCtrl-C: stopping after this iteration with a checkpoint (Ctrl-C again aborts at once)",
                  file=sys.stderr, flush=True)
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


def _train(cfg: RunConfig, info: DistInfo, resume: str | None, build_model,
           allow_data_change: bool = False) -> dict[str, Any]:
    t_cfg, device = cfg.train, info.device
    run_dir = cfg.run_dir
    ckpt_dir = run_dir / "checkpoints"
    spec = cfg.dataset_spec()
    if not cfg.data.root:
        raise ConfigError("data.root is empty: give the prepared root (data.root=/path/to/prepared)")
    if not (Path(cfg.data.root) / "meta.json").is_file():  # before anything of the run is written
        raise ConfigError(f"data.root={cfg.data.root}: not a complete prepared root (meta.json missing: "
                          "preparation never finished or failed); run `protoseg prepare` first")
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
    class_weight = (torch.tensor(cfg.data.class_weight, dtype=torch.float32, device=device)
                    if cfg.data.class_weight is not None else None)
    seed_all(cfg.run.seed + info.rank)

    start = 0
    cfg_dict = cfg.to_dict()
    if info.is_main:  # partial files of a killed writer (our temp-name pattern only)
        remove_stale_temps(ckpt_dir, recursive=False)
        remove_stale_temps(run_dir, recursive=False)
    resumed_path, data_changed_from = None, None
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
            data_changed_from = _check_resume_data(ck, run_dir, cfg.data.root, path, allow_data_change)
            resumed_path = path
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

    run_data_hash = data_hash(cfg.data.root)
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(run_dir / "config.yaml", cfg.dump().encode())
        attempt = {"start_iteration": start, "git_commit": git_commit(), "data_hash": run_data_hash,
                   "host": socket.gethostname(), "started": _now(), "world_size": info.world_size,
                   "device": str(device), "torch": torch.__version__, "sync_bn": synced,
                   "resumed_from_checkpoint": str(resumed_path) if resumed_path else None}
        if data_changed_from is not None:
            attempt["allow_data_change"] = {"from": data_changed_from, "to": run_data_hash}
        record_attempt(run_dir, attempt)
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
                "config": cfg_dict, "world_size": info.world_size, "data_hash": run_data_hash,
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
                                               reduction=t_cfg.loss_reduction, info=info,
                                               class_weight=class_weight)
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
                if signum == signal.SIGINT:
                    raise Interrupted(done)
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
    if info.is_main:
        _record_finished(run_dir)
    return metrics
