"""Prototype head vs softmax head on the same backbone: inference latency, training-step time, FLOPs.

The paper claims the nonparametric head adds no cost at test time. Measured here on CPU, batch 1,
512x512 (``--size``), for the paper's models (ResNet-101 FCN, HRNetV2-W48, Swin-B + MLP, MiT-B0/B2/B4
+ MLP) with C = 150 classes:
- ``latency``: eval forward (``torch.inference_mode``), the two models timed alternately (A, B, A, B, ...)
  so that load changes hit both; median and min of ``--reps`` runs after one warm-up each, on the
  wall clock and on process CPU time (robust to other jobs on the machine); target: prototype /
  softmax <= 1.02.
- ``train``: one SGD step (forward with labels, Eq. 13 loss + auxiliary head, backward, step) at
  C = 150, same alternation; target <= 1.10. The prototype step includes clustering and the update.
- ``flops``: FLOPs of one forward counted by ``torch.utils.flop_counter.FlopCounterMode`` (2 per
  multiply-add; convolutions and matmuls) and learnable parameters, for every model and head.

    python benchmarks/bench_heads_latency.py --out results/bench_heads_latency.json
    python benchmarks/bench_heads_latency.py --models mit_b0 --reps 3 --train-models mit_b0   # quick
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from protoseg.heads import segmentation_loss
from protoseg.method import ce_loss
from protoseg.models import ModelConfig, build_model, count_parameters

PAPER_MODELS = ("resnet101", "hrnet_w48", "swin_base", "mit_b0", "mit_b2", "mit_b4")
HEADS = ("softmax", "prototype")


def pair(backbone: str, num_classes: int) -> dict[str, torch.nn.Module]:
    """Softmax and prototype models sharing backbone and decoder weights."""
    torch.manual_seed(0)
    models = {head: build_model(ModelConfig(backbone=backbone, head=head, num_classes=num_classes))
              for head in HEADS}
    shared = {k: v for k, v in models["softmax"].state_dict().items() if not k.startswith("head.")}
    models["prototype"].load_state_dict({**models["prototype"].state_dict(), **shared})
    return models


def time_alternating(fns: dict[str, callable], reps: int) -> dict[str, dict[str, list[float]]]:
    """Per model, the wall-clock and process-CPU seconds of each run. Process CPU time does not count
    the time other processes hold the cores, so its ratio resists load from other jobs (with one
    thread it is also free of OpenMP spin-waiting)."""
    for fn in fns.values():  # warm-up
        fn()
    times = {name: {"wall": [], "cpu": []} for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            times[name]["cpu"].append(time.process_time() - cpu)
            times[name]["wall"].append(time.perf_counter() - wall)
    return times


def summarise(times: dict[str, dict[str, list[float]]]) -> dict:
    out: dict = {"runs_s": times}
    for clock in ("wall", "cpu"):
        med = {k: statistics.median(v[clock]) for k, v in times.items()}
        low = {k: min(v[clock]) for k, v in times.items()}
        out[f"{clock}_median_s"] = med
        out[f"{clock}_min_s"] = low
        out[f"{clock}_ratio_median"] = med["prototype"] / med["softmax"]
        out[f"{clock}_ratio_min"] = low["prototype"] / low["softmax"]
    return out


def bench_latency(backbone: str, size: int, reps: int, num_classes: int) -> dict:
    models = {k: m.eval() for k, m in pair(backbone, num_classes).items()}
    x = torch.randn(1, 3, size, size)

    def run(model):
        def fn():
            with torch.inference_mode():
                model(x)
        return fn

    return summarise(time_alternating({k: run(m) for k, m in models.items()}, reps))


def bench_train(backbone: str, size: int, reps: int, num_classes: int) -> dict:
    models = {k: m.train() for k, m in pair(backbone, num_classes).items()}
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, size, size, generator=g)
    labels = torch.randint(0, num_classes, (1, size, size), generator=g)

    def run(model):
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)

        def fn():
            out = model(x, labels)
            loss = segmentation_loss(out.head, labels)["total"]
            if out.aux_logits is not None:
                loss = loss + model.aux_loss_weight * ce_loss(out.aux_logits, labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return fn

    return summarise(time_alternating({k: run(m) for k, m in models.items()}, reps))


def count_flops(backbone: str, size: int, num_classes: int) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    out = {}
    for head in HEADS:
        model = build_model(ModelConfig(backbone=backbone, head=head, num_classes=num_classes)).eval()
        counter = FlopCounterMode(display=False)
        with torch.inference_mode(), counter:
            model(torch.randn(1, 3, size, size))
        out[head] = {"gflops": counter.get_total_flops() / 1e9, "params_m": count_parameters(model) / 1e6}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(PAPER_MODELS), help="backbones for latency and FLOPs")
    parser.add_argument("--train-models", nargs="+", default=["mit_b2", "hrnet_w48"], help="backbones for the train step")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--train-reps", type=int, default=3)
    parser.add_argument("--num-classes", type=int, default=150)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    parser.add_argument("--skip", nargs="*", default=[], choices=["latency", "train", "flops"])
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the figures")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = {"size": args.size, "num_classes": args.num_classes, "threads": args.threads, "torch": torch.__version__,
              "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
              "loadavg_start": os.getloadavg(), "latency": {}, "train": {}, "flops": {}}
    for name in args.models:
        if "flops" not in args.skip:
            result["flops"][name] = count_flops(name, args.size, args.num_classes)
            print(f"flops {name}: {result['flops'][name]}", flush=True)
        if "latency" not in args.skip:
            r = bench_latency(name, args.size, args.reps, args.num_classes)
            result["latency"][name] = r
            print(f"latency {name}: {oneline(r)}", flush=True)
    if "train" not in args.skip:
        for name in args.train_models:
            r = bench_train(name, args.size, args.train_reps, args.num_classes)
            result["train"][name] = r
            print(f"train {name}: {oneline(r)}", flush=True)
    result["loadavg_end"] = os.getloadavg()
    print(markdown(result))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
    return 0


def oneline(r: dict) -> str:
    return (f"softmax {r['wall_median_s']['softmax']:.3f}s prototype {r['wall_median_s']['prototype']:.3f}s "
            f"(wall, median); ratio wall {r['wall_ratio_median']:.3f} (min {r['wall_ratio_min']:.3f}), "
            f"CPU time {r['cpu_ratio_median']:.3f} (min {r['cpu_ratio_min']:.3f})")


def markdown(result: dict) -> str:
    lines = [f"CPU ({result['cpu_count']} cores, {result['threads']} threads), batch 1, "
             f"{result['size']}x{result['size']}, C = {result['num_classes']}; load average "
             f"{result['loadavg_start'][0]:.1f} at start, {result['loadavg_end'][0]:.1f} at end", ""]
    if result["flops"]:
        lines += ["| model | params softmax (M) | params prototype (M) | GFLOPs softmax | GFLOPs prototype | FLOPs ratio |",
                  "|---|---|---|---|---|---|"]
        for name, f in result["flops"].items():
            s, p = f["softmax"], f["prototype"]
            lines.append(f"| {name} | {s['params_m']:.2f} | {p['params_m']:.2f} | {s['gflops']:.1f} | "
                         f"{p['gflops']:.1f} | {p['gflops'] / s['gflops']:.3f} |")
        lines.append("")
    for kind, title in (("latency", "inference"), ("train", "train step")):
        if result[kind]:
            lines += [f"| model | {title} softmax (s) | prototype (s) | ratio wall (median / min) | "
                      "ratio CPU time (median / min) |", "|---|---|---|---|---|"]
            for name, r in result[kind].items():
                lines.append(f"| {name} | {r['wall_median_s']['softmax']:.3f} | {r['wall_median_s']['prototype']:.3f} | "
                             f"{r['wall_ratio_median']:.3f} / {r['wall_ratio_min']:.3f} | "
                             f"{r['cpu_ratio_median']:.3f} / {r['cpu_ratio_min']:.3f} |")
            lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
