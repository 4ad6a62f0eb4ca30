"""Decoding one dataset file, validated in full: an image, a label map of class ids, or an id list.

Labels are 8-bit class ids (``HxW`` uint8, 255 = ignore); colour-coded label maps are refused,
because reading their colours or palette indices as ids would silently give wrong classes. Every
problem raises :class:`DataError` naming the file and what is wrong with it, so a broken file
fails where it is read, not later inside a batch or a metric.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from lipstudy.labels import IGNORE_INDEX, LIP_CLASSES, LIP_PALETTE

_ID_SUFFIXES = (".jpg", ".jpeg", ".png")


class DataError(ValueError):
    """A dataset file or folder is missing or unreadable; the message names it and the problem."""


def _open_fully(path: Path) -> Image.Image:
    """Open and decode the whole file, so truncated or corrupt data fails here, not later.

    LOAD_TRUNCATED_IMAGES stays off: Pillow then raises on a cut-off file instead of padding it
    with grey. PNGs are also verified chunk by chunk (CRCs, the end marker), which catches a file
    cut after its pixel data.
    """
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with Image.open(path) as probe:
            if probe.format == "PNG":
                probe.verify()
        img = Image.open(path)
        img.load()
    except UnidentifiedImageError as e:
        raise DataError(f"{path}: not a readable image (corrupt, or not an image format)") from e
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        what = "is truncated" if "truncated" in str(e).lower() else "is corrupt"
        raise DataError(f"{path}: cannot decode image: the file {what} ({e})") from e
    return img


def read_image(path) -> np.ndarray:
    """Read an image as ``HxWx3`` uint8 RGB.

    Grayscale, CMYK, palette and RGBA JPEG/PNGs (LIP has a few grayscale and CMYK photos) are
    converted to RGB. EXIF orientation is deliberately ignored: the annotations are aligned with
    the stored pixels, not with the rotated view a photo viewer shows.
    """
    path = Path(path)
    img = _open_fully(path)
    if img.mode != "RGB":
        try:
            img = img.convert("RGB")
        except (OSError, ValueError) as e:
            raise DataError(f"{path}: cannot convert image mode {img.mode!r} to RGB ({e})") from e
    return np.array(img, dtype=np.uint8)


def voc_colormap(n: int = 256) -> np.ndarray:
    """The PASCAL VOC label colormap (bit-interleaved), the palette of VOC-style indexed PNGs."""
    ids = np.arange(n)
    cmap = np.zeros((n, 3), dtype=np.int64)
    for shift in range(8):
        for channel in range(3):
            bit = (ids >> (3 * shift + channel)) & 1
            cmap[:, channel] |= bit << (7 - shift)
    return cmap.astype(np.uint8)


_VOC_COLORMAP = voc_colormap()


def _colour_label_error(path: Path, what: str) -> DataError:
    return DataError(
        f"{path}: {what}: this is a colour-coded label map, but labels must be class ids "
        f"(8-bit grayscale, one id per pixel). Convert it by mapping each palette colour to its "
        f"index in lipstudy.labels.LIP_PALETTE, e.g. rgb = np.asarray(Image.open(path)"
        f".convert('RGB')); ids = (rgb[..., None, :] == LIP_PALETTE).all(-1).argmax(-1)"
        f".astype(np.uint8), and save ids as a mode 'L' PNG"
    )


def is_colour_coded_palette(img: Image.Image, index: np.ndarray | None = None) -> bool:
    """Whether a mode-P label image encodes classes by colour rather than by index.

    VOC-style indexed PNGs store the class ids as the pixel indices, whatever the palette (VOC's
    colormap, LIP's colours in id order as SCHP writes them, grayscale, all black): accept those.
    A colour label map saved through a palette (quantised) has LIP colours at indices that are
    not their classes: reading its indices would give wrong ids. ``index`` is the image's pixel
    indices when the caller already holds them (it spares a second copy of the pixels).
    """
    if index is None:
        index = np.asarray(img)
    pal = np.array(img.getpalette("RGB") or [], dtype=np.uint8).reshape(-1, 3)
    used = np.flatnonzero(np.bincount(index.ravel(), minlength=256))
    used = used[used < len(pal)]
    colours = pal[used]
    if len(used) == 0:
        return False
    lip_match = (colours[:, None, :] == LIP_PALETTE[None]).all(-1)  # [used, 20]
    if not lip_match.any(1).all():
        return False  # some colour is not a LIP colour: an ordinary palette
    if (colours == _VOC_COLORMAP[used]).all():
        return False  # VOC colormap (it shares a few colours with LIP's)
    colour_class = lip_match.argmax(1)
    # Black is LIP's background and also the fill of unused or blank palettes: it proves nothing.
    return bool(((colour_class != used) & colours.any(1)).any())


def _label_values(path: Path, img: Image.Image) -> np.ndarray:
    """Class ids of a decoded label PNG, whatever the mode it was saved in."""
    mode = img.mode
    if mode in ("L", "I", "I;16", "I;16B", "I;16L"):
        return np.asarray(img)
    if mode == "LA":
        return np.asarray(img)[..., 0]
    if mode == "P":
        index = np.asarray(img)
        if is_colour_coded_palette(img, index):
            raise _colour_label_error(
                path, "mode 'P' PNG whose palette holds the LIP colours at indices that are not "
                      "their class ids")
        return index
    if mode in ("RGB", "RGBA"):
        rgb = np.asarray(img)[..., :3]
        # A grayscale id map saved as RGB (R == G == B) still holds ids; any colour means a
        # colour-coded map.
        if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
            return rgb[..., 0]
        raise _colour_label_error(path, f"mode {mode!r} PNG with colours")
    raise DataError(f"{path}: unsupported label image mode {mode!r} (expected 8-bit grayscale 'L' "
                    f"or indexed 'P' class ids)")


def read_label(path, num_classes: int = len(LIP_CLASSES)) -> np.ndarray:
    """Read a label map of class ids as ``HxW`` uint8 and validate it.

    Accepts 8-bit grayscale ('L') and indexed ('P', indices = class ids) PNGs, and 16-bit or
    RGB grayscale copies; rejects colour-coded label maps (RGB colours, or a palette PNG whose
    indices are not the classes of their LIP colours) and values outside ``0..num_classes-1``
    other than 255 (ignore).
    """
    path = Path(path)
    values = _label_values(path, _open_fully(path))
    bad = ((values < 0) | (values >= num_classes)) & (values != IGNORE_INDEX)
    if bad.any():
        bad_values = np.unique(values[bad]).tolist()
        shown = ", ".join(str(v) for v in bad_values[:10]) + (" ..." if len(bad_values) > 10 else "")
        raise DataError(f"{path}: label values {shown} are outside 0..{num_classes - 1} "
                        f"({int(bad.sum())} pixels); only class ids and {IGNORE_INDEX} (ignore) are allowed")
    return values.astype(np.uint8)


def read_ids(path) -> list[str]:
    """Read an id list: one id per line, whitespace stripped, blank lines ignored.

    Some copies list file names (``<id>.jpg``) or VOC-style pairs (``/JPEGImages/<id>.jpg
    /SegmentationClassAug/<id>.png``): the id is the first entry's file name without extension.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: id list not found")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read the id list as text ({e})") from e
    ids = []
    for line in lines:
        if not line.strip():
            continue
        name = line.split()[0].replace("\\", "/").rsplit("/", 1)[-1]
        stem, ext = os.path.splitext(name)
        ids.append(stem if ext.lower() in _ID_SUFFIXES else name)
    if not ids:
        raise DataError(f"{path}: the id list is empty (no ids in it)")
    return ids
