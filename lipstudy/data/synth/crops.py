"""What the generator knows about an image: the crop type, drawn at LIP's rates (paper Section
2.2), and its window; the check that a rendered label map shows what the crop type claims; and
the attributes written to ``attributes.csv`` (Section 2.2-2.3: full-body, upper-body, lower-body,
head-missed, back-view, occlusion; Section 5.4: person size)."""
from __future__ import annotations

import numpy as np

from lipstudy.data.synth.label_ids import (
    HEAD_IDS,
    LEG_AND_FOOT_IDS,
    LIP_ID,
    LOWER_BODY_IDS,
    SHOE_IDS,
    UPPER_GARMENT_IDS,
)
from lipstudy.labels import LIP_NUM_CLASSES

# Crop types and their rates. LIP (Section 2.2): of 50,462 images 37.8% full-body, 27.1%
# upper-body, 0.8% lower-body, 6.7% head-missed; the rest are other partial views (here: head to
# knees or shins). Lower-body is raised to 2.5% so a split of a few hundred images has some.
CROPS = ("full", "upper", "three_quarter", "head_missed", "lower")
CROP_P = (0.38, 0.27, 0.255, 0.07, 0.025)
SIDE_CUT_P = 0.15
SMALL_AREA, LARGE_AREA = 153 ** 2, 321 ** 2   # Section 5.4 object-size bins (COCO convention)


def bounding_box(shapes, lips=None, boxes=None):
    """Bounding box (x0, y0, x1, y1) of the shapes (optionally only those with LIP ids ``lips``)."""
    b = np.array([e.bbox() for e in shapes]) if boxes is None else boxes
    if lips is not None:
        b = b[np.isin([e.lip for e in shapes], lips)]
    if len(b) == 0:
        return None
    return b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()


def crop_window(rng, shapes, info, crop: str):
    """The crop window (x0, y0, x1, y1) in unit coordinates for a crop type, from the shapes'
    bounding boxes, so e.g. a head-missed crop starts below every head shape; None when the
    window would be shorter than 0.15 person heights (the scene is then resampled)."""
    boxes = np.array([e.bbox() for e in shapes])
    px0, py0, px1, py1 = bounding_box(shapes, boxes=boxes)
    head = bounding_box(shapes, HEAD_IDS, boxes)
    lower_parts = bounding_box(shapes, LEG_AND_FOOT_IDS, boxes)
    shoes = bounding_box(shapes, SHOE_IDS, boxes)

    def margin():
        return rng.uniform(0.02, 0.1)

    top, bottom = py0 - margin(), py1 + margin()
    pel_y = info["pelvis"][1]
    if crop == "upper":
        waist = info["pelvis"][1] + 0.45 * (info["neck"][1] - info["pelvis"][1])
        bottom = min(rng.uniform(waist, pel_y + 0.04), lower_parts[1] - 0.01)
    elif crop == "three_quarter":
        bottom = min(rng.uniform(info["knees"][1], shoes[1]), shoes[1] - 0.01)
    elif crop == "head_missed":
        top = head[3] + 0.005
    elif crop == "lower":
        top = max(rng.uniform(pel_y - 0.06, pel_y + 0.1), head[3] + 0.005)
    if bottom - top < 0.15:
        return None
    inside = boxes[(boxes[:, 3] > top) & (boxes[:, 1] < bottom)]
    x0, x1 = inside[:, 0].min(), inside[:, 2].max()
    if rng.random() < SIDE_CUT_P:  # a tight crop that cuts a limb at the image side
        cut = rng.uniform(0.05, 0.25) * (x1 - x0)
        x0, x1 = (x0 + cut, x1 + margin()) if rng.random() < 0.5 else (x0 - margin(), x1 - cut)
    else:
        x0, x1 = x0 - margin(), x1 + margin()
    return x0, top, x1, bottom


# Which image borders are a crop type's own cut (not an occlusion): the waist of an upper-body
# crop, the neck of a head-missed crop, ...
_NATURAL_CUTS = {"full": (), "upper": ("bottom",), "three_quarter": ("bottom",),
                 "head_missed": ("top",), "lower": ("top",)}


def consistent(lip: np.ndarray, crop: str, back: bool) -> bool:
    """The label map shows what the attributes claim (else the scene is resampled)."""
    present = np.zeros(256, bool)
    present[np.unique(lip)] = True
    head, shoes = present[list(HEAD_IDS)].any(), present[list(SHOE_IDS)].any()
    if back and present[LIP_ID["face"]]:
        return False
    if crop == "full":
        return head and shoes
    if crop == "upper":
        return head and not present[list(LEG_AND_FOOT_IDS)].any()
    if crop == "three_quarter":
        return head and not shoes
    if crop == "head_missed":
        return not head and present[list(UPPER_GARMENT_IDS)].any()
    return not head and present[list(LOWER_BODY_IDS)].any()


def occlusion(person: np.ndarray, final: np.ndarray, shapes, win, crop: str) -> bool:
    """Section 2.3: a part the person has is occluded (an occluder hides >= 20% of its pixels)
    or cut off by an image border other than the crop type's own cut (judged on the geometry at
    LIP scale, so the attribute does not depend on ``max_side``)."""
    before = np.bincount(person.ravel(), minlength=256)[1:LIP_NUM_CLASSES]
    after = np.bincount(final.ravel(), minlength=256)[1:LIP_NUM_CLASSES]
    hidden = before - after
    if ((before > 0) & (hidden >= np.maximum(0.2 * before, 2))).any():
        return True
    boxes = np.array([e.bbox() for e in shapes if 0 < e.lip < LIP_NUM_CLASSES])
    tol = 0.005
    natural = _NATURAL_CUTS[crop]
    inside_y = (boxes[:, 3] > win[1]) & (boxes[:, 1] < win[3])
    cut = inside_y & ((boxes[:, 0] < win[0] - tol) | (boxes[:, 2] > win[2] + tol))
    inside_x = (boxes[:, 2] > win[0]) & (boxes[:, 0] < win[2])
    if "top" not in natural:
        cut |= inside_x & (boxes[:, 1] < win[1] - tol) & (boxes[:, 3] > win[1])
    if "bottom" not in natural:
        cut |= inside_x & (boxes[:, 3] > win[3] + tol) & (boxes[:, 1] < win[3])
    return bool(cut.any())


def image_attributes(crop: str, back: bool, person: np.ndarray, final: np.ndarray, shapes, win,
                     scale: float) -> dict:
    """The attributes of one image: its crop type, back view, occlusion (see :func:`occlusion`;
    ``person`` is the LIP map before occluders, ``final`` after), the person's area in rendered
    pixels, its size bin (judged at LIP scale), and the image size."""
    area = int(((final > 0) & (final < LIP_NUM_CLASSES)).sum())
    lip_area = area / scale ** 2
    h, w = final.shape
    return {
        "full_body": int(crop == "full"), "upper_body": int(crop == "upper"),
        "lower_body": int(crop == "lower"), "head_missed": int(crop == "head_missed"),
        "back_view": int(back), "occlusion": int(occlusion(person, final, shapes, win, crop)),
        "person_area": area,
        "size_bin": "small" if lip_area < SMALL_AREA else "medium" if lip_area < LARGE_AREA else "large",
        "width": w, "height": h,
    }
