"""Metrics against torchmetrics and hand-computed values; DDP reduction; inference helpers."""
import os

import pytest
import torch
import torch.nn.functional as F

from protoseg._compat import ensure_torchvision_importable
from protoseg.evaluation.inference import slide_inference, whole_inference
from protoseg.evaluation.metrics import SegMetric


def _torchmetrics(num_classes, ignore_index, average):
    ensure_torchvision_importable()  # torchmetrics imports torchvision
    from torchmetrics.classification import MulticlassJaccardIndex

    return MulticlassJaccardIndex(num_classes=num_classes, average=average, ignore_index=ignore_index)


def test_hand_computed():
    m = SegMetric(4, ignore_index=255)
    pred = torch.tensor([[0, 0, 1], [2, 2, 1]])
    label = torch.tensor([[0, 1, 1], [2, 255, 255]])
    m.update(pred, label)
    r = m.compute()
    # class 0: I=1 U=2; class 1: I=1 U=2; class 2: I=1 U=1; class 3: absent from both -> excluded
    assert r["IoU"][:3] == [0.5, 0.5, 1.0] and r["IoU"][3] != r["IoU"][3]
    assert r["mIoU"] == pytest.approx(2 / 3)
    assert r["aAcc"] == pytest.approx(3 / 4)
    assert r["mAcc"] == pytest.approx((1 + 0.5 + 1) / 3)


@pytest.mark.parametrize("seed", range(4))
def test_matches_torchmetrics_over_a_split(seed):
    g = torch.Generator().manual_seed(seed)
    c = 12
    ours, ref = SegMetric(c, ignore_index=255), _torchmetrics(c, 255, "macro")
    ref_per_class = _torchmetrics(c, 255, None)
    for _ in range(5):  # images of different sizes, accumulated over the split
        h, w = torch.randint(5, 30, (2,), generator=g).tolist()
        label = torch.randint(0, 8, (h, w), generator=g)  # classes 8..11 never in the labels
        label[torch.rand(h, w, generator=g) < 0.2] = 255  # ignored pixels
        pred = torch.randint(0, 10, (h, w), generator=g)  # 8, 9 predicted but absent; 10, 11 absent
        ours.update(pred, label)
        ref.update(pred[None], label[None])
        ref_per_class.update(pred[None], label[None])
    r = ours.compute()
    assert r["mIoU"] == pytest.approx(float(ref.compute()), abs=1e-6)
    ref_iou = ref_per_class.compute()
    for k in range(10):
        assert r["IoU"][k] == pytest.approx(float(ref_iou[k]), abs=1e-6)
    assert r["IoU"][8] == 0.0 and r["IoU"][9] == 0.0  # predicted but absent: counted as 0
    assert all(x != x for x in r["IoU"][10:])  # absent everywhere: excluded


def test_rejects_out_of_range_values():
    m = SegMetric(3)
    with pytest.raises(ValueError, match=r"label values \[7\]"):
        m.update(torch.tensor([0, 1]), torch.tensor([7, 1]))
    with pytest.raises(ValueError, match=r"predicted values \[3\]"):
        m.update(torch.tensor([3, 1]), torch.tensor([0, 1]))


def _ddp_worker(rank, world, init_file, preds, labels, out_file):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    m = SegMetric(6, ignore_index=255)
    for p, lab in list(zip(preds, labels))[rank::world]:
        m.update(p, lab)
    m.reduce_()
    if rank == 0:
        torch.save(m.confusion, out_file)
    dist.barrier()
    dist.destroy_process_group()


def test_reduce_across_ddp_ranks(tmp_path):
    import torch.multiprocessing as mp

    g = torch.Generator().manual_seed(0)
    preds = [torch.randint(0, 6, (9, 11), generator=g) for _ in range(6)]
    labels = [torch.randint(0, 6, (9, 11), generator=g) for _ in range(6)]
    single = SegMetric(6)
    for p, lab in zip(preds, labels):
        single.update(p, lab)
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), preds, labels, str(tmp_path / "cm.pt")),
             nprocs=2, join=True)
    assert torch.equal(torch.load(tmp_path / "cm.pt"), single.confusion)


def _pointwise_model(c):
    weight = torch.randn(c, 3, 1, 1, generator=torch.Generator().manual_seed(0))
    return lambda x: F.conv2d(x, weight)


def test_slide_equals_whole_for_a_pointwise_model():
    x = torch.randn(2, 3, 37, 53)
    fn = _pointwise_model(5)
    whole = whole_inference(fn, x, (37, 53))
    slide = slide_inference(fn, x, 5, crop=(16, 20), stride=(12, 15))
    assert torch.allclose(whole, slide, atol=1e-5)
    up = slide_inference(fn, x, 5, crop=(16, 20), stride=(12, 15), out_size=(74, 106))
    assert up.shape == (2, 5, 74, 106)


def test_slide_windows_follow_mmseg_grid():
    boxes = []

    def fn(win):
        boxes.append(tuple(win.shape[-2:]))
        return torch.zeros(win.shape[0], 2, win.shape[2] // 2, win.shape[3] // 2)

    slide_inference(fn, torch.zeros(1, 3, 10, 7), 2, crop=(4, 4), stride=(3, 3))
    # rows: (10-4+2)//3+1 = 3, cols: (7-4+2)//3+1 = 2; every window is a full crop
    assert len(boxes) == 6 and set(boxes) == {(4, 4)}
    boxes.clear()
    slide_inference(fn, torch.zeros(1, 3, 3, 3), 2, crop=(4, 4), stride=(3, 3))  # smaller than a crop
    assert boxes == [(3, 3)]


def test_whole_inference_resizes_to_label():
    fn = _pointwise_model(3)
    x = torch.randn(1, 3, 32, 48)
    out = whole_inference(lambda t: fn(t)[:, :, ::4, ::4], x, (50, 75))
    assert out.shape == (1, 3, 50, 75)
