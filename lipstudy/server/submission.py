"""Scoring a submission: one 8-bit PNG of class ids per test image, named ``<id>.png``, in a zip (or a
folder), checked entry by entry and scored against the hidden labels with the study's own metrics
(pixel accuracy, mean accuracy, mean IoU; Section 3 of the paper).

Each prediction is checked before it is decoded: PNG signature (GIF, TIFF, BMP or JPEG bytes named
``.png`` are refused by name), the width and height in its header against the hidden label's; then its
chunks are walked and only those that make the image (IHDR, PLTE, IDAT, IEND) are handed to Pillow,
which opens it as PNG only and checks the size again before ``load()``. Metadata chunks are never
inflated (Pillow inflates zTXt, iTXt and iCCP chunks up to 1 MiB each and 64 MiB of text an image:
issue 24 made a 74 kB PNG cost 64 MB), so decoding never costs more than the label's own size.
Mode L (grayscale) or P (indices = class ids, with the same colour-coded-palette check as
:func:`lipstudy.data.decode.read_label`), values ``0..C-1``.
"""
from __future__ import annotations

import io
import re
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from lipstudy import metrics
from lipstudy.data.decode import is_colour_coded_palette
from lipstudy.labels import LIP_CLASSES

from .entries import Limits, SubmissionError, folder_entries, open_zip, read_entry, shown, zip_entries
from .hidden import HiddenTestSet

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_OTHER_FORMATS = [(b"GIF8", "a GIF"), (b"II*\x00", "a TIFF"), (b"MM\x00*", "a TIFF"), (b"BM", "a BMP"),
                  (b"\xff\xd8\xff", "a JPEG"), (b"RIFF", "a RIFF (WebP?)"), (b"PK", "a zip")]
_IMAGE_CHUNKS = {b"IHDR", b"PLTE", b"IDAT", b"IEND"}  # class ids need nothing else (no colour space, no text)
_OBJECT_REPR = re.compile(r" ?<[^<>]* at 0x[0-9a-fA-F]+>")  # Pillow names the file object it could not read
_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, struct.error,
                  zlib.error, Image.DecompressionBombError)


def png_size(name: str, data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, without decoding; refuses anything else by name."""
    if not data.startswith(PNG_SIGNATURE):
        kind = next((k for magic, k in _OTHER_FORMATS if data.startswith(magic)), "not a")
        raise SubmissionError(f"{shown(name)}: {kind} file, not a PNG; submit 8-bit PNGs of class ids")
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise SubmissionError(f"{shown(name)}: PNG without its IHDR header (truncated or corrupt)")
    return struct.unpack(">II", data[16:24])


def image_chunks(name: str, data: bytes) -> bytes:
    """The PNG ``data`` with only the chunks that make its image, in their order (CRCs kept, for Pillow
    to check); everything after IEND is dropped. Walking the chunks costs one step per 12 bytes at most."""
    out, pos = [data[:8]], 8
    while pos < len(data):
        if pos + 12 > len(data):
            raise SubmissionError(f"{shown(name)}: not a readable PNG (truncated after {pos} bytes)")
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        end = pos + 12 + length
        if end > len(data):
            raise SubmissionError(f"{shown(name)}: not a readable PNG (its chunk {shown(kind.decode('latin-1'))} "
                                  f"of {length} bytes runs past the end of the file)")
        if kind in _IMAGE_CHUNKS:
            out.append(data[pos:end])
        pos = end
        if kind == b"IEND":
            break
    return b"".join(out)


def _decode_error(e: Exception) -> str:
    return _OBJECT_REPR.sub("", str(e)) or type(e).__name__


def read_prediction(name: str, data: bytes, size: tuple[int, int], num_classes: int) -> np.ndarray:
    """A checked prediction map (HxW uint8) of the test image of ``size`` (width, height)."""
    w, h = size
    header_size = png_size(name, data)
    if header_size != size:
        raise SubmissionError(f"{shown(name)}: size {header_size[0]}x{header_size[1]} but the test image "
                              f"is {w}x{h}; predict at the original resolution")
    data = image_chunks(name, data)
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as im:
            if im.size != size:  # Pillow's reading of the header, checked again before decoding
                raise SubmissionError(f"{shown(name)}: size {im.size[0]}x{im.size[1]} but the test image "
                                      f"is {w}x{h}")
            if im.mode not in ("L", "P"):
                raise SubmissionError(f"{shown(name)}: mode {im.mode}; submit 8-bit grayscale class ids "
                                      f"(mode L, or indexed P), not colour or 16-bit images")
            im.load()
            pred = np.asarray(im)
            if im.mode == "P" and is_colour_coded_palette(im, pred):
                raise SubmissionError(f"{shown(name)}: colour-coded (its palette holds LIP colours at indices "
                                      f"that are not their class ids); submit class ids, as read_label wants")
    except SubmissionError:
        raise
    except _DECODE_ERRORS as e:
        raise SubmissionError(f"{shown(name)}: not a readable PNG ({_decode_error(e)})") from None
    if pred.max(initial=0) >= num_classes:
        bad = sorted(int(v) for v in np.unique(pred[pred >= num_classes]))
        raise SubmissionError(f"{shown(name)}: values {bad[:10]} are not class ids 0..{num_classes - 1}")
    return pred


def score_submission(submission, test_set: HiddenTestSet, limits: Limits | None = None) -> dict:
    """Check a submission (zip file or folder) against the hidden test set and score it.

    Returns ``{"n_images", "metrics": {overall_acc, mean_acc, mean_iou, per_class_iou}, "cm"}`` where
    ``cm`` is the summed confusion matrix. Raises :class:`SubmissionError` listing the problems
    (every problem the directory shows, then up to ``limits.max_problems`` found while reading), and
    :class:`~lipstudy.data.decode.DataError` if a hidden label is broken (the server's fault, not the
    submitter's).
    """
    limits = limits or Limits()
    path = Path(submission)
    if path.is_dir():
        entries, z = folder_entries(path, test_set, limits), None
    elif path.is_file():
        z = open_zip(path, test_set, limits)
        entries = None
    else:
        raise SubmissionError(f"{path}: no such file or folder")
    try:
        if z is not None:
            entries = zip_entries(z, test_set, limits)
        cm, problems = _score_entries(entries, z, test_set, limits)
    finally:
        if z is not None:
            z.close()
    if problems:
        raise SubmissionError(problems)
    s = metrics.scores(cm)
    result = {k: s[k] for k in metrics.STATS}
    result["per_class_iou"] = {c: (None if np.isnan(v) else float(v)) for c, v in zip(LIP_CLASSES, s["per_class_iou"])}
    return {"n_images": len(entries), "metrics": result, "cm": cm}


def _score_entries(entries, z, test_set: HiddenTestSet, limits: Limits):
    """Sum of the entries' confusion matrices, and the problems found (reading stops at the limit)."""
    cm = np.zeros((test_set.num_classes, test_set.num_classes), np.int64)
    problems: list[str] = []
    for entry in entries:
        size = test_set.sizes[entry.image_id]
        try:
            data = read_entry(entry, z, limits.entry_cap(size))
            pred = read_prediction(entry.name, data, size, test_set.num_classes)
        except SubmissionError as e:
            problems += e.problems
            if len(problems) >= limits.max_problems:
                problems.append("... reading stopped there")
                break
            continue
        if not problems:  # once refused, only look for more problems
            cm += metrics.confusion_matrix(pred, test_set.label(entry.image_id), test_set.num_classes)
    return cm, problems
