"""The dataset readers (lipstudy/data/: decode, layout, datasets, check): every LIP layout, PPP, ATR,
bad inputs, check-data, and the real sample files."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lipstudy import cli
from lipstudy.data.check import check_dataset, check_main
from lipstudy.data.datasets import ATRDataset, LIPDataset, PPPDataset, open_dataset
from lipstudy.data.decode import (
    DataError,
    is_colour_coded_palette,
    read_ids,
    read_image,
    read_label,
    voc_colormap,
)
from lipstudy.data.layout import find_layout
from lipstudy.labels import (
    ATR_CLASSES,
    LIP_CLASSES,
    LIP_PALETTE,
    PPP_CLASSES,
    colorize,
    flip_labels,
)
from lipstudy.paths import REAL_SAMPLES

REAL = REAL_SAMPLES
LIP_PHOTOS = [REAL / f"{id_}.jpg" for id_ in (  # the six LIP val photos, by LIP id
    "114317_456748", "208597_461278", "313434_204398", "342469_423620", "447689_524975",
    "76680_475011")]
H, W = 5, 7

LIP_LAYOUTS = {
    "official": {
        "train": ("TrainVal_images/train_images", "TrainVal_images/train_id.txt",
                  "TrainVal_parsing_annotations/train_segmentations"),
        "val": ("TrainVal_images/val_images", "TrainVal_images/val_id.txt",
                "TrainVal_parsing_annotations/val_segmentations"),
        "test": ("Testing_images/testing_images", "Testing_images/test_id.txt", None),
    },
    "official (doubled folders)": {
        "train": ("TrainVal_images/TrainVal_images/train_images",
                  "TrainVal_images/TrainVal_images/train_id.txt",
                  "TrainVal_parsing_annotations/TrainVal_parsing_annotations/train_segmentations"),
        "val": ("TrainVal_images/TrainVal_images/val_images",
                "TrainVal_images/TrainVal_images/val_id.txt",
                "TrainVal_parsing_annotations/TrainVal_parsing_annotations/val_segmentations"),
        "test": ("Testing_images/Testing_images/testing_images",
                 "Testing_images/Testing_images/test_id.txt", None),
    },
    "flat": {
        "train": ("train_images", "train_id.txt", "train_segmentations"),
        "val": ("val_images", "val_id.txt", "val_segmentations"),
        "test": ("test_images", "test_id.txt", None),
    },
}


# ------------------------------------------------------------------------------------------
# Fixture builders: tiny 7x5 datasets written at test time
# ------------------------------------------------------------------------------------------

def make_image(seed: int) -> np.ndarray:
    # Smooth colours, so a quality-100 JPEG round trip stays within a few grey levels.
    yy, xx = np.mgrid[0:H, 0:W]
    base = np.stack([20 * xx + 10 * seed, 30 * yy + 40, 15 * (xx + yy) + 5 * seed], axis=-1)
    return (base % 200 + 20).astype(np.uint8)


def make_label(seed: int, num_classes: int) -> np.ndarray:
    label = (np.arange(H * W).reshape(H, W) * (seed + 3)) % num_classes
    label[0, 0] = 255  # ignore pixels are legal
    label[-1, -1] = num_classes - 1  # so is the largest id of the taxonomy
    return label.astype(np.uint8)


def save_jpg(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, quality=100, subsampling=0)


def save_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def write_ids(path: Path, ids) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{i}\n" for i in ids))


def write_lip(root: Path, layout: str = "official", counts=None) -> dict:
    """Write a LIP dataset in ``layout``; hidden test labels go to ``root/server``.
    Returns {split: {id: (image, label)}}."""
    counts = counts or {"train": 2, "val": 1, "test": 2}
    truth = {}
    for k, (split, n) in enumerate(counts.items()):
        images, ids_file, labels = LIP_LAYOUTS[layout][split]
        ids = [f"{1000 * (k + 1) + i}_{i}" for i in range(n)]
        write_ids(root / ids_file, ids)
        truth[split] = {}
        for j, id_ in enumerate(ids):
            seed = 10 * k + j
            image, label = make_image(seed), make_label(seed, len(LIP_CLASSES))
            save_jpg(root / images / f"{id_}.jpg", image)
            save_png((root / labels if labels else root / "server/test_segmentations") / f"{id_}.png", label)
            truth[split][id_] = (image, label)
    return truth


def write_part(root: Path, kind: str, ids_under_list: bool = False) -> dict:
    """Write a PPP or ATR dataset (labels for every split)."""
    label_dir = {"ppp": "SegmentationPart", "atr": "SegmentationClassAug"}[kind]
    num_classes = {"ppp": len(PPP_CLASSES), "atr": len(ATR_CLASSES)}[kind]
    truth = {}
    for k, (split, n) in enumerate({"train": 2, "val": 1, "test": 1}.items()):
        ids = [f"2008_{k}{i:05d}" for i in range(n)]
        write_ids(root / ("list" if ids_under_list else "") / f"{split}_id.txt", ids)
        truth[split] = {}
        for j, id_ in enumerate(ids):
            image, label = make_image(5 * k + j), make_label(5 * k + j, num_classes)
            save_jpg(root / "JPEGImages" / f"{id_}.jpg", image)
            save_png(root / label_dir / f"{id_}.png", label)
            truth[split][id_] = (image, label)
    return truth


def assert_reads_back(ds, expected: dict, with_labels: bool = True) -> None:
    assert ds.ids == list(expected)
    assert len(ds) == len(expected)
    for i, (id_, (image, label)) in enumerate(expected.items()):
        item = ds[i]
        assert item["id"] == id_
        assert item["image"].dtype == np.uint8 and item["image"].shape == (H, W, 3)
        assert np.abs(item["image"].astype(int) - image).max() <= 6  # JPEG quality 100
        if with_labels:
            assert item["label"].dtype == np.uint8
            np.testing.assert_array_equal(item["label"], label)
        else:
            assert item["label"] is None


# ------------------------------------------------------------------------------------------
# Layouts read back exactly
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", list(LIP_LAYOUTS))
def test_lip_layouts_read_back(tmp_path, layout):
    truth = write_lip(tmp_path, layout)
    found = find_layout(tmp_path)
    assert found.kind == "lip"
    assert {s: p.layout for s, p in found.splits.items()} == dict.fromkeys(truth, layout)
    for split in ("train", "val"):
        ds = LIPDataset(tmp_path, split)
        assert ds.num_classes == 20 and ds.classes == LIP_CLASSES
        assert_reads_back(ds, truth[split])
    test = LIPDataset(tmp_path, "test")
    assert_reads_back(test, truth["test"], with_labels=False)
    hidden = LIPDataset(tmp_path, "test", label_dir=tmp_path / "server" / "test_segmentations")
    assert_reads_back(hidden, truth["test"])


def test_open_dataset_auto_detects_kind(tmp_path):
    write_lip(tmp_path / "lip", "flat")
    write_part(tmp_path / "ppp", "ppp")
    write_part(tmp_path / "atr", "atr")
    assert type(open_dataset(tmp_path / "lip", "val")) is LIPDataset
    assert type(open_dataset(tmp_path / "ppp", "val")) is PPPDataset
    assert type(open_dataset(tmp_path / "atr", "val")) is ATRDataset
    assert type(open_dataset(tmp_path / "lip", "val", kind="lip")) is LIPDataset


@pytest.mark.parametrize("kind,cls,classes", [("ppp", PPPDataset, PPP_CLASSES),
                                              ("atr", ATRDataset, ATR_CLASSES)])
@pytest.mark.parametrize("under_list", [False, True])
def test_part_datasets_read_back(tmp_path, kind, cls, classes, under_list):
    truth = write_part(tmp_path, kind, ids_under_list=under_list)
    for split in ("train", "val", "test"):
        ds = cls(tmp_path, split)
        assert ds.num_classes == len(classes) and ds.classes == classes
        assert_reads_back(ds, truth[split])
    # One more than the largest id of the taxonomy is rejected.
    id_ = next(iter(truth["val"]))
    label_dir = ds.label_dir
    save_png(label_dir / f"{id_}.png", np.full((H, W), len(classes), np.uint8))
    with pytest.raises(DataError, match=f"outside 0..{len(classes) - 1}"):
        cls(tmp_path, "val")[0]


def test_transform_is_applied(tmp_path):
    truth = write_lip(tmp_path, "flat")

    def flip(sample):
        return {**sample, "image": sample["image"][:, ::-1], "label": flip_labels(sample["label"])}

    ds = LIPDataset(tmp_path, "train", transform=flip)
    id_, (_, label) = next(iter(truth["train"].items()))
    np.testing.assert_array_equal(ds[0]["label"], flip_labels(label))
    assert ds[-1]["id"] == list(truth["train"])[-1]
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_read_ids_strips_whitespace_blanks_and_extensions(tmp_path):
    path = tmp_path / "train_id.txt"
    path.write_text("  100_1  \n\n100_2.jpg\r\n\t\n100_3.png\n"
                    "/JPEGImages/2008_000003.jpg /SegmentationClassAug/2008_000003.png\n")
    assert read_ids(path) == ["100_1", "100_2", "100_3", "2008_000003"]


def test_ids_with_extensions_in_a_layout(tmp_path):
    truth = write_lip(tmp_path, "official")
    ids_file = tmp_path / "TrainVal_images" / "train_id.txt"
    ids_file.write_text("".join(f"{i}.jpg\n\n" for i in truth["train"]))
    assert_reads_back(LIPDataset(tmp_path, "train"), truth["train"])


def test_png_images_read_exactly(tmp_path):
    # Some copies store images as PNG: then pixels round-trip exactly.
    image = make_image(3)
    save_png(tmp_path / "val_images" / "a_1.png", image)
    save_png(tmp_path / "val_segmentations" / "a_1.png", make_label(3, 20))
    write_ids(tmp_path / "val_id.txt", ["a_1"])
    np.testing.assert_array_equal(LIPDataset(tmp_path, "val")[0]["image"], image)


@pytest.mark.parametrize("mode", ["L", "RGBA"])
def test_read_image_converts_to_rgb(tmp_path, mode):
    rgb = make_image(1)
    img = Image.fromarray(rgb).convert(mode)
    path = tmp_path / ("x.png" if mode == "RGBA" else "x.jpg")
    img.save(path, **({"quality": 100} if path.suffix == ".jpg" else {}))
    out = read_image(path)
    assert out.dtype == np.uint8 and out.shape == (H, W, 3)
    if mode == "L":  # grey replicated into three equal channels
        assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    if mode == "RGBA":
        np.testing.assert_array_equal(out, rgb)


def test_read_cmyk_jpeg_known_colours(tmp_path):
    # LIP has a few CMYK photos. Four 8x8 blocks (JPEG's block size, so quality 100 keeps them flat);
    # RGB = (255 - C) * (255 - K) / 255 per channel (C->R, M->G, Y->B):
    # white, cyan, black, and (255*223/255, 127*223/255, 191*223/255) = (223, 111, 167).
    cmyk = np.zeros((16, 16, 4), np.uint8)
    cmyk[:8, 8:] = (255, 0, 0, 0)
    cmyk[8:, :8] = (0, 0, 0, 255)
    cmyk[8:, 8:] = (0, 128, 64, 32)
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(cmyk, mode="CMYK").save(path, quality=100)
    assert Image.open(path).mode == "CMYK"
    out = read_image(path)
    assert out.dtype == np.uint8 and out.shape == (16, 16, 3)
    expected = np.zeros((16, 16, 3), np.uint8)
    expected[:8, :8] = (255, 255, 255)
    expected[:8, 8:] = (0, 255, 255)
    expected[8:, :8] = (0, 0, 0)
    expected[8:, 8:] = (223, 111, 167)
    assert np.abs(out.astype(int) - expected).max() <= 2


def test_read_palette_png_known_colours(tmp_path):
    # A palette image reads as its palette's colours, not as its indices.
    index = np.array([[0, 1, 2, 3], [3, 2, 1, 0]], np.uint8)
    palette = np.array([(10, 20, 30), (200, 100, 50), (0, 255, 0), (255, 255, 255)], np.uint8)
    img = Image.fromarray(index, mode="L").convert("P")
    img.putpalette(palette.ravel().tolist())
    img.save(tmp_path / "p.png")
    assert Image.open(tmp_path / "p.png").mode == "P"
    np.testing.assert_array_equal(read_image(tmp_path / "p.png"), palette[index])


# ------------------------------------------------------------------------------------------
# Label PNG modes
# ------------------------------------------------------------------------------------------

def indexed_png(path: Path, index: np.ndarray, palette: np.ndarray) -> Path:
    img = Image.fromarray(index, mode="L").convert("P")
    img.putpalette(palette.astype(np.uint8).ravel().tolist())
    img.save(path)
    assert Image.open(path).mode == "P"
    return path


def test_indexed_label_with_voc_palette_reads_indices(tmp_path):
    # VOC colormap entries 1 and 2 are also LIP colours (hat, skirt): still indices = ids.
    label = make_label(2, 7)
    path = indexed_png(tmp_path / "voc.png", label, voc_colormap())
    np.testing.assert_array_equal(read_label(path, num_classes=7), label)


def test_indexed_label_with_lip_palette_in_id_order_reads_indices(tmp_path):
    label = make_label(1, 20)
    path = indexed_png(tmp_path / "schp.png", label, LIP_PALETTE)
    np.testing.assert_array_equal(read_label(path), label)


def test_grayscale_label_saved_as_rgb_reads_ids(tmp_path):
    label = make_label(4, 20)
    save_png(tmp_path / "g.png", np.repeat(label[..., None], 3, axis=-1))
    np.testing.assert_array_equal(read_label(tmp_path / "g.png"), label)


def test_real_label_reads_documented_ids_and_flips_to_reversed():
    label = read_label(REAL / "label_0000002.png")
    assert label.shape == (333, 500) and label.dtype == np.uint8
    assert set(np.unique(label).tolist()) == {0, 2, 5, 10, 13, 14, 15}
    reversed_ = read_label(REAL / "label_reversed_0000002.png")
    np.testing.assert_array_equal(flip_labels(label), reversed_)


def test_real_lip_photos_through_a_flat_test_split(tmp_path):
    assert len(LIP_PHOTOS) == 6
    for photo in LIP_PHOTOS:
        save_dir = tmp_path / "test_images"
        save_dir.mkdir(exist_ok=True)
        shutil.copy(photo, save_dir / photo.name)
    write_ids(tmp_path / "test_id.txt", [p.stem for p in LIP_PHOTOS])
    ds = open_dataset(tmp_path, "test")
    assert isinstance(ds, LIPDataset) and ds.ids == [p.stem for p in LIP_PHOTOS]
    for i, photo in enumerate(LIP_PHOTOS):
        item = ds[i]
        w, h = Image.open(photo).size
        assert item["image"].dtype == np.uint8 and item["image"].shape == (h, w, 3)
        assert item["label"] is None
    assert check_dataset(tmp_path) == []


def test_real_cihp_sample_as_a_flat_val_split(tmp_path):
    (tmp_path / "val_images").mkdir()
    (tmp_path / "val_segmentations").mkdir()
    shutil.copy(REAL / "image_0000002.jpg", tmp_path / "val_images" / "0000002.jpg")
    shutil.copy(REAL / "label_0000002.png", tmp_path / "val_segmentations" / "0000002.png")
    write_ids(tmp_path / "val_id.txt", ["0000002"])
    item = LIPDataset(tmp_path, "val")[0]
    assert item["image"].shape == (333, 500, 3) and item["label"].shape == (333, 500)


# ------------------------------------------------------------------------------------------
# Bad inputs: DataError naming the file and the problem
# ------------------------------------------------------------------------------------------

def raises_data_error(fn, *must_contain: str) -> str:
    with pytest.raises(DataError) as info:
        fn()
    message = str(info.value)
    for text in must_contain:
        assert text in message, f"{text!r} not in {message!r}"
    assert isinstance(info.value, ValueError)
    return message


def test_missing_root(tmp_path):
    root = tmp_path / "nowhere"
    raises_data_error(lambda: LIPDataset(root, "train"), str(root), "does not exist")
    raises_data_error(lambda: open_dataset(root, "train"), str(root), "does not exist")


def test_root_without_any_dataset_lists_what_was_looked_for(tmp_path):
    msg = raises_data_error(lambda: open_dataset(tmp_path, "train"), str(tmp_path), "looked for")
    for folder in ("TrainVal_images/train_images/", "train_images/", "SegmentationPart/",
                   "SegmentationClassAug/"):
        assert folder in msg


def test_missing_split_says_what_was_looked_for(tmp_path):
    write_lip(tmp_path, "official", counts={"train": 1})
    raises_data_error(lambda: LIPDataset(tmp_path, "val"), str(tmp_path), "'val' not found",
                      "TrainVal_images/val_images/", "TrainVal_images/TrainVal_images/val_images/",
                      "val_images/")
    write_part(tmp_path / "ppp", "ppp")
    (tmp_path / "ppp" / "test_id.txt").unlink()
    raises_data_error(lambda: PPPDataset(tmp_path / "ppp", "test"), "'test' not found",
                      "test_id.txt", "list/test_id.txt")


def test_missing_id_file(tmp_path):
    write_lip(tmp_path, "flat", counts={"train": 1})
    (tmp_path / "train_id.txt").unlink()
    raises_data_error(lambda: LIPDataset(tmp_path, "train"), "train_id.txt", "id list not found")


def test_missing_label_folder(tmp_path):
    write_lip(tmp_path, "official", counts={"train": 1})
    shutil.rmtree(tmp_path / "TrainVal_parsing_annotations")
    raises_data_error(lambda: LIPDataset(tmp_path, "train"), "train_segmentations",
                      "label folder", "not found")


def test_missing_image_of_an_id(tmp_path):
    truth = write_lip(tmp_path, "flat", counts={"train": 2})
    id_ = list(truth["train"])[1]
    (tmp_path / "train_images" / f"{id_}.jpg").unlink()
    ds = LIPDataset(tmp_path, "train")
    ds[0]  # the other item still reads
    raises_data_error(lambda: ds[1], f"{id_}.jpg", "not found", "train_id.txt")


def test_missing_label_of_an_id(tmp_path):
    truth = write_lip(tmp_path, "flat", counts={"val": 1})
    id_ = list(truth["val"])[0]
    (tmp_path / "val_segmentations" / f"{id_}.png").unlink()
    raises_data_error(lambda: LIPDataset(tmp_path, "val")[0], f"{id_}.png", "label", "not found")


def test_corrupt_jpeg(tmp_path):
    path = tmp_path / "bad.jpg"
    path.write_bytes(b"this is not a jpeg at all" * 3)
    raises_data_error(lambda: read_image(path), "bad.jpg", "not a readable image")
    path.write_bytes(b"\xff\xd8\xff\xe0 a JPEG header, then garbage" * 3)
    raises_data_error(lambda: read_image(path), "bad.jpg", "cannot decode")


def test_truncated_jpeg(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "cut.jpg"
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    raises_data_error(lambda: read_image(path), "cut.jpg", "cannot decode", "is truncated")


def test_truncated_png_label(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "cut.png"
    save_png(path, rng.integers(0, 20, (64, 64), dtype=np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    raises_data_error(lambda: read_label(path), "cut.png", "cannot decode", "is truncated")
    # Cut after the pixel data (end marker incomplete): decodes, but is caught by verification.
    path.write_bytes(data[:-5])
    raises_data_error(lambda: read_label(path), "cut.png", "cannot decode", "is corrupt")


def test_colour_label_rgb_is_rejected_with_conversion_hint(tmp_path):
    label = make_label(0, 20)
    label[label == 255] = 0
    save_png(tmp_path / "colour.png", colorize(label))
    raises_data_error(lambda: read_label(tmp_path / "colour.png"), "colour.png", "mode 'RGB'",
                      "colour-coded", "LIP_PALETTE")
    save_png(tmp_path / "colour_a.png", np.dstack([colorize(label), np.full((H, W), 255, np.uint8)]))
    raises_data_error(lambda: read_label(tmp_path / "colour_a.png"), "colour_a.png", "mode 'RGBA'")


def test_colour_label_through_a_palette_is_rejected(tmp_path):
    # A colour label map quantised to mode P: LIP colours at indices that are not their ids.
    label = make_label(0, 20)
    label[label == 255] = 0
    quantised = Image.fromarray(colorize(label)).quantize(colors=20, dither=Image.Dither.NONE)
    quantised.save(tmp_path / "quantised.png")
    pal = np.array(quantised.getpalette("RGB")).reshape(-1, 3)[np.asarray(quantised)]
    np.testing.assert_array_equal(pal, colorize(label))  # the colours did survive
    raises_data_error(lambda: read_label(tmp_path / "quantised.png"), "quantised.png", "mode 'P'",
                      "colour-coded", "LIP_PALETTE")


def test_is_colour_coded_palette_is_what_read_label_and_the_server_check(tmp_path):
    # The public check the scoring server shares with read_label: the same answer whether the
    # caller passes the pixel indices it already holds or lets the function read them.
    label = make_label(3, 20)
    label[label == 255] = 0  # the ignore colour is no LIP colour: it would make any palette ordinary
    quantised = Image.fromarray(colorize(label)).quantize(colors=20, dither=Image.Dither.NONE)
    cases = {
        "voc": (Image.open(indexed_png(tmp_path / "voc.png", make_label(2, 7), voc_colormap())), False),
        "lip in id order": (Image.open(indexed_png(tmp_path / "schp.png", label, LIP_PALETTE)), False),
        "quantised colours": (quantised, True),
    }
    for name, (img, coded) in cases.items():
        assert is_colour_coded_palette(img) is coded, name
        assert is_colour_coded_palette(img, np.asarray(img)) is coded, name


def test_label_values_out_of_range_are_named(tmp_path):
    label = make_label(0, 20)
    label[1, 1], label[2, 2], label[3, 3] = 20, 37, 37
    save_png(tmp_path / "range.png", label)
    raises_data_error(lambda: read_label(tmp_path / "range.png"), "range.png", "20, 37",
                      "outside 0..19")
    # The range follows the taxonomy: 7 is a LIP class but not a PPP one.
    save_png(tmp_path / "ppp.png", make_label(0, 8))
    raises_data_error(lambda: read_label(tmp_path / "ppp.png", num_classes=7), "ppp.png", "7",
                      "outside 0..6")


def test_image_and_label_sizes_differ(tmp_path):
    truth = write_lip(tmp_path, "flat", counts={"val": 1})
    id_ = list(truth["val"])[0]
    save_png(tmp_path / "val_segmentations" / f"{id_}.png", np.zeros((H, W + 1), np.uint8))
    raises_data_error(lambda: LIPDataset(tmp_path, "val")[0], f"{id_}.png", f"{W + 1}x{H}",
                      f"{W}x{H}", "differs")


def test_empty_id_list(tmp_path):
    write_lip(tmp_path, "flat", counts={"train": 1})
    (tmp_path / "train_id.txt").write_text("\n  \n\n")
    raises_data_error(lambda: LIPDataset(tmp_path, "train"), "train_id.txt", "empty")


def test_unknown_kind_and_split(tmp_path):
    write_lip(tmp_path, "flat", counts={"train": 1})
    raises_data_error(lambda: open_dataset(tmp_path, "train", kind="cityscapes"), "cityscapes")
    raises_data_error(lambda: LIPDataset(tmp_path, "trainval"), "trainval", "unknown split")


# ------------------------------------------------------------------------------------------
# check_dataset and `lipstudy check-data`
# ------------------------------------------------------------------------------------------

def break_several(root: Path, truth: dict) -> list[str]:
    """Damage a flat LIP dataset in four independent ways; return one file name per problem."""
    train_ids, val_ids = list(truth["train"]), list(truth["val"])
    (root / "train_images" / f"{train_ids[0]}.jpg").write_bytes(b"garbage")
    save_png(root / "train_segmentations" / f"{train_ids[1]}.png", np.full((H, W), 42, np.uint8))
    (root / "val_segmentations" / f"{val_ids[0]}.png").unlink()
    (root / "test_images" / f"{list(truth['test'])[1]}.jpg").unlink()
    return [f"{train_ids[0]}.jpg", f"{train_ids[1]}.png", f"{val_ids[0]}.png",
            f"{list(truth['test'])[1]}.jpg"]


def test_check_dataset_clean_and_all_problems_at_once(tmp_path):
    truth = write_lip(tmp_path, "flat", counts={"train": 3, "val": 2, "test": 2})
    assert check_dataset(tmp_path) == []
    names = break_several(tmp_path, truth)
    problems = check_dataset(tmp_path)
    assert len(problems) == 4
    for name, problem in zip(names, problems):
        assert name in problem
    assert "not a readable image" in problems[0] and "42" in problems[1]
    assert check_dataset(tmp_path, splits=["val"]) == [problems[2]]
    # A missing requested split is a problem too; the others are still checked.
    (tmp_path / "val_id.txt").unlink()
    problems = check_dataset(tmp_path, splits=["train", "val"])
    assert len(problems) == 3 and "val_id.txt" in problems[2]


def test_check_dataset_reports_unreadable_root_and_duplicates(tmp_path):
    assert "does not exist" in check_dataset(tmp_path / "nope")[0]
    truth = write_part(tmp_path, "atr")
    dup = list(truth["train"])[0]
    write_ids(tmp_path / "train_id.txt", list(truth["train"]) + [dup])
    problems = check_dataset(tmp_path, workers=2)
    assert len(problems) == 1 and "listed 2 times" in problems[0] and dup in problems[0]


def test_check_main_exit_codes(tmp_path, capsys):
    truth = write_lip(tmp_path, "official (doubled folders)")
    assert check_main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "checked 5 items" in out and "train 2" in out and "0 problems" in out
    assert check_main([str(tmp_path), "--kind", "lip", "--split", "val", "test"]) == 0
    assert "checked 3 items" in capsys.readouterr().out
    label = tmp_path / "TrainVal_parsing_annotations/TrainVal_parsing_annotations/val_segmentations"
    save_png(label / f"{list(truth['val'])[0]}.png", np.full((H, W), 99, np.uint8))
    assert cli.main(["check-data", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "99" in out and "1 problem" in out
    assert check_main([]) == 2
    assert check_main([str(tmp_path), "--kind", "voc"]) == 2
    assert check_main([str(tmp_path), "--split", "trainval"]) == 2
    assert check_main([str(tmp_path / "missing")]) == 1
