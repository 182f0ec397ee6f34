"""The ``train`` section of a run config: iterations, batch, precision, intervals, checkpoints."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainConfig:
    iters: int = 80000
    batch_size: int = 16  # GLOBAL batch: split over ranks and accumulation steps
    grad_accum: int = 1
    amp: str = "none"  # none | bf16 | fp16 (CUDA only; ignored with a warning on CPU)
    deterministic: bool = False  # torch.use_deterministic_algorithms; bitwise resume on CPU
    log_interval: int = 50  # train_log.jsonl rows and progress-bar refresh
    val_interval: int = 0  # 0: validate only at the end
    ckpt_interval: int = 1000
    keep_ckpts: int = 3  # newest periodic checkpoints kept (0: all)
    # full: final.pt holds everything a resume needs (optimizer, scheduler, RNG); weights: final.pt holds
    # the model and config only and the periodic checkpoints are deleted once it is written (a finished
    # run keeps what evaluation needs: about 1/3 of the disk with AdamW, 1/2 with SGD momentum);
    # weights_fp16: the same with floating-point tensors stored in float16 (half again; metrics.json is
    # computed before, in float32; a later `protoseg evaluate` of final.pt sees float16-rounded weights)
    final_ckpt: str = "full"
    final_eval: bool = True
    progress: bool = True
    max_grad_norm: float = 0.0  # 0: no clipping
    # every loss on labels subsampled (nearest) by this stride, to the decoder's grid: 1 = MMSegmentation's
    # loss at image resolution; the mini scale uses 2 (its decoders are at stride 2; docs/mini_recipe.md)
    label_stride: int = 1
    # global: each rank's loss means are reweighted by its share of the global labelled pixels, so the
    # DDP gradient equals one process's on the global batch (independent of the GPU count);
    # per_rank: each rank averages over its own pixels, as MMSegmentation and the release do
    loss_reduction: str = "global"
    sync_bn: str = "auto"  # auto: synchronised BN when world > 1 (CUDA SyncBatchNorm; gloo CPUSyncBatchNorm) | on | off

