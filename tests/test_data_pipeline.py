"""Train/test pipelines, the dataset class and the loaders the trainer and the evaluation use."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from protoseg.data import transforms as T
from protoseg.data.dataset import SegmentationDataset, ShardSampler
from protoseg.data.mini import make_mini
from protoseg.data.prepare import prepare
from protoseg.data.specs import get_spec
from protoseg.engine.evaluate import build_eval_loader
from protoseg.engine.data_order import IterationBatchSampler, EpochItems


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("roots")
    out = {}
    for name, sizes in (("ade20k", {"n_train": 400, "n_val": 100}), ("ade20k-full", {})):
        make_mini(name, base / f"{name}-src", seed=0, **sizes)
        prepare(name, base / f"{name}-src", base / name, workers=1, progress=False)
        out[name] = base / name
    return out


def test_rescale_size_matches_mmcv():
    assert T.rescale_size(640, 480, (2048, 512)) == (683, 512)
    assert T.rescale_size(2048, 1024, (2048, 1024)) == (2048, 1024)
    assert T.rescale_size(4000, 500, (2048, 512)) == (2048, 256)  # long side capped


def test_train_pipeline_shapes_padding_determinism():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (60, 90, 3), dtype=np.uint8)
    lab = rng.integers(0, 5, (60, 90)).astype(np.int64)
    pipe = T.TrainPipeline(crop_size=(128, 128), base_scale=(100, 50), ignore_index=255)
    out = pipe(img, lab, np.random.default_rng(1))
    assert out["image"].shape == (3, 128, 128) and out["image"].dtype == torch.float32
    assert out["label"].shape == (128, 128) and out["label"].dtype == torch.int64
    # scale <= 100x50 at ratio <= 2 -> the image is at most 200x100... but at least one side < 128 here
    assert set(out["label"].unique().tolist()) <= set(range(5)) | {255}
    assert (out["label"] == 255).any()  # padded with ignore
    assert (out["image"][:, out["label"] == 255] == 0).all()  # ...and image 0 there
    again = pipe(img, lab, np.random.default_rng(1))
    assert torch.equal(out["image"], again["image"]) and torch.equal(out["label"], again["label"])


def test_crop_and_flip_keep_image_and_label_aligned():
    rng = np.random.default_rng(0)
    lab = np.repeat(np.repeat(rng.integers(0, 20, (12, 16)), 8, 0), 8, 1).astype(np.int64)  # 96x128
    img = np.stack([lab * 10, lab * 5, 255 - lab * 10], axis=-1).astype(np.uint8)
    pipe = T.TrainPipeline(crop_size=(64, 64), base_scale=(128, 96), ratio_range=(1.0, 1.0),
                           ignore_index=255, photometric=False)
    flips = 0
    for seed in range(20):
        out = pipe(img, lab, np.random.default_rng(seed))
        red = out["image"][0] * T.STD[0] + T.MEAN[0]
        assert torch.allclose(red, out["label"].float() * 10, atol=1e-3)
        flips += int(not torch.equal(out["label"], torch.from_numpy(lab)[:64, :64]))
    assert flips > 0


def test_cat_max_ratio_crop():
    lab = np.zeros((64, 64), dtype=np.int64)
    lab[:, 48:] = 1  # class 0 covers 75% of the image
    lab[:4] = 255
    ok_plain = ok_cat = 0
    for seed in range(200):
        for tries, counter in ((0, "plain"), (10, "cat")):
            y1, y2, x1, x2 = T.cat_max_ratio_crop(np.random.default_rng(seed), lab, (16, 16), 0.75, 255, tries)
            v, c = np.unique(lab[y1:y2, x1:x2], return_counts=True)
            c = c[v != 255]
            good = len(c) > 1 and c.max() / c.sum() < 0.75
            if counter == "plain":
                ok_plain += good
            else:
                ok_cat += good
    assert ok_plain < 60 and ok_cat > 150  # re-drawing makes mixed crops the norm


def test_hsv_roundtrip_and_identity_distortion():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    back = T.hsv_to_rgb(T.rgb_to_hsv(img))
    assert np.abs(back.astype(int) - img).max() <= 1
    same = T.photometric_distortion(np.random.default_rng(0), img, brightness_delta=0, contrast=(1, 1),
                                    saturation=(1, 1), hue_delta=1)
    assert np.abs(same.astype(int) - img).max() <= 2
    changed = [T.photometric_distortion(np.random.default_rng(s), img) for s in range(8)]
    assert sum(not np.array_equal(c, img) for c in changed) >= 6
    # hue of pure red shifts towards yellow by +delta (cv2 units: 180 per turn)
    red = np.zeros((1, 1, 3), np.uint8)
    red[..., 0] = 255
    assert T.rgb_to_hsv(red)[0, 0].tolist() == [0.0, 255.0, 255.0]


def test_test_pipeline_keeps_label_resolution():
    img = np.zeros((100, 300, 3), np.uint8)
    lab = np.zeros((100, 300), np.int64)
    out = T.TestPipeline(test_scale=(2048, 512))(img, lab)
    assert out["image"].shape == (3, 512, 1536) and out["label"].shape == (100, 300)


def test_dataset_and_train_loader(roots):
    spec = get_spec("ade20k", mini=True)
    ds = SegmentationDataset.from_spec(roots["ade20k"], spec, train=True, seed=7)
    assert len(ds) == 400 and ds.num_classes == 150 and ds.ignore_index == 255
    a, b = ds[3], ds[3]
    assert torch.equal(a["image"], b["image"])  # fixed by (seed, epoch 0, index)
    items = EpochItems(ds)  # the trainer's items, keyed by (epoch, index)
    assert torch.equal(items[(0, 3)]["image"], a["image"])
    assert not torch.equal(items[(1, 3)]["image"], a["image"])
    # the trainer's loader (as protoseg.engine.train builds it from protoseg.engine.data_order), one epoch of 100 iterations
    sampler = IterationBatchSampler(len(ds), global_batch=4, grad_accum=1, rank=0, world_size=1, seed=7,
                                    start=0, total=100)
    loader = torch.utils.data.DataLoader(items, batch_sampler=sampler, num_workers=2,
                                         generator=torch.Generator().manual_seed(7))
    batches = list(loader)
    assert len(batches) == 100
    assert batches[0]["image"].shape == (4, 3, 128, 128) and batches[0]["label"].shape == (4, 128, 128)
    keys = [key for b in sampler for key in b]
    assert sorted(i for _, i in keys) == list(range(400)) and {e for e, _ in keys} == {0}
    assert torch.equal(batches[0]["image"][0], ds[keys[0][1]]["image"])


def test_eval_loader_and_top_n_label_set(roots):
    spec = get_spec("ade20k-full", top_n=300, mini=True, root=roots["ade20k-full"])
    assert spec.num_classes == 300 and spec.label_dir == "labels_top300" and len(spec.class_names) == 300
    ds = SegmentationDataset.from_spec(roots["ade20k-full"], spec, train=False)
    assert ds.num_classes == 300 and ds.ignore_index == 65535
    items = list(build_eval_loader(roots["ade20k-full"], spec, spec.eval_split))
    assert sum(len(b["stem"]) for b in items) == 600
    lab = items[0]["label"][0]
    assert lab.dtype == torch.int64 and int(lab[lab != 65535].max()) < 300
    img, raw = items[0]["image"][0], ds.load(0)[1]
    assert lab.shape == raw.shape and min(img.shape[1:]) == 128


@pytest.mark.parametrize("n,world", [(10, 3), (7, 2), (5, 8), (24, 1)])
def test_shard_sampler_covers_each_index_once(n, world):
    seen = [i for r in range(world) for i in ShardSampler(n, r, world)]
    assert sorted(seen) == list(range(n))


def test_resize_image_matches_torch_bilinear_and_ignores_thread_count():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    t = torch.from_numpy(img).permute(2, 0, 1)[None].double()
    for h, w in ((20, 31), (74, 106), (90, 41)):
        ref = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy()
        before = torch.get_num_threads()
        try:
            torch.set_num_threads(1)
            one = T.resize_image(img, w, h)
            torch.set_num_threads(2)
            two = T.resize_image(img, w, h)
        finally:
            torch.set_num_threads(before)
        assert np.array_equal(one, two)
        assert np.abs(one.astype(np.float64) - ref).max() <= 0.5 + 1e-9  # torch's bilinear, rounded


def test_epoch_items_decode_each_file_once_with_cache_decoded(roots):
    spec = get_spec("ade20k", mini=True)
    ds = SegmentationDataset.from_spec(roots["ade20k"], spec, train=True, seed=7)
    reads = []
    load = ds.load
    ds.load = lambda i: reads.append(i) or load(i)  # a counting wrapper around the real decoder
    items = EpochItems(ds)
    first = [items[(e, i)]["image"] for e in (0, 1) for i in (3, 5)]
    assert reads == [3, 5, 3, 5]  # no cache: every epoch decodes again
    ds.cache_decoded, reads[:] = True, []
    cached = [items[(e, i)]["image"] for e in (0, 1) for i in (3, 5)]
    assert reads == [3, 5]  # decoded once, reused by the next epoch
    assert all(torch.equal(a, b) for a, b in zip(first, cached))  # same augmented samples
