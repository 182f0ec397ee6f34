"""Figures of ``results/figures``, built with matplotlib:

- ``table4_miou_params.png``: Table 4 as mIoU and learnable parameters against vocabulary size
  (paper and ours; parameters of the paper's construction counted by ``protoseg experiments params``);
- ``fig3_similarity.png``: in the style of the paper's Fig. 3, for Cityscapes val images of the Table 2
  "Ours" run: the image, the ground truth, every pixel coloured by its nearest prototype, and the
  cosine similarity of each pixel to the K prototypes of the image's most frequent class;
- ``fig5_embedding.png``: in the style of Fig. 5, pixel embeddings of val images (PCA to 2-D) coloured
  by ground-truth class, with the class prototypes.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .experiments import Plan
from .tables import table_frame

FIG_ENTRY = "t2-ours-b4"  # the run whose checkpoint the Fig. 3 / Fig. 5 plots read


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def table4_figure(plan: Plan, out: Path, params: dict) -> Path:
    plt = _plt()
    df = table_frame(plan, "table4", params)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (row, sub) in enumerate(df.groupby("row", sort=False)):
        n = sub["column"].astype(int).to_numpy()
        color = f"C{i}"
        ax1.plot(n, sub["paper_mIoU"], "o-", color=color, label=f"{row} (paper)")
        ax1.errorbar(n, sub["mIoU_mean"], yerr=sub["mIoU_std"].fillna(0), fmt="s--", color=color, alpha=0.7,
                     label=f"{row} (ours, {plan.scale})")
        ax2.plot(n, sub["paper_params_M"], "o-", color=color, label=f"{row} (paper)")
        ax2.plot(n, sub["ours_params_M"], "x--", color=color, label=f"{row} (ours, paper construction)")
    ax1.set(xlabel="vocabulary size N (classes)", ylabel="mIoU (%)", title="Table 4: mIoU vs vocabulary")
    ax2.set(xlabel="vocabulary size N (classes)", ylabel="learnable parameters (M)",
            title="Table 4: parameters vs vocabulary")
    ax1.legend(fontsize=6)
    ax2.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def _load(plan: Plan):
    from protoseg.engine.predict import load_run

    key = plan.entry_run[FIG_ENTRY]
    ckpt = Path(plan.run_dir(key, plan.seeds[0])) / "checkpoints" / "final.pt"
    return load_run(ckpt, device="cpu")


def _val_batches(run, n: int):
    from protoseg.data.dataset import SegmentationDataset

    ds = SegmentationDataset.from_spec(run.cfg.data.root, run.spec, train=False)
    for i in range(min(n, len(ds))):
        item = ds[i]
        yield item["image"][None], item["label"]


def _features(run, image):
    import torch

    with torch.no_grad():
        return run.model.decoder(run.model.backbone(image))


def similarity_figure(plan: Plan, out: Path, n_images: int = 2, n_protos: int = 4) -> Path:
    import torch
    import torch.nn.functional as F

    from protoseg.engine.predict import colorize, prototype_colors

    plt = _plt()
    run = _load(plan)
    head, spec = run.model.head, run.spec
    k = head.num_prototypes
    cols = 3 + min(n_protos, k)
    fig, axes = plt.subplots(n_images, cols, figsize=(2.4 * cols, 1.6 * n_images + 0.6), squeeze=False)
    for r, (image, label) in enumerate(_val_batches(run, n_images)):
        feats = _features(run, image)
        cls, proto, _ = head.nearest(feats)
        size = label.shape[-2:]
        up = lambda t: F.interpolate(t[:, None].float(), size=size, mode="nearest")[0, 0]  # noqa: E731
        lab = label.numpy()
        valid = lab[lab != spec.ignore_index]
        c = int(np.bincount(valid).argmax()) if valid.size else 0
        emb = head.embed(feats)  # [h*w, D]
        protos = head.current_prototypes()[c]  # [K, D]
        sim = (emb @ protos.T).T.reshape(k, *feats.shape[-2:])
        img = image[0].permute(1, 2, 0).numpy()
        img = (img - img.min()) / max(img.max() - img.min(), 1e-6)
        shown = [("image", img), ("ground truth", colorize(np.where(lab == spec.ignore_index, 0, lab), spec.palette)),
                 ("nearest prototype", prototype_colors(up(cls).long().numpy(), up(proto).long().numpy(),
                                                        spec.palette, k))]
        for j in range(min(n_protos, k)):
            shown.append((f"{spec.class_names[c]}: p{j}", up(sim[j][None].float())[...].numpy()))
        for j, (title, arr) in enumerate(shown):
            ax = axes[r, j]
            if arr.ndim == 2:
                ax.imshow(arr, cmap="jet", vmin=-1, vmax=1)
            else:
                ax.imshow(arr)
            ax.set_title(title, fontsize=7)
            ax.axis("off")
    fig.suptitle(f"Fig. 3 style: prototype similarity maps ({FIG_ENTRY}, scale {plan.scale})", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def embedding_figure(plan: Plan, out: Path, n_images: int = 4, n_classes: int = 8,
                     per_class: int = 300) -> Path:
    import torch
    import torch.nn.functional as F

    plt = _plt()
    run = _load(plan)
    head, spec = run.model.head, run.spec
    embs, labs = [], []
    for image, label in _val_batches(run, n_images):
        feats = _features(run, image)
        emb = head.embed(feats)
        small = F.interpolate(label[None, None].float(), size=feats.shape[-2:], mode="nearest").view(-1).long()
        keep = small != spec.ignore_index
        embs.append(emb[keep])
        labs.append(small[keep])
    emb, lab = torch.cat(embs), torch.cat(labs)
    classes = torch.bincount(lab).argsort(descending=True)[:n_classes].tolist()
    gen = torch.Generator().manual_seed(0)
    pts, pl = [], []
    for c in classes:
        idx = (lab == c).nonzero().view(-1)
        idx = idx[torch.randperm(len(idx), generator=gen)[:per_class]]
        pts.append(emb[idx])
        pl += [c] * len(idx)
    pts = torch.cat(pts)
    protos = head.current_prototypes()[classes].reshape(-1, pts.shape[1])
    allp = torch.cat([pts, protos]).double()
    mean = allp.mean(0, keepdim=True)
    _, _, v = torch.linalg.svd(allp - mean, full_matrices=False)
    proj = ((allp - mean) @ v[:2].T).numpy()
    xy, pxy = proj[:len(pts)], proj[len(pts):]
    fig, ax = plt.subplots(figsize=(6, 5))
    pl = np.array(pl)
    k = head.num_prototypes
    for i, c in enumerate(classes):
        color = np.asarray(spec.palette[c]) / 255.0
        m = pl == c
        ax.scatter(xy[m, 0], xy[m, 1], s=3, color=color, alpha=0.5, label=spec.class_names[c])
        ax.scatter(pxy[i * k:(i + 1) * k, 0], pxy[i * k:(i + 1) * k, 1], marker="*", s=120,
                   color=color, edgecolors="black", linewidths=0.6)
    ax.set_title(f"Fig. 5 style: pixel embeddings (PCA) and prototypes (*), {FIG_ENTRY}, scale {plan.scale}",
                 fontsize=8)
    ax.legend(fontsize=6, markerscale=3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def build_figures(plan: Plan, *, out_dir: str | Path, which=("table4", "similarity", "embedding"),
                  params_file: str | Path | None = None) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    params = json.loads(Path(params_file).read_text())["entries"] if params_file else {}
    written = []
    if "table4" in which:
        written.append(table4_figure(plan, out_dir / "table4_miou_params.png", params))
    if "similarity" in which:
        written.append(similarity_figure(plan, out_dir / "fig3_similarity.png"))
    if "embedding" in which:
        written.append(embedding_figure(plan, out_dir / "fig5_embedding.png"))
    return written
