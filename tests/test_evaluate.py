import json

import numpy as np
import pytest
import torch
from PIL import Image

from lipstudy.data.datasets import open_dataset
from lipstudy.evaluate import (EvalSettings, class_map, evaluate, evaluate_checkpoint, flip_logits, load_cms, main,
                               predict_logits)
from lipstudy.labels import ATR_LIP_SHARED, LIP_CLASSES, LIP_FLIP_PAIRS, flip_labels
from lipstudy.config import TrainConfig, build_network
from lipstudy.paths import REAL_SAMPLES
from test_train import CLASS_COLOURS, write_tiny_lip


class Constant(torch.nn.Module):
    """Predicts class ``c`` everywhere, at the input resolution (records the input sizes seen)."""

    def __init__(self, c=0, num_classes=20):
        super().__init__()
        self.c, self.n, self.sizes = c, num_classes, []

    def forward(self, x):
        self.sizes.append(tuple(x.shape[-2:]))
        out = torch.zeros(x.shape[0], self.n, *x.shape[-2:])
        out[:, self.c] = 1.0
        return out


class ColourOracle(torch.nn.Module):
    """Classifies each pixel by its nearest class colour (the tiny dataset's colour code)."""

    def __init__(self):
        super().__init__()
        from lipstudy.transforms import normalize
        cols = np.array(list(CLASS_COLOURS.values()), np.uint8)[None]
        self.register_buffer("centres", normalize(cols)[:, 0].T.clone())  # [K,3]
        self.ids = list(CLASS_COLOURS)

    def forward(self, x):
        d = ((x[:, None] - self.centres[None, :, :, None, None]) ** 2).sum(2)  # [B,K,H,W]
        out = torch.full((x.shape[0], 20, *x.shape[-2:]), -1e4)
        out[:, self.ids] = -d
        return out


def test_class_map_is_argmax_ties_included():
    """The first largest class wins a tie, as argmax's documented rule; on quantised logits (many
    ties) and on real-valued ones the two agree everywhere."""
    logits = torch.tensor([[[1.0, 5.0]], [[3.0, 5.0]], [[3.0, 2.0]]])  # [C=3, 1, 2]
    assert class_map(logits).tolist() == [[1, 0]]
    g = torch.Generator().manual_seed(0)
    for x in (torch.randint(0, 3, (20, 37, 23), generator=g).float(), torch.randn(20, 64, 48, generator=g)):
        assert torch.equal(class_map(x), x.argmax(0))


def test_flip_logits_swaps_left_and_right_channels():
    logits = torch.zeros(20, 2, 4)
    logits[14, :, 0] = 1.0  # left-arm evidence in the first column
    f = flip_logits(logits, LIP_FLIP_PAIRS)
    assert f[15, :, 3].eq(1).all() and f[14].eq(0).all() and f.sum() == logits.sum()
    assert torch.equal(flip_logits(f, LIP_FLIP_PAIRS), logits)


def test_flip_averaged_prediction_is_flip_equivariant():
    torch.manual_seed(0)
    model = build_network(TrainConfig(model="deeplabv2", width=0.0625, dropout=0.0)).eval()
    x = torch.randn(3, 24, 20)
    a = predict_logits(model, x, (24, 20), flip=True, flip_pairs=LIP_FLIP_PAIRS)
    b = predict_logits(model, x.flip(-1), (24, 20), flip=True, flip_pairs=LIP_FLIP_PAIRS)
    assert torch.allclose(b, flip_logits(a, LIP_FLIP_PAIRS), atol=1e-5)
    assert torch.equal(flip_labels(a.argmax(0)), b.argmax(0))
    plain = predict_logits(model, x, (24, 20))
    assert torch.allclose(predict_logits(model, x, (24, 20), scales=(1.0, 1.0)), plain, atol=1e-6)
    assert not torch.allclose(a, plain)


def test_constant_model_known_scores_and_files(tmp_path):
    root = write_tiny_lip(tmp_path / "d", n_val=3)
    ds = open_dataset(root, "val")
    labels = np.stack([ds[i]["label"] for i in range(len(ds))])
    res = evaluate(Constant(0), ds, LIP_CLASSES, LIP_FLIP_PAIRS, out=tmp_path / "e", save_png=True,
                   save_color=True, progress=False)
    m = json.loads((tmp_path / "e" / "metrics.json").read_text())
    bg = (labels == 0).sum() / labels.size
    present = len(np.unique(labels))
    # Everything is called background: pixel accuracy = background share, background IoU = its
    # share too (every pixel is in the union), every other present class has IoU 0.
    assert m["overall_acc"] == pytest.approx(bg)
    assert m["mean_iou"] == pytest.approx(bg / present)
    assert m["mean_acc"] == pytest.approx(1 / present)
    assert m["per_class_iou"]["background"] == pytest.approx(bg) and m["per_class_iou"]["hat"] is None
    assert m["n_images"] == 3 and m["settings"]["flip"] is False
    ids, cms = load_cms(tmp_path / "e" / "per_image_cm.npz")
    assert ids == ds.ids == res["ids"]
    for k in range(3):
        assert np.array_equal(cms[k].sum(1), np.bincount(labels[k].ravel(), minlength=20))
        assert cms[k][:, 1:].sum() == 0
    png = np.array(Image.open(tmp_path / "e" / "pred" / f"{ids[0]}.png"))
    assert png.dtype == np.uint8 and png.shape == labels[0].shape and (png == 0).all()
    assert np.array(Image.open(tmp_path / "e" / "color" / f"{ids[0]}.png")).shape == (*labels[0].shape, 3)


def test_input_size_and_scales_keep_annotation_resolution(tmp_path):
    root = write_tiny_lip(tmp_path / "d", n_val=2, size=(40, 32))
    ds = open_dataset(root, "val")
    model = Constant(0)
    res = evaluate(model, ds, LIP_CLASSES, LIP_FLIP_PAIRS, EvalSettings(flip=True, scales=(0.5, 1.0),
                                                                      input_size=20), progress=False)
    assert set(model.sizes) == {(10, 8), (20, 16)}  # longer side 20, then x0.5
    assert res["cms"].sum() == 2 * 40 * 32  # scored at the label's 40x32


def test_colour_oracle_scores_near_perfect(tmp_path):
    root = write_tiny_lip(tmp_path / "d", n_val=3)
    res = evaluate(ColourOracle(), open_dataset(root, "val"), LIP_CLASSES, LIP_FLIP_PAIRS, progress=False)
    assert res["metrics"]["mean_iou"] > 0.9 and res["metrics"]["overall_acc"] > 0.97


def test_label_map_and_class_subset(tmp_path):
    # An ATR-labelled val split: ATR 4 = upper-clothes (LIP 5), ATR 8 = belt (no LIP class).
    root = tmp_path / "atr"
    (root / "val_images").mkdir(parents=True)
    (root / "val_segmentations").mkdir()
    label = np.zeros((8, 8), np.uint8)
    label[:4] = 4
    label[4:6] = 8
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "val_images" / "a.jpg")
    Image.fromarray(label).save(root / "val_segmentations" / "a.png")
    (root / "val_id.txt").write_text("a\n")
    ds = open_dataset(root, "val", kind="lip")
    res = evaluate(Constant(5), ds, LIP_CLASSES, LIP_FLIP_PAIRS,
                   EvalSettings(label_map="atr_to_lip", classes_subset=ATR_LIP_SHARED), progress=False)
    cm = res["cms"][0]
    assert cm.sum() == 48  # the 16 belt pixels are ignored
    assert cm[5, 5] == 32 and cm[0, 5] == 16
    m = res["metrics"]
    # IoU(upper-clothes) = 32/48, IoU(background) = 0; other shared classes absent (skipped).
    assert m["mean_iou"] == pytest.approx((32 / 48 + 0) / 2)
    assert set(m["per_class_iou"]) == {LIP_CLASSES[i] for i in ATR_LIP_SHARED}
    with pytest.raises(ValueError, match="unknown label_map"):
        EvalSettings(label_map="nope")


def test_checkpoint_cli_and_unlabelled_test_split(tmp_path, capsys):
    root = write_tiny_lip(tmp_path / "d", n_val=2, n_test=2)
    cfg = TrainConfig(model="deeplabv2", width=0.0625, dropout=0.0, device="cpu")
    torch.manual_seed(0)
    ckpt = tmp_path / "c.pt"
    torch.save({"model": build_network(cfg).state_dict(), "config": cfg.to_dict()}, ckpt)
    assert main(["--checkpoint", str(ckpt), "--data", str(root), "--out", str(tmp_path / "e"),
                 "--flip", "--save-png", "--device", "cpu", "--workers", "0"]) == 0
    assert "2 images: overall acc" in capsys.readouterr().out
    assert len(list((tmp_path / "e" / "pred").glob("*.png"))) == 2
    res = evaluate_checkpoint(ckpt, root, "test", device="cpu", progress=False, out=tmp_path / "t",
                              save_png=True)
    assert res["metrics"]["n_images"] == 0 and res["metrics"]["n_predicted"] == 2
    assert len(list((tmp_path / "t" / "pred").glob("*.png"))) == 2
    # The server's hidden labels make the test split scorable.
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    for i in open_dataset(root, "test").ids:
        Image.fromarray(np.zeros((40, 32), np.uint8)).save(hidden / f"{i}.png")
    res = evaluate_checkpoint(ckpt, root, "test", device="cpu", progress=False, label_dir=hidden)
    assert res["metrics"]["n_images"] == 2
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    assert main(["--checkpoint", str(tmp_path / "bad.pt"), "--data", str(root), "--workers", "0"]) == 2
    assert "not a readable checkpoint" in capsys.readouterr().err


def test_parse_writes_parsing_and_overlay(tmp_path, capsys):
    """A network whose output is the constant logit vector of its last bias (class 7, coat) parses
    every pixel of a real photo as coat, with or without the flip (coat has no left/right twin);
    the overlay is the photo blended with coat's colour."""
    from lipstudy.labels import LIP_PALETTE, overlay
    from lipstudy.parse import main as parse_main

    photo = REAL_SAMPLES / "114317_456748.jpg"
    cfg = TrainConfig(model="deeplabv2", width=0.0625, dropout=0.0, device="cpu")
    model = build_network(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.aspp[0].fc8.bias[7] = 1.0
    ckpt = tmp_path / "c.pt"
    torch.save({"model": model.state_dict(), "config": cfg.to_dict()}, ckpt)
    rc = parse_main([str(photo), str(tmp_path / "missing.jpg"), "--checkpoint", str(ckpt), "--out",
                     str(tmp_path / "o"), "--device", "cpu", "--flip"])
    assert rc == 2 and "missing.jpg" in capsys.readouterr().err  # the bad file is named, others done
    rgb = np.array(Image.open(photo).convert("RGB"))
    parsing = Image.open(tmp_path / "o" / "114317_456748_parsing.png")
    assert parsing.mode == "L" and parsing.size == (rgb.shape[1], rgb.shape[0])
    assert (np.array(parsing) == 7).all()
    drawn = np.array(Image.open(tmp_path / "o" / "114317_456748_overlay.png"))
    assert np.array_equal(drawn, overlay(rgb, np.full(rgb.shape[:2], 7, np.uint8)))
    # by hand at one pixel: 45% of the photo, 55% of coat's colour
    expected = np.round(0.45 * rgb[0, 0].astype(float) + 0.55 * LIP_PALETTE[7].astype(float))
    assert np.abs(drawn[0, 0].astype(float) - expected).max() <= 1


def test_an_evaluation_keeps_each_images_joint_terms(tmp_path):
    """With joint_terms, each scored image's Eq. 1 terms between its prediction and its label are
    written beside the confusion matrices, and they are the terms of the prediction it scored."""
    from lipstudy.evaluate import JOINT_TERMS, evaluate, load_joint_terms
    from lipstudy.joints import joint_terms
    from lipstudy.labels import LIP_CLASSES

    class Const(torch.nn.Module):  # predicts what its first input channel says (class ids), at any size
        def forward(self, x):
            ids = (x[:, 0] > 0).long() * 13  # face where the image is bright, background elsewhere
            return torch.nn.functional.one_hot(ids, 20).permute(0, 3, 1, 2).float()

    rng = np.random.default_rng(0)
    items = []
    for i in range(3):
        img = np.zeros((32, 24, 3), np.uint8)
        img[4 + i:10 + i, 6:12] = 255
        lab = np.zeros((32, 24), np.uint8)
        lab[4:10, 6:12] = 13
        lab[12:20, 6:12] = int(rng.integers(14, 16))  # covers grid row 16, column 8
        items.append({"image": img, "label": lab, "id": f"im{i}"})
    res = evaluate(Const(), items, LIP_CLASSES, out=tmp_path, progress=False, joint_terms=True)
    saved = load_joint_terms(tmp_path / JOINT_TERMS)
    assert saved["ids"] == ["im0", "im1", "im2"] == res["ids"]
    for i, item in enumerate(items):
        pred = torch.zeros(32, 24, dtype=torch.long)
        pred[4 + i:10 + i, 6:12] = 13
        sq, pp, pg = joint_terms(pred, torch.from_numpy(item["label"]), stride=8)
        assert np.allclose(saved["sq"][i], sq.numpy()) and (saved["present_pred"][i] == pp.numpy()).all()
        assert saved["present_gt"][i].sum() == 2 and saved["present_pred"][i].sum() == 1  # the arm is missed
