"""The evaluation server's checks and scoring, without the network: hidden labels, zip directory checks,
bounded reads, PNG checks, known scores, the one-shot `--score` mode."""
import io
import json
import os
import struct
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from lipstudy import metrics
from lipstudy.data.decode import DataError
from lipstudy.labels import LIP_PALETTE
from lipstudy.server import HiddenTestSet, Limits, SubmissionError, main, read_prediction, score_submission
from server_attacks import (RawEntry, bomb_zip, deflate, png, png_chunk, png_declaring, png_with_chunks,
                            raw_zip, text_bombs, write_hidden_set, zip64_directory, zip_of)


@pytest.fixture
def bench(tmp_path):
    root = tmp_path / "bench"
    labels = write_hidden_set(root, [(6, 5), (4, 7), (5, 5)])
    return root, labels


def _refusal(tmp_path, data: bytes, test_set, limits=None) -> str:
    path = tmp_path / "s.zip"
    path.write_bytes(data)
    with pytest.raises(SubmissionError) as err:
        score_submission(path, test_set, limits)
    return str(err.value)


def test_perfect_and_known_scores(bench, tmp_path):
    root, labels = bench
    ts = HiddenTestSet.from_root(root)
    assert ts.sizes == {"img0": (5, 6), "img1": (7, 4), "img2": (5, 5)}
    (tmp_path / "p.zip").write_bytes(zip_of(labels))
    perfect = score_submission(tmp_path / "p.zip", ts)
    assert perfect["metrics"]["mean_iou"] == 1.0 and perfect["n_images"] == 3
    zeros = {k: np.zeros_like(v) for k, v in labels.items()}
    (tmp_path / "z.zip").write_bytes(zip_of(zeros, folder="a/b/c/"))  # any folder depth
    res = score_submission(tmp_path / "z.zip", ts)
    cm = sum(metrics.confusion_matrix(zeros[k], labels[k], 20) for k in labels)
    assert res["metrics"]["mean_iou"] == pytest.approx(metrics.scores(cm)["mean_iou"])
    assert (res["cm"] == cm).all()
    folder = tmp_path / "folder"
    folder.mkdir()
    for k, v in labels.items():
        (folder / f"{k}.png").write_bytes(png(v))
    (folder / ".DS_Store").write_bytes(b"macOS metadata is skipped")
    assert score_submission(folder, ts)["metrics"]["overall_acc"] == 1.0


def test_hand_computed_scores(tmp_path):
    """Label [3, 4], prediction [3, 3]: IoU(3) = 1 / (1 + 2 - 1) = 1/2, IoU(4) = 0, other classes absent;
    pixel accuracy 1/2, class accuracies 1 and 0."""
    root = tmp_path / "r"
    write_hidden_set(root, [(1, 2)])
    Image.fromarray(np.array([[3, 4]], np.uint8), "L").save(root / "server" / "test_segmentations" / "img0.png")
    ts = HiddenTestSet.from_root(root)
    (tmp_path / "p.zip").write_bytes(zip_of({"img0": np.array([[3, 3]], np.uint8)}))
    m = score_submission(tmp_path / "p.zip", ts)["metrics"]
    assert (m["overall_acc"], m["mean_acc"], m["mean_iou"]) == (0.5, 0.5, 0.25)
    assert m["per_class_iou"]["glove"] == 0.5 and m["per_class_iou"]["sunglasses"] == 0.0
    assert m["per_class_iou"]["hat"] is None  # absent from both: skipped, as LIP's script does


def test_hidden_labels_are_read_with_read_label(bench, tmp_path):
    """Issue 13: the hidden labels go through data.decode.read_label's validation, not raw PIL."""
    root, labels = bench
    label_dir = root / "server" / "test_segmentations"
    # A colour-coded label (LIP colours as RGB) would be scored as garbage by a raw reader.
    rgb = LIP_PALETTE[labels["img1"]].astype(np.uint8)
    Image.fromarray(rgb, "RGB").save(label_dir / "img1.png")
    ts = HiddenTestSet.from_root(root)
    with pytest.raises(DataError, match=r"img1\.png: .*colour-coded"):
        ts.label("img1")
    (tmp_path / "p.zip").write_bytes(zip_of(labels))
    with pytest.raises(DataError, match="img1.png"):  # the server's fault: not a SubmissionError
        score_submission(tmp_path / "p.zip", ts)
    # Out-of-range ids in a hidden label are refused too, and `check` lists every broken label.
    bad = labels["img2"].copy()
    bad[0, 0] = 40
    Image.fromarray(bad, "L").save(label_dir / "img2.png")
    problems = HiddenTestSet.from_root(root).check()
    assert len(problems) == 2 and "img2.png: label values 40 are outside 0..19" in problems[1]
    from lipstudy.server import Store

    Store(tmp_path / "db.sqlite")
    assert main(["--data", str(root), "--db", str(tmp_path / "db.sqlite"), "--port", "0"]) == 1


def test_hidden_set_problems_are_named(tmp_path):
    with pytest.raises(DataError, match="hidden test labels not found"):
        HiddenTestSet.from_root(tmp_path / "nowhere")
    root = tmp_path / "r"
    write_hidden_set(root, [(3, 3)])
    (root / "Testing_images" / "test_id.txt").write_text("img0\nimg9\n")
    with pytest.raises(DataError, match=r"img9\.png: hidden label of test id 'img9' not found"):
        HiddenTestSet.from_root(root)


def test_bad_predictions_name_every_problem(bench, tmp_path):
    root, labels = bench
    ts = HiddenTestSet.from_root(root)
    msg = _refusal(tmp_path, zip_of({
        "img0": np.zeros((3, 3), np.uint8),                    # wrong size
        "img1": np.full(labels["img1"].shape, 25, np.uint8),     # not class ids
        "img2": png(labels["img2"], "RGB"),                      # colour image
    }), ts)
    assert '"preds/img0.png": size 3x3 but the test image is 5x6' in msg
    assert '"preds/img1.png": values [25] are not class ids 0..19' in msg
    assert '"preds/img2.png": mode RGB' in msg
    msg = _refusal(tmp_path, zip_of({"img0": labels["img0"], "img1": labels["img1"],
                                     "stray": np.zeros((2, 2), np.uint8)}), ts)
    assert '"preds/stray.png": not a test image prediction' in msg
    assert '1 of 3 test images have no prediction, e.g. "img2.png"' in msg
    assert "not a zip file" in _refusal(tmp_path, b"not a zip", ts)
    assert "not a zip file" in _refusal(tmp_path, b"x" * 100, ts)
    with pytest.raises(SubmissionError, match="no such file"):
        score_submission(tmp_path / "missing.zip", ts)


def test_other_formats_named_png_are_refused(bench, tmp_path):
    root, labels = bench
    ts = HiddenTestSet.from_root(root)
    msg = _refusal(tmp_path, zip_of({"img0": png(labels["img0"], fmt="GIF"), "img1": png(labels["img1"], fmt="TIFF"),
                                     "img2": png(labels["img2"], fmt="BMP")}), ts)
    assert '"preds/img0.png": a GIF file, not a PNG' in msg
    assert '"preds/img1.png": a TIFF file, not a PNG' in msg
    assert '"preds/img2.png": a BMP file, not a PNG' in msg
    jpeg = png(labels["img0"], fmt="JPEG")
    assert "a JPEG file" in _refusal(tmp_path, zip_of({**labels, "img0": jpeg}), ts)
    truncated = png(labels["img0"])[:40]
    assert '"preds/img0.png": not a readable PNG' in _refusal(tmp_path, zip_of({**labels, "img0": truncated}), ts)
    # A palette PNG whose indices are not the classes of their LIP colours (a quantised colour map).
    p = Image.fromarray(np.zeros_like(labels["img1"]), "P")
    p.putpalette([int(x) for x in LIP_PALETTE[5]] * 256)
    buf = io.BytesIO()
    p.save(buf, format="PNG")
    assert "colour-coded" in _refusal(tmp_path, zip_of({**labels, "img1": buf.getvalue()}), ts)


def test_decode_amplification_is_refused_from_the_header(tmp_path):
    """Twelve PNGs declaring 13000x13000 in a tiny zip: refused from the PNG header, nothing decoded."""
    root = tmp_path / "twelve"
    write_hidden_set(root, [(6, 5)] * 12)
    ts = HiddenTestSet.from_root(root)
    huge = png_declaring(13000, 13000)
    data = raw_zip([RawEntry(f"img{k}.png", deflate(huge), crc=zlib.crc32(huge), file_size=len(huge))
                    for k in range(12)])
    assert len(data) < 6_000
    msg = _refusal(tmp_path, data, ts)
    assert msg.count("size 13000x13000 but the test image is 5x6") == 12


def test_png_metadata_chunks_are_never_inflated(bench, tmp_path):
    """Issue 24: 64 zTXt chunks of a kilobyte each, every one inflating to 1 MiB, made a 74 kB PNG cost
    64 MB to open (Pillow inflates text up to its own limits). Only the chunks that make the image
    reach Pillow, so the prediction costs what its pixels cost."""
    import tracemalloc

    root, labels = bench
    label = labels["img0"]
    for kind, n in ((b"zTXt", 64), (b"iTXt", 64), (b"iCCP", 1)):
        data = png_with_chunks(png(label), text_bombs(n, kind=kind))
        assert len(data) < 80_000
        tracemalloc.start()
        try:
            pred = read_prediction("img0.png", data, (5, 6), 20)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert (pred == label).all()
        assert peak < 2 ** 20, (kind, peak)  # was 64 MiB for text, 1 MiB for a profile
    # Ordinary metadata (what image libraries write) is fine; a chunk running past the end is named.
    ok = png_with_chunks(png(label), [png_chunk(b"tEXt", b"Software\0lipstudy"), png_chunk(b"gAMA", bytes(4))])
    assert (read_prediction("img0.png", ok, (5, 6), 20) == label).all()
    cut = png_with_chunks(png(label), [struct.pack(">I", 10 ** 6) + b"tEXt" + b"x" * 10])
    with pytest.raises(SubmissionError, match=r'\(its chunk "tEXt" of 1000000 bytes runs past the end of the file'):
        read_prediction("img0.png", cut, (5, 6), 20)


def test_unreadable_png_messages_show_no_object_address(bench, tmp_path):
    root, labels = bench
    for data in (png(labels["img0"])[:40], png(labels["img0"])[:33] + b"\0" * 20):
        with pytest.raises(SubmissionError) as err:
            read_prediction("img0.png", data, (5, 6), 20)
        assert "not a readable PNG" in str(err.value) and " at 0x" not in str(err.value), str(err.value)


def test_zip_directory_checks_refuse_before_decompressing(bench, tmp_path):
    root, labels = bench
    ts = HiddenTestSet.from_root(root)
    good = {k: png(v) for k, v in labels.items()}

    def entry(name, data=None, **kw):
        data = good[name.rsplit("/", 1)[-1][:-4]] if data is None else data
        return RawEntry(name, deflate(data), crc=zlib.crc32(data), file_size=len(data), **kw)

    rest = [entry("img1.png"), entry("img2.png")]
    # Duplicates in two folders: refused, naming both.
    msg = _refusal(tmp_path, raw_zip([entry("a/img0.png"), entry("b/img0.png")] + rest), ts)
    assert '"b/img0.png": test image \'img0\' appears twice (also "a/img0.png")' in msg
    # Encrypted, deflate64, bzip2.
    assert '"img0.png": encrypted' in _refusal(tmp_path, raw_zip([entry("img0.png", flags=1)] + rest), ts)
    assert '"img0.png": compressed with deflate64' in _refusal(tmp_path, raw_zip([entry("img0.png", method=9)] + rest), ts)
    assert "compressed with bzip2" in _refusal(tmp_path, raw_zip([entry("img0.png", method=12)] + rest), ts)
    # Corrupt deflate data and a wrong CRC: answered, naming the entry.
    broken = RawEntry("img0.png", b"\xff" * 50, file_size=len(good["img0"]))
    assert '"img0.png": corrupt zip entry' in _refusal(tmp_path, raw_zip([broken] + rest), ts)
    bad_crc = RawEntry("img0.png", deflate(good["img0"]), crc=1, file_size=len(good["img0"]))
    assert '"img0.png": corrupt zip entry (Bad CRC-32' in _refusal(tmp_path, raw_zip([bad_crc] + rest), ts)
    # An entry without a name (zipfile's is_dir() fails on it): refused by name, not a server error.
    assert "an entry without a name" in _refusal(tmp_path, raw_zip([entry("img0.png"), RawEntry("", b"")] + rest), ts)
    # Control characters and long names are shown escaped and shortened.
    msg = _refusal(tmp_path, raw_zip([entry("img0.png"), entry("x\x1b[31m" + "y" * 300 + ".png", good["img0"])] + rest), ts)
    assert "name longer than 255" in msg and "\x1b" not in msg


def test_zip_bombs_are_refused_unread(bench, tmp_path):
    root, _ = bench
    ts = HiddenTestSet.from_root(root)
    names = ["img0.png", "img1.png", "img2.png"]
    # Honest: 1.5 GiB entries (1.5 MB each on the wire) declare their size and are refused from the directory.
    data = bomb_zip(names, 1536 * 2 ** 20)
    assert len(data) < 5 * 2 ** 20
    msg = _refusal(tmp_path, data, ts)
    assert f'"img0.png": declares {1536 * 2 ** 20} bytes uncompressed, more than the' in msg
    assert "entries declare" in msg  # and the total
    # Lying: declares 100 bytes but inflates to 64 MiB: the bounded read stops at the cap.
    lying = bomb_zip(names, 64 * 2 ** 20, declared=100)
    assert "\"img0.png\": corrupt zip entry (Bad CRC-32" in _refusal(tmp_path, lying, ts)
    # Ratio: declares its true (small) size but compresses 1000:1.
    zeros = bytes(60_000)
    ratio = raw_zip([RawEntry(n, deflate(zeros), file_size=len(zeros)) for n in names])
    assert "compression ratio" in _refusal(tmp_path, ratio, ts, Limits(metadata_bytes=100_000))
    # Too many entries: refused from the end record, before zipfile parses the directory.
    many = raw_zip([RawEntry(f"junk/{k}", b"", method=0) for k in range(3 + Limits().extra_entries + 1)])
    assert "the zip has 68 entries; at most 67" in _refusal(tmp_path, many, ts)
    # The end record may lie about the count: the records are counted (up to the limit + 1) all the same.
    lying = bytearray(raw_zip([RawEntry(f"junk/{k}", b"", method=0) for k in range(500)]))
    lying[-14:-10] = struct.pack("<2H", 3, 3)  # the two entry counts of the end record
    assert "the zip has 68 entries; at most 67" in _refusal(tmp_path, bytes(lying), ts)


def test_zip64_end_records_are_read_as_zipfile_reads_them(bench, tmp_path):
    """Issue 24: zipfile honours a zip64 locator before the end record even when the classic record is
    not saturated, so the directory it parses is the zip64 one: that is the one checked and counted."""
    root, labels = bench
    ts = HiddenTestSet.from_root(root)
    # 5000 directory records behind a classic end record declaring an empty directory: refused as a
    # contradiction (the old check counted the 0 bytes the classic record declared, then zipfile parsed 5000).
    msg = _refusal(tmp_path, zip64_directory(5000), ts)
    assert "zip64 end record (5000 entries, a 230000-byte directory) contradicts" in msg
    # A zip64 directory behind a saturated classic record, as a zip64 writer leaves it: sized and counted.
    msg = _refusal(tmp_path, zip64_directory(5000, classic=(0xFFFF, 0xFFFFFFFF)), ts)
    assert "the zip's directory takes 230000 bytes; at most 68608" in msg
    msg = _refusal(tmp_path, zip64_directory(1000, classic=(0xFFFF, 0xFFFFFFFF)), ts)
    assert "the zip has 1000 entries; at most 67" in msg
    # An honest zip64 submission (classic record saturated) scores.
    good = [RawEntry(f"img{k}.png", deflate(png(v)), crc=zlib.crc32(png(v)), file_size=len(png(v)))
            for k, v in enumerate(labels.values())]
    (tmp_path / "z64.zip").write_bytes(raw_zip(good, zip64=True))
    assert score_submission(tmp_path / "z64.zip", ts)["metrics"]["mean_iou"] == 1.0
    # ... and one whose classic record tells the truth too (some writers always add zip64 records).
    (tmp_path / "z64.zip").write_bytes(raw_zip(good, zip64=True, classic=(3, 46 * 3 + 3 * 8)))
    assert score_submission(tmp_path / "z64.zip", ts)["metrics"]["mean_iou"] == 1.0
    # A locator naming a second disk, and a zip64 record that would start before the file: refused.
    spanned = bytearray(raw_zip(good, zip64=True))
    spanned[-22 - 4:-22] = struct.pack("<L", 2)  # the locator's total number of disks
    assert "spans several disks" in _refusal(tmp_path, bytes(spanned), ts)
    short = zip64_directory(0)[-20 - 22:]  # a locator and an end record, no room for the zip64 record
    assert "zip64 end record missing" in _refusal(tmp_path, short, ts)


def test_zipfile_parses_no_directory_but_the_checked_one(bench, tmp_path, monkeypatch):
    """Should zipfile ever find its directory elsewhere than the checks did (another Python version),
    the submission is refused, not parsed unchecked."""
    from lipstudy.server import entries

    root, labels = bench
    ts = HiddenTestSet.from_root(root)
    limits = Limits(extra_entries=2000)
    folders = [RawEntry(f"junk/{k:05d}/", b"", method=0) for k in range(1500)]  # an 86 kB directory
    good = [RawEntry(f"img{k}.png", png(v), method=0, crc=zlib.crc32(png(v))) for k, v in enumerate(labels.values())]
    (tmp_path / "s.zip").write_bytes(raw_zip(folders + good))
    assert score_submission(tmp_path / "s.zip", ts, limits)["metrics"]["mean_iou"] == 1.0
    real = entries._directory_extent
    monkeypatch.setattr(entries, "_directory_extent", lambda f, size: (lambda n, start, cd: (n, start + 46, cd - 46))(
        *real(f, size)))  # a reader that disagrees with zipfile by one record
    assert "zipfile would read 85662 bytes at" in _refusal(tmp_path, raw_zip(folders + good), ts, limits)


def test_problems_are_bounded(tmp_path):
    root = tmp_path / "many"
    labels = write_hidden_set(root, [(2, 2)] * 40)
    ts = HiddenTestSet.from_root(root)
    wrong = {k: np.zeros((3, 3), np.uint8) for k in labels}
    path = tmp_path / "w.zip"
    path.write_bytes(zip_of(wrong))
    with pytest.raises(SubmissionError) as err:
        score_submission(path, ts)
    assert len(err.value.problems) == Limits().max_problems + 1  # then "reading stopped there"


def test_cli_score(bench, tmp_path, capsys):
    root, labels = bench
    (tmp_path / "p.zip").write_bytes(zip_of(labels))
    assert main(["--data", str(root), "--score", str(tmp_path / "p.zip")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["mean_iou"] == 1.0 and out["n_images"] == 3 and out["per_class_iou"]["hat"] == 1.0
    assert main(["--data", str(root), "--score", str(tmp_path / "missing.zip")]) == 1
    assert "no such file" in capsys.readouterr().err


def test_cli_score_follows_no_links(bench, tmp_path, capsys):
    """Issue 24: a folder of symbolic links to the hidden labels scored 100% with exit code 0."""
    root, labels = bench
    hidden = root / "server" / "test_segmentations"
    links = tmp_path / "links"
    links.mkdir()
    for k in labels:
        (links / f"{k}.png").symlink_to(hidden / f"{k}.png")
    assert main(["--data", str(root), "--score", str(links)]) == 1
    err = capsys.readouterr().err
    assert err.count("a symbolic link; --score reads only files inside") == 3 and "mean_iou" not in err
    # A link to the label folder, hard links to the labels, the label folder itself: refused too.
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "preds").symlink_to(hidden, target_is_directory=True)
    assert main(["--data", str(root), "--score", str(tmp_path / "nested")]) == 1
    assert '"preds": a symbolic link to a folder' in capsys.readouterr().err
    hard = tmp_path / "hard"
    hard.mkdir()
    for k in labels:
        os.link(hidden / f"{k}.png", hard / f"{k}.png")
    assert main(["--data", str(root), "--score", str(hard)]) == 1
    assert capsys.readouterr().err.count("is one of the hidden test labels") == 3
    assert main(["--data", str(root), "--score", str(hidden)]) == 1
    assert capsys.readouterr().err.count("is one of the hidden test labels") == 3
    # A FIFO named like a prediction is refused by name (opening it would wait for a writer forever).
    fifo = tmp_path / "fifo"
    fifo.mkdir()
    for k, v in labels.items():
        (fifo / f"{k}.png").write_bytes(png(v))
    (fifo / "img0.png").unlink()
    os.mkfifo(fifo / "img0.png")
    assert main(["--data", str(root), "--score", str(fifo)]) == 1
    assert '"img0.png": not a regular file' in capsys.readouterr().err


def test_a_file_replaced_by_a_link_after_listing_is_not_read(bench, tmp_path):
    from lipstudy.server.entries import folder_entries, read_entry

    root, labels = bench
    ts = HiddenTestSet.from_root(root)
    folder = tmp_path / "preds"
    folder.mkdir()
    for k, v in labels.items():
        (folder / f"{k}.png").write_bytes(png(v))
    entries = {e.image_id: e for e in folder_entries(folder, ts, Limits())}
    (folder / "img0.png").unlink()
    (folder / "img0.png").symlink_to(root / "server" / "test_segmentations" / "img0.png")
    with pytest.raises(SubmissionError, match='"img0.png": unreadable .*links are not followed'):
        read_entry(entries["img0"], None, 10 ** 6)
    (folder / "new.png").write_bytes(png(labels["img1"]))
    os.replace(folder / "new.png", folder / "img1.png")  # another file under the same name
    with pytest.raises(SubmissionError, match='"img1.png": replaced by another file'):
        read_entry(entries["img1"], None, 10 ** 6)


def test_zipfile_module_writes_what_we_accept(bench, tmp_path):
    """Stored entries and Windows-style names are fine."""
    root, labels = bench
    ts = HiddenTestSet.from_root(root)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("preds/", b"")
        for k, v in labels.items():
            z.writestr(f"preds\\{k}.png", png(v))
        z.writestr("__MACOSX/preds/._img0.png", b"resource fork")
    (tmp_path / "s.zip").write_bytes(buf.getvalue())
    assert score_submission(tmp_path / "s.zip", ts)["metrics"]["mean_iou"] == 1.0


def test_folder_reads_are_bounded_too(bench, tmp_path):
    root, labels = bench
    ts = HiddenTestSet.from_root(root)
    folder = tmp_path / "folder"
    folder.mkdir()
    for k, v in labels.items():
        (folder / f"{k}.png").write_bytes(png(v))
    cap = Limits().entry_cap(ts.sizes["img0"])
    (folder / "img0.png").write_bytes(png(labels["img0"]) + bytes(cap))
    with pytest.raises(SubmissionError, match=rf'"img0.png": more than {cap} bytes'):
        score_submission(folder, ts)
    (folder / "sub").mkdir()
    (folder / "sub" / "img1.png").write_bytes(png(labels["img1"]))
    with pytest.raises(SubmissionError, match="appears twice"):
        score_submission(folder, ts)
