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


FONT = {"font.size": 12, "axes.titlesize": 13, "axes.labelsize": 12, "legend.fontsize": 10.5,
        "xtick.labelsize": 11, "ytick.labelsize": 11}  # readable at ~800 px display width


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(FONT)
    return plt


def table4_figure(plan: Plan, out: Path, params: dict, ceiling: dict[str, float] | None = None) -> Path:
    """Three panels: the paper's mIoU, ours (own axis: mini-scale values are far below the paper's) and
    the learnable parameters (paper vs ours, paper construction), each against the vocabulary size.
    ``ceiling`` ({"<N>": mIoU}: the twin's Bayes ceiling, ``protoseg.data.ceiling``) is drawn in ours."""
    plt = _plt()
    df = table_frame(plan, "table4", params)
    fig, (ax0, ax1, ax2) = plt.subplots(1, 3, figsize=(15, 5))
    handles = []
    for i, (row, sub) in enumerate(df.groupby("row", sort=False)):
        n = sub["column"].astype(int).to_numpy()
        color, marker = f"C{i}", "os^D"[i % 4]
        (h,) = ax0.plot(n, sub["paper_mIoU"], marker + "-", color=color, label=row)
        handles.append(h)
        ax1.errorbar(n, sub["mIoU_mean"], yerr=sub["mIoU_std"].fillna(0), fmt=marker + "--", color=color,
                     capsize=3)
        ax2.plot(n, sub["paper_params_M"], marker + "-", color=color)
        ax2.plot(n, sub["ours_params_M"], "x:", color=color, markersize=9)
    if ceiling:
        ns = sorted(int(n) for n in ceiling)
        (h,) = ax1.plot(ns, [ceiling[str(n)] for n in ns], "k:", label="Bayes ceiling of the twin")
        handles.append(h)
    ax0.set(xlabel="vocabulary size N (classes)", ylabel="mIoU (%)", title="paper (Table 4)")
    seeds = f"{len(plan.seeds)} seed" + ("s" if len(plan.seeds) > 1 else "")
    ax1.set(xlabel="vocabulary size N (classes)", ylabel="mIoU (%)",
            title=f"ours, scale {plan.scale} (mean +- std, {seeds})")
    ax2.set(xlabel="vocabulary size N (classes)", ylabel="learnable parameters (M)",
            title="parameters: paper (solid), ours (dotted, x)")
    for ax in (ax0, ax1, ax2):
        ax.set_xticks(sorted(df["column"].astype(int).unique()))
        ax.grid(alpha=0.3)
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False)
    fig.suptitle("Table 4: mIoU and parameters against vocabulary size (ADE20K-Full top-N)")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(out, dpi=100)
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


def similarity_figure(plan: Plan, out: Path, n_images: int = 2, n_protos: int = 3) -> Path:
    """Per val image: the image, ground truth, nearest prototype (class colour, shaded by prototype
    index), and the cosine similarity to K prototypes of the image's most frequent class, with a
    colourbar for the similarity and a legend of the classes shown."""
    import torch.nn.functional as F
    from matplotlib.patches import Patch

    from protoseg.engine.predict import colorize, prototype_colors

    plt = _plt()
    run = _load(plan)
    head, spec = run.model.head, run.spec
    k = head.num_prototypes
    cols = 3 + min(n_protos, k)
    fig, axes = plt.subplots(n_images, cols, figsize=(2.6 * cols, 1.9 * n_images + 2.0), squeeze=False)
    shown_classes: list[int] = []
    sim_im = None
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
        nearest_cls = up(cls).long().numpy()
        shown_classes += [int(x) for x in np.unique(np.concatenate([valid, nearest_cls.ravel()]))]
        shown = [("image", img), ("ground truth", colorize(np.where(lab == spec.ignore_index, 0, lab), spec.palette)),
                 ("nearest prototype", prototype_colors(nearest_cls, up(proto).long().numpy(), spec.palette, k))]
        for j in range(min(n_protos, k)):
            shown.append((f"sim. to {spec.class_names[c]} p{j}", up(sim[j][None].float()).numpy()))
        for j, (title, arr) in enumerate(shown):
            ax = axes[r, j]
            if arr.ndim == 2:
                sim_im = ax.imshow(arr, cmap="coolwarm", vmin=-1, vmax=1)
            else:
                ax.imshow(arr)
            ax.set_title(title, fontsize=13)
            ax.axis("off")
    if sim_im is not None:
        bar = fig.colorbar(sim_im, cax=fig.add_axes((0.915, 0.3, 0.012, 0.55)))
        bar.set_label("cosine similarity")
    classes = list(dict.fromkeys(shown_classes))
    fig.legend(handles=[Patch(color=np.asarray(spec.palette[c]) / 255.0, label=spec.class_names[c])
                        for c in classes],
               loc="lower center", ncol=min(len(classes), 7), frameon=False, fontsize=12,
               title="classes (nearest prototype: darker = lower prototype index)", title_fontsize=12)
    fig.suptitle(f"Fig. 3 style: prototype similarity maps ({FIG_ENTRY}, scale {plan.scale})")
    fig.subplots_adjust(left=0.01, right=0.9, top=0.86, bottom=0.08 + 0.045 * ((len(classes) - 1) // 7 + 1),
                        wspace=0.04, hspace=0.3)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def embedding_figure(plan: Plan, out: Path, n_images: int = 4, n_classes: int | None = None,
                     per_class: int = 300) -> Path:
    """PCA of pixel embeddings of val images coloured by ground-truth class, with the class prototypes
    (stars); every class present (``n_classes``: only the most frequent) in a legend beside the plot."""
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
    counts = torch.bincount(lab)
    classes = [c for c in counts.argsort(descending=True).tolist() if counts[c] > 0][:n_classes]
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
    _, sv, v = torch.linalg.svd(allp - mean, full_matrices=False)
    explained = (sv ** 2 / (sv ** 2).sum()).tolist()
    proj = ((allp - mean) @ v[:2].T).numpy()
    xy, pxy = proj[:len(pts)], proj[len(pts):]
    fig, ax = plt.subplots(figsize=(11, 6.5))
    pl = np.array(pl)
    k = head.num_prototypes
    for i, c in enumerate(classes):
        color = np.asarray(spec.palette[c]) / 255.0
        m = pl == c
        ax.scatter(xy[m, 0], xy[m, 1], s=6, color=color, alpha=0.5, label=spec.class_names[c])
        ax.scatter(pxy[i * k:(i + 1) * k, 0], pxy[i * k:(i + 1) * k, 1], marker="*", s=220,
                   color=color, edgecolors="black", linewidths=0.8)
    ax.set(xlabel=f"principal component 1 ({100 * explained[0]:.0f}% of variance)",
           ylabel=f"principal component 2 ({100 * explained[1]:.0f}% of variance)")
    ax.set_title(f"Fig. 5 style: pixel embeddings (PCA) and class prototypes (stars)\n{FIG_ENTRY}, scale {plan.scale}")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=1 if len(classes) <= 12 else 2,
              markerscale=3, title="ground-truth class", frameon=False)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def build_figures(plan: Plan, *, out_dir: str | Path, which=("table4", "similarity", "embedding"),
                  params_file: str | Path | None = None, ceiling_file: str | Path | None = None) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    params = json.loads(Path(params_file).read_text())["entries"] if params_file else {}
    ceiling = json.loads(Path(ceiling_file).read_text()).get("ade20k-full") if ceiling_file else None
    written = []
    if "table4" in which:
        written.append(table4_figure(plan, out_dir / "table4_miou_params.png", params, ceiling))
    if "similarity" in which:
        written.append(similarity_figure(plan, out_dir / "fig3_similarity.png"))
    if "embedding" in which:
        written.append(embedding_figure(plan, out_dir / "fig5_embedding.png"))
    return written
