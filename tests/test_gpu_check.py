"""The GPU path on CPU at tiny sizes: the correctness checks (``tests/gpu_correctness.py``, on CUDA at
paper sizes in ``tests/test_gpu_correctness.py``) and ``benchmarks/gpu_check.py``'s timing and report.

The checks' purpose is a CUDA device; here the same code runs on CPU (gloo instead of NCCL, bf16
autocast only, CPU compared with CPU), so that the GPU run does not fail on a bug a CPU can find.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import subprocess
import sys

import pytest
import torch

import gpu_correctness as gc
from engine_helpers import REPO, cli_env
from gpu_workloads import TINY  # benchmarks/, put on sys.path by gpu_correctness

SCRIPT = REPO / "benchmarks" / "gpu_check.py"
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = mod
    try:
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.modules.pop("gpu_check", None)


def _named(checks: list, prefix: str) -> list:
    rows = [c for c in checks if c.name.startswith(prefix)]
    assert rows, f"no check named {prefix}*"
    return rows


@pytest.mark.slow
def test_tiny_cpu_correctness_sections(one_thread):
    sizes = dataclasses.replace(TINY, amp_iters=3)
    # Sinkhorn: low precision equals fp32 of the same values; against the unrounded scores the error is
    # non-zero (the dtype was applied) and within 4 u / epsilon
    sink, checks = gc.sinkhorn_dtypes(sizes, CPU)
    assert not gc.failures(checks)
    for name, u in (("fp16", 2.0 ** -12), ("bf16", 2.0 ** -9)):
        for kind in ("batched", "single"):
            r = sink[f"{kind}_{name}"]
            assert r["dtype_out"] == "torch.float32"
            assert r["vs_same_values_max_abs"] == 0.0
            assert 0.0 < r["vs_fp32_max_rel"] <= 4 * u / 0.05
            assert r["argmax_agreement"] > 0.98
    assert [c.tolerance for c in _named(checks, "sinkhorn_batched bf16 vs")] == [pytest.approx(4 * 2.0 ** -9 / 0.05)]

    # official step: CPU against CPU is exact; the prototypes are unit vectors
    step, checks = gc.official_step(sizes, CPU)
    assert not gc.failures(checks)
    assert step["max_abs_diff"] == {"prototypes": 0.0, "ppc": 0.0, "ppd": 0.0}
    assert _named(checks, "official step: prototypes unit-norm")[0].value <= 1e-5

    # 1-process gloo group: all-reduce, SyncBN converted, the DDP+SyncBN losses are the plain model's
    ddp, checks = gc.ddp_syncbn(sizes, CPU)
    assert not gc.failures(checks)
    assert ddp["backend"] == "gloo" and ddp["all_reduce_error"] == 0.0 and ddp["sync_bn_modules"] > 0
    assert len(ddp["ddp_losses"]) == 2 and all(math.isfinite(v) for v in ddp["ddp_losses"])
    assert ddp["ddp_losses"] == pytest.approx(ddp["plain_losses"], rel=1e-4)

    # AMP: fp32 and bf16 from the same start; fp16 is for CUDA only
    assert gc.amp_modes(CPU) == ["fp32", "bf16"]
    for spec in sizes.models:
        amp, checks = gc.amp(sizes, spec, CPU)
        assert not gc.failures(checks)
        assert set(amp["runs"]) == {"fp32", "bf16"} and amp["loss_rtol"] == {"bf16": 0.05}
        for run in amp["runs"].values():
            assert {"ce", "ppc", "ppd", "total"} <= set(run["terms"])
            assert all(len(v) == 3 and all(math.isfinite(x) for x in v) for v in run["terms"].values())
            assert run["proto_norm_err"] <= 1e-5
        bf16, fp32 = amp["runs"]["bf16"], amp["runs"]["fp32"]
        assert 0.0 < bf16["total_max_rel_vs_fp32"] <= 0.05  # bf16 did change the numbers, within tolerance
        assert bf16["terms"]["total"][0] == pytest.approx(fp32["terms"]["total"][0], rel=0.05)


def test_a_check_fails_outside_its_tolerance():
    checks = [gc.Check("a", 0.5, 1.0, "fits"), gc.Check("b", float("nan"), 1.0, "not finite"),
              gc.Check("c", 3, 1, "too few", op=">="), gc.Check("d", 2.0, 1.0, "too large")]
    assert [c.passed for c in checks] == [True, False, True, False]
    assert [line.split(":")[0] for line in gc.failures(checks)] == ["b", "d"]


def test_tiny_cpu_timing_sections(gpu_check, tmp_path, one_thread):
    rc = gpu_check.main(["--device", "cpu", "--tiny", "--sections", "sinkhorn_speed,prototype_step,mini_run",
                         "--out", str(tmp_path)])
    data = json.loads((tmp_path / "gpu.json").read_text())
    assert rc == 0, data["errors"]
    assert data["status"] == "complete" and data["errors"] == []
    assert data["meta"]["device"] == "cpu" and data["meta"]["tiny"] is True
    sec = data["sections"]
    assert {"sinkhorn_speed", "prototype_step", "mini_run"} == set(sec)
    assert all(v["status"] == "ok" for k, v in sec.items() if k != "mini_run")  # none left "running"

    # speed: measured, never judged on CPU
    targets = {t["name"]: t for t in data["targets"]}
    sink = targets["sinkhorn 2000 x 10 (ms)"]
    assert sink["value"] > 0 and sink["met"] is None and sink["reason"] == "tiny sizes on cpu"
    assert sec["sinkhorn_speed"]["paper_ms"] == 2.5
    rows = sec["prototype_step"]["rows"]
    assert [r["C"] for r in rows] == [19, 150, 847]
    assert all(r["loop_ms"] > 0 and r["ours_ms"] > 0 and r["speedup"] == pytest.approx(r["loop_ms"] / r["ours_ms"])
               and r["ours_peak_gib"] is None for r in rows)
    mem = targets["prototype step peak memory at C=847, ours / loop"]
    assert mem["value"] is None and mem["met"] is None and "CUDA" in mem["reason"]
    assert {"prototype step speed-up at C=150", "prototype step speed-up at C=847"} <= set(targets)

    mini = sec["mini_run"]
    assert mini["measured"] is False and " -c1 tables " in f" {mini['command']} "
    md = (tmp_path / "gpu.md").read_text()
    assert "## Targets" in md and "not judged (tiny sizes on cpu)" in md
    assert all(t["name"] in md for t in data["targets"])


def test_budget_skips_sections_and_bad_arguments(gpu_check, tmp_path):
    assert gpu_check.main(["--device", "cpu", "--tiny", "--budget-s", "0", "--sections", "sinkhorn_speed,train",
                           "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "gpu.json").read_text())
    assert data["sections"] == {} and data["targets"] == []
    assert {s["what"] for s in data["skipped"]} == {"sinkhorn_speed", "train_hrnet_w48", "train_mit_b2"}
    assert all("time budget" in s["reason"] for s in data["skipped"])
    with pytest.raises(SystemExit):
        gpu_check.main(["--device", "cpu", "--sections", "sinkhorn,bogus", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):  # the correctness checks are the pytest suite now
        gpu_check.main(["--device", "cpu", "--sections", "sinkhorn_dtypes", "--out", str(tmp_path)])
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            gpu_check.main(["--device", "cuda", "--out", str(tmp_path)])


@pytest.mark.slow
def test_tiny_cpu_full_run_through_the_command_line(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--tiny", "--out", str(tmp_path)],
                          capture_output=True, text=True, env=cli_env(), cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "[gpu_check" in proc.stdout and "errors: none" in proc.stdout
    data = json.loads((tmp_path / "gpu.json").read_text())
    assert data["status"] == "complete" and data["errors"] == []
    assert all(v["status"] == "ok" for k, v in data["sections"].items() if k != "mini_run")
    for model, batch in (("hrnet_w48", 2), ("mit_b2", 4)):
        tr = data["sections"][f"train_{model}"]
        assert tr["batch"] == batch and set(tr["heads"]) == {"softmax", "prototype"}
        assert all(h["step_ms"] > 0 and h["peak_gib"] is None for h in tr["heads"].values())
        heads = tr["heads"]
        assert tr["step_ratio"] == pytest.approx(heads["prototype"]["step_ms"] / heads["softmax"]["step_ms"])
        assert tr["mmseg"]["batch"] == 2 and tr["mmseg"]["ours_gib"] is None
        lat = data["sections"][f"latency_{model}"]
        assert lat["ratio"] == pytest.approx(lat["ms"]["prototype"] / lat["ms"]["softmax"])
    targets = data["targets"]
    assert len(targets) == 12 and all(t["met"] is None and t["reason"] for t in targets)
    assert sum(t["value"] is not None for t in targets) == 7  # the 5 memory figures need CUDA
    md = (tmp_path / "gpu.md").read_text()
    assert "## Training step and inference (fp32)" in md and "| mit_b2 | prototype | 4 |" in md


def test_fused_scores_under_autocast_with_float32_embeddings():
    """CUDA autocast keeps F.normalize's output (the embeddings) in float32 but runs the similarity
    product in fp16/bf16; the fused training pass must accept that mix (it wrote the product into
    float32 ``out=`` buffers and failed). CPU autocast reproduces the mix with float32 inputs."""
    from protoseg.method import prototype_scores

    g = torch.Generator().manual_seed(0)
    emb = torch.nn.functional.normalize(torch.randn(96, 16, generator=g), dim=1)
    protos = torch.nn.functional.normalize(torch.randn(5, 3, 16, generator=g), dim=-1)
    labels = torch.randint(0, 5, (96,), generator=g)

    def run(amp: bool):
        x = emb.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            s = prototype_scores(x, protos, labels)
            # no weight on the class scores: their gradient follows an argmax that bf16 may flip
            loss = 0.0 * s.class_sim.float().sum() + s.own_sim.float().pow(2).sum() + s.ppc_lse.sum()
        loss.backward()
        return s, x.grad

    ref, ref_grad = run(False)
    low, low_grad = run(True)
    assert low.class_sim.dtype == low.own_sim.dtype == torch.bfloat16 and low.ppc_lse.dtype == torch.float32
    torch.testing.assert_close(low.class_sim.float(), ref.class_sim, atol=1e-2, rtol=0)
    torch.testing.assert_close(low.own_sim.float(), ref.own_sim, atol=1e-2, rtol=0)
    torch.testing.assert_close(low.ppc_lse, ref.ppc_lse, atol=0.1, rtol=0)
    assert low_grad.dtype == torch.float32
    assert torch.isfinite(low_grad).all()
    assert (low_grad - ref_grad).norm() <= 0.05 * ref_grad.norm()
