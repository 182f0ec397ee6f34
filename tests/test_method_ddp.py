"""The two DDP reductions, on a real 2-process gloo group (CPU)."""
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from protoseg.method import LossTerm, MethodConfig, prototype_learning, prototype_scores, total_loss

C, K, D, N = 5, 4, 16, 600


def _data():
    g = torch.Generator().manual_seed(0)
    emb = F.normalize(torch.randn(N, D, generator=g), dim=1)
    protos = F.normalize(torch.randn(C, K, D, generator=g), dim=-1)
    labels = torch.randint(0, C, (N,), generator=g)
    labels[:30] = 255
    labels[N // 2:][labels[N // 2:] == 3] = 2  # class 3 only on rank 0: ranks see different classes
    return emb, protos, labels


def _run(cfg, emb, protos, labels):
    scores = prototype_scores(emb, protos, labels, ppc_temperature=cfg.ppc_temperature)
    return prototype_learning(scores, emb, labels, protos, cfg)


def _worker(rank, world, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        emb, protos, labels = _data()
        part = slice(rank * N // world, (rank + 1) * N // world)
        for name in ("sum", "mean"):
            cfg = MethodConfig.for_variant("paper", ddp_reduce=name, momentum=0.5)
            res = _run(cfg, emb[part], protos, labels[part])
            torch.save({"protos": res.prototypes, "target": res.target},
                       os.path.join(out_dir, f"{name}_{rank}.pt"))
        # Eq. 13's DDP weighting: a rank's mean counts by its share of the global labelled pixels
        valid = labels[part] != 255
        term = LossTerm(emb[part, 0][valid].mean(), 0.5, valid.sum())
        torch.save(total_loss({"t": term}, global_pixels=True), os.path.join(out_dir, f"total_{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_reductions(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    emb, protos, labels = _data()
    load = lambda name, r: torch.load(tmp_path / f"{name}_{r}.pt")  # noqa: E731

    # DDP averages the ranks' totals: with the share-of-pixels weighting that is the global mean
    valid = labels != 255
    averaged = (load("total", 0) + load("total", 1)) / 2
    torch.testing.assert_close(averaged, 0.5 * emb[:, 0][valid].mean())
    assert not torch.allclose(load("total", 0) / 0.5, emb[: N // 2, 0][valid[: N // 2]].mean())

    # paper (sum-then-normalise, global Sinkhorn): every rank equals ONE process on the global batch
    single = _run(MethodConfig.for_variant("paper", momentum=0.5), emb, protos, labels)
    for r in range(2):
        torch.testing.assert_close(load("sum", r)["protos"], single.prototypes, atol=1e-6, rtol=1e-5)
    targets = torch.cat([load("sum", 0)["target"], load("sum", 1)["target"]])
    assert torch.equal(targets, single.target)

    # official (mean): each rank clusters and updates alone, then prototypes are averaged
    local = [_run(MethodConfig.for_variant("paper", ddp_reduce="mean", momentum=0.5),
                  emb[r * N // 2:(r + 1) * N // 2], protos, labels[r * N // 2:(r + 1) * N // 2])
             for r in range(2)]
    expected = (local[0].prototypes + local[1].prototypes) / 2
    for r in range(2):
        torch.testing.assert_close(load("mean", r)["protos"], expected, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(expected, single.prototypes, atol=1e-4)
