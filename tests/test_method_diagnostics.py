"""Prototype diagnostics: hand-built prototypes with known spread, usage and dead prototypes; the
evaluation integration on a real tiny model; the MLflow scalars; the figure."""
from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from protoseg.method.diagnostics import (PrototypeDiagnostics, dead_prototypes, prototype_cosine_spread,
                                         usage_entropy, win_counts)

D = 8


def _eye(k: int, offset: int = 0) -> torch.Tensor:
    return torch.eye(D)[offset:offset + k]


def test_collapsed_class() -> None:
    """All K identical: cosine 1, one prototype wins every pixel (ties go to the first), K-1 dead."""
    k = 4
    protos = _eye(1).expand(k, D).reshape(1, k, D).clone()
    emb = F.normalize(torch.randn(50, D, generator=torch.Generator().manual_seed(0)), dim=1)
    counts = win_counts(emb, torch.zeros(50, dtype=torch.long), protos)
    assert prototype_cosine_spread(protos).tolist() == pytest.approx([1.0])
    assert counts.tolist() == [[50, 0, 0, 0]]
    assert usage_entropy(counts).tolist() == [0.0]
    assert usage_entropy(counts, normalized=False).tolist() == [0.0]
    assert dead_prototypes(counts).tolist() == [3]


def test_spread_class_equal_split() -> None:
    """Orthogonal prototypes, pixels split 3/3/3/3: cosine 0, normalised entropy 1, none dead."""
    k = 4
    protos = _eye(k).view(1, k, D)
    emb = torch.eye(D)[:k].repeat(3, 1) + 0.01 * torch.eye(D)[k]  # 3 pixels on each prototype
    counts = win_counts(emb, torch.zeros(emb.shape[0], dtype=torch.long), protos)
    assert prototype_cosine_spread(protos).tolist() == pytest.approx([0.0])
    assert counts.tolist() == [[3, 3, 3, 3]]
    assert usage_entropy(counts).tolist() == pytest.approx([1.0])
    assert usage_entropy(counts, normalized=False).tolist() == pytest.approx([math.log(4)])
    assert dead_prototypes(counts).tolist() == [0]


def test_one_dead_prototype_and_two_classes() -> None:
    """Class 0: prototype 2 is opposite every pixel -> 1 dead, shares 2/1 -> entropy H(2/3, 1/3).
    Class 1's pixels never vote for class 0; ignored pixels (255) count nowhere."""
    protos = torch.stack([torch.stack([_eye(1, 0)[0], _eye(1, 1)[0], -(_eye(1, 0)[0] + _eye(1, 1)[0])]),
                          _eye(3, 3)])  # [2, 3, D]
    emb = torch.stack([_eye(1, 0)[0], _eye(1, 0)[0], _eye(1, 1)[0], _eye(1, 4)[0], _eye(1, 0)[0]])
    labels = torch.tensor([0, 0, 0, 1, 255])
    counts = win_counts(emb, labels, protos)
    assert counts.tolist() == [[2, 1, 0], [0, 1, 0]]
    assert dead_prototypes(counts).tolist() == [1, 2]
    h = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))
    assert usage_entropy(counts, normalized=False).tolist() == pytest.approx([h, 0.0])
    assert usage_entropy(counts).tolist() == pytest.approx([h / math.log(3), 0.0])
    # pairwise cos of class 0: (e0,e1)=0, (e0,-(e0+e1)/sqrt2)=-1/sqrt2 twice -> mean -sqrt2/3
    assert prototype_cosine_spread(protos).tolist() == pytest.approx([-math.sqrt(2) / 3, 0.0])


def test_k1_is_nan_and_absent_class_is_excluded() -> None:
    protos = _eye(2).view(2, 1, D)
    acc = PrototypeDiagnostics(2, 1)
    emb = torch.eye(D)[:2].t().reshape(1, D, 1, 2)  # two pixels, both near prototype of class 0
    acc.update(emb, torch.tensor([[[0, 0]]]), protos)
    out = acc.compute(protos)
    assert out["win_counts"] == [[2], [0]]
    assert all(math.isnan(v) for v in out["pairwise_cos"] + out["usage_entropy"])
    assert out["dead"] == [0, None]  # class 1 has no labelled pixel
    assert math.isnan(out["proto_mean_pairwise_cos"]) and math.isnan(out["proto_usage_entropy"])
    assert out["proto_dead_fraction"] == 0.0


def test_accumulator_downsamples_labels_by_nearest() -> None:
    """A 4x4 label on a 2x2 embedding map: the same nearest resize as training."""
    protos = _eye(2).view(1, 2, D)
    emb = torch.zeros(1, D, 2, 2)
    emb[0, 0, :, 0] = 1  # left column -> prototype 0
    emb[0, 1, :, 1] = 1  # right column -> prototype 1
    label = torch.full((1, 4, 4), 255)
    label[0, :, :2] = 0  # left half labelled; the right half ignored
    acc = PrototypeDiagnostics(1, 2)
    acc.update(emb, label, protos)
    assert acc.counts.tolist() == [[2, 0]]


@pytest.mark.parametrize("test_mode", ["whole", "slide"])
def test_evaluate_model_reports_diagnostics(test_mode: str) -> None:
    """A real mit_b0 + prototype head: diagnostics in the metrics, finite, counts = labelled pixels
    at feature resolution (whole) / per window (slide); the mIoU is unchanged by them."""
    from protoseg.engine.evaluate import evaluate_model
    from protoseg.models import build_model

    torch.manual_seed(0)
    model = build_model(backbone="mit_b0", head="prototype", num_classes=3, num_prototypes=4)
    spec = SimpleNamespace(num_classes=3, ignore_index=255, test_mode=test_mode, slide_crop=(32, 32),
                           slide_stride=(32, 32))
    gen = torch.Generator().manual_seed(1)
    image = torch.randn(3, 64, 64, generator=gen)
    label = torch.randint(0, 3, (64, 64), generator=gen)
    label[:8] = 255
    m = evaluate_model(model, [{"image": [image], "label": [label]}], spec)
    d = m["prototype_diagnostics"]
    for key in ("proto_mean_pairwise_cos", "proto_usage_entropy", "proto_dead_fraction", "proto_dead_mean"):
        assert math.isfinite(d[key]), key
    assert len(d["pairwise_cos"]) == len(d["usage_entropy"]) == len(d["dead"]) == 3
    assert 0.0 <= d["proto_usage_entropy"] <= 1.0 and 0.0 <= d["proto_dead_fraction"] <= 1.0
    small = F.interpolate(label[None, None].float(), size=(16, 16), mode="nearest")  # stride 4
    # slide: four 32x32 windows of 8x8 features each tile the same 16x16 grid
    assert sum(map(sum, d["win_counts"])) == int((small != 255).sum())
    plain = evaluate_model(_NoHead(model), [{"image": [image], "label": [label]}], spec)
    assert "prototype_diagnostics" not in plain
    assert plain["mIoU"] == m["mIoU"] and plain["confusion"] == m["confusion"]


class _NoHead(torch.nn.Module):
    """The same model seen without its ``head`` attribute (a parametric-style model)."""

    def __init__(self, model) -> None:
        super().__init__()
        self.inner = model

    def forward(self, x):
        return self.inner(x)


def test_mlflow_logs_the_summary_scalars(tmp_path) -> None:
    """The three summary scalars reach a real MLflow store; NaN (K=1) is not logged."""
    pytest.importorskip("mlflow")
    import mlflow

    from protoseg.engine.tracking import log_run

    client = mlflow.tracking.MlflowClient(f"sqlite:///{tmp_path / 'm.db'}")
    metrics = {"mIoU": 0.5, "prototype_diagnostics": {"proto_mean_pairwise_cos": 0.25,
                                                       "proto_usage_entropy": 0.75,
                                                       "proto_dead_fraction": float("nan")}}
    run = {"dir": tmp_path, "config": {"run": {"seed": 0, "name": "x"}}, "metrics": metrics,
           "metrics_bytes": json.dumps(metrics).encode(), "info": {}, "train_log.jsonl": [],
           "val_log.jsonl": []}
    out = log_run(client, run, tmp_path / "art")
    logged = client.get_run(out["run_id"]).data.metrics
    assert logged["proto_mean_pairwise_cos"] == 0.25 and logged["proto_usage_entropy"] == 0.75
    assert "proto_dead_fraction" not in logged


def test_figure_from_synthetic_rows(tmp_path) -> None:
    from protoseg.pipeline.diagnostics_figure import plot_prototype_diagnostics

    rows = [{"label": f"K={k}", "group": "Table 5b", "proto_mean_pairwise_cos": c,
             "proto_usage_entropy": e, "proto_dead_fraction": f}
            for k, c, e, f in ((1, float("nan"), float("nan"), 0.0), (5, 0.6, 0.8, 0.0),
                               (10, 0.7, 0.6, 0.1), (20, 0.8, 0.5, 0.3), (50, 0.9, 0.3, 0.6))]
    rows += [{"label": "paper (argmax)", "group": "argmax vs Gumbel", "proto_mean_pairwise_cos": 0.95,
              "proto_usage_entropy": 0.1, "proto_dead_fraction": 0.8},
             {"label": "paper + Gumbel", "group": "argmax vs Gumbel", "proto_mean_pairwise_cos": 0.4,
              "proto_usage_entropy": 0.9, "proto_dead_fraction": 0.0}]
    out = plot_prototype_diagnostics(rows, tmp_path / "f" / "prototype_diagnostics.png")
    assert out.is_file() and out.stat().st_size > 10_000
    from PIL import Image

    assert Image.open(out).size[0] == 800
    with pytest.raises(ValueError, match="no run has prototype_diagnostics"):
        plot_prototype_diagnostics([], tmp_path / "empty.png")
    assert not (tmp_path / "empty.png").exists()


def test_figures_cli_reads_the_plans_run_dirs(tmp_path) -> None:
    """`protoseg figures --which diagnostics`: metrics.json of two planned entries (seeds averaged),
    the others missing; the real CLI and plan."""
    from pathlib import Path

    from protoseg.cli import main
    from protoseg.pipeline.diagnostics_figure import diagnostics_rows
    from protoseg.pipeline.experiments import build_plan

    plan = build_plan(scale="mini", runs_dir=str(tmp_path / "runs"), seeds=[0, 1])
    for entry, seed, cos in (("t5b-k5", 0, 0.2), ("t5b-k5", 1, 0.4), ("d-paper", 0, 0.9)):
        run = Path(plan.run_dir(plan.entry_run[entry], seed))
        run.mkdir(parents=True, exist_ok=True)
        (run / "metrics.json").write_text(json.dumps({"mIoU": 0.1, "prototype_diagnostics": {
            "proto_mean_pairwise_cos": cos, "proto_usage_entropy": 0.5, "proto_dead_fraction": None}}))
    rows = diagnostics_rows(plan)
    assert [(r["entry"], r["seeds"]) for r in rows] == [("t5b-k5", 2), ("d-paper", 1)]
    assert rows[0]["proto_mean_pairwise_cos"] == pytest.approx(0.3)
    assert math.isnan(rows[0]["proto_dead_fraction"])
    out = tmp_path / "figs"
    assert main(["figures", "--which", "diagnostics", "--scale", "mini", "--runs-dir", str(tmp_path / "runs"),
                 "--seeds", "0,1", "--out", str(out)]) == 0
    assert (out / "prototype_diagnostics.png").stat().st_size > 10_000


@pytest.mark.parametrize("test_mode", ["whole", "slide"])
def test_batched_evaluation_equals_one_image_at_a_time(test_mode: str) -> None:
    """Items of one size are stacked into one forward in whole mode: the confusion matrix and the
    prototype diagnostics equal those of one item per batch; a batch of mixed sizes is split."""
    from protoseg.engine.evaluate import evaluate_model
    from protoseg.models import build_model

    torch.manual_seed(0)
    model = build_model(backbone="mit_b0", head="prototype", num_classes=3, num_prototypes=4)
    spec = SimpleNamespace(num_classes=3, ignore_index=255, test_mode=test_mode, slide_crop=(32, 32),
                           slide_stride=(32, 32))
    gen = torch.Generator().manual_seed(2)
    sizes = [(32, 32)] * 4 + [(64, 32)] * 2  # a change of size inside the batch
    images = [torch.randn(3, h, w, generator=gen) for h, w in sizes]
    labels = [torch.randint(0, 3, (h, w), generator=gen) for h, w in sizes]
    one = evaluate_model(model, [{"image": [i], "label": [lb]} for i, lb in zip(images, labels)], spec)
    batched = evaluate_model(model, [{"image": images, "label": labels}], spec)
    assert batched["confusion"] == one["confusion"] and sum(map(sum, one["confusion"])) == 4 * 32 * 32 + 2 * 64 * 32
    assert batched["prototype_diagnostics"]["win_counts"] == one["prototype_diagnostics"]["win_counts"]
