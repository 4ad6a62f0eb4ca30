"""One image of the synthetic benchmark: the person framed by a crop window, the scene behind
them (backdrop, clutter, other people), occluders in front, and the camera's finish (lighting,
blur, noise). The scene is sampled at LIP scale and only rasterised at ``max_side``."""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from lipstudy.data.synth import shapes as shp
from lipstudy.data.synth.crops import CROP_P, CROPS, bounding_box, consistent, crop_window, image_attributes
from lipstudy.data.synth.materials import any_material, backdrop_material, garment_material
from lipstudy.data.synth.person import PartShape, person_shapes
from lipstudy.data.synth.shapes import Material

LIP_FULL_SIDE = 640          # longest image side at LIP scale; max_side scales relative to it
ATR_FRAME = (400, 600)       # ATR's image size (width, height) at full scale
ATR_POSES = ("standing", "walking", "arms_crossed", "hands_on_hips")
OCCLUDER_P = 0.45            # plus frame cuts: ~40% of images end up with occlusion (LIP: 41.7%)
BACKGROUND_PERSON_P = 0.35


def render_scale(style: str, max_side: int | None) -> float:
    """Rendered pixels per full-scale pixel: 1 at full scale (``max_side=None``), else what
    shrinks the style's longest full-scale side to ``max_side``."""
    full = ATR_FRAME[1] if style == "atr" else LIP_FULL_SIDE
    return 1.0 if max_side is None else min(1.0, max_side / full)


class Canvas:
    """Shapes painted back to front into an element index map, with each element's material and
    labels (LIP and PPP) kept alongside: :meth:`labels` gives the label maps, and
    :func:`~lipstudy.data.synth.shapes.compose` the image, from the same index map."""

    def __init__(self, h: int, w: int, backdrop: Material):
        self.painter = shp.Painter(h, w)
        self.materials, self.lip_ids, self.ppp_ids = [backdrop], [0], [0]
        self.shape = (h, w)

    def add(self, material: Material, lip: int = 0, ppp: int = 0):
        """Record the material and labels of the element just painted."""
        self.materials.append(material)
        self.lip_ids.append(lip)
        self.ppp_ids.append(ppp)

    def paint(self, shape: PartShape, origin, k: float, labelled: bool = True):
        """Rasterise ``shape`` mapping unit coordinates u -> (u - origin) * k pixels; unlabelled
        (background) for people other than the subject."""
        o = np.asarray(origin)
        if shape.kind == "capsule":
            a, b, ra, rb = shape.geom
            self.painter.capsule((np.asarray(a) - o) * k, (np.asarray(b) - o) * k, ra * k, rb * k)
        elif shape.kind == "ellipse":
            c, rx, ry, rot = shape.geom
            self.painter.ellipse((np.asarray(c) - o) * k, rx * k, ry * k, rot)
        else:
            self.painter.polygon((np.asarray(shape.geom) - o) * k)
        self.add(shape.material, shape.lip if labelled else 0, shape.ppp if labelled else 0)

    def labels(self, index: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(LIP, PPP) label maps of the current (or a saved) index map."""
        index = self.painter.indices() if index is None else index
        return (np.array(self.lip_ids, np.uint8)[index], np.array(self.ppp_ids, np.uint8)[index])


def _frame_atr(rng, style: str):
    """ATR's framing: an upright, front-view, full-body person filling most of the fixed 400x600
    frame -> ``(crop, shapes, info, window, full-scale pixels per unit)``."""
    shapes, info = person_shapes(rng, style, front_only=True, pose=str(rng.choice(ATR_POSES)))
    bx0, by0, bx1, by1 = bounding_box(shapes)
    S = min(rng.uniform(0.78, 0.93) * ATR_FRAME[1] / (by1 - by0), 0.95 * ATR_FRAME[0] / (bx1 - bx0))
    wu, hu = ATR_FRAME[0] / S, ATR_FRAME[1] / S
    cx, cy = (bx0 + bx1) / 2 + rng.uniform(-0.02, 0.02), (by0 + by1) / 2 + rng.uniform(-0.02, 0.03)
    return "full", shapes, info, (cx - wu / 2, cy - hu / 2, cx + wu / 2, cy + hu / 2), S


def _frame_lip(rng, style: str, scale: float):
    """LIP's framing: a crop type at LIP's rates, its window, and a longest image side of
    110-640 LIP-scale pixels -> ``(crop, shapes, info, window, full-scale pixels per unit)``, or
    None when the sampled person cannot be cropped that way."""
    crop = str(rng.choice(CROPS, p=CROP_P))
    shapes, info = person_shapes(rng, style)
    win = crop_window(rng, shapes, info, crop)
    if win is None:
        return None
    long_side = 110 + (LIP_FULL_SIDE - 110) * float(rng.random()) ** 0.6
    S = long_side / max(win[2] - win[0], win[3] - win[1])
    # Keep a crop's own cut >= 1.5 rendered pixels clear of the parts it must exclude
    # (PIL fills boundary pixels).
    pad = 1.5 / (S * scale)
    x0, y0, x1, y1 = win
    if crop in ("head_missed", "lower"):
        y0 += pad
    if crop in ("upper", "three_quarter"):
        y1 -= pad
    return crop, shapes, info, (x0, y0, x1, y1), S


def _behind(rng, style: str, h: int, w: int, k: float) -> Canvas:
    """The scene behind the person: ATR's sky over a plain ground, or LIP's cluttered backdrop
    with, sometimes, another person."""
    cv = Canvas(h, w, backdrop_material(rng, outdoor=style == "atr"))
    if style == "atr":  # ground plane below the horizon
        hz = h * rng.uniform(0.55, 0.8)
        cv.painter.polygon([(-1, hz), (w, hz), (w, h), (-1, h)])
        cv.add(Material(tuple(cv.materials[0].color2), shading=0.0))
    else:
        _clutter(rng, cv)
        if rng.random() < BACKGROUND_PERSON_P:
            _other_person(rng, cv, k, behind=True, style=style)
    return cv


def _clutter(rng, cv: Canvas):
    """Clutter over the backdrop gradient, drawn from the same materials as people (rectangles,
    blobs, limb-like strokes, polygons)."""
    h, w = cv.shape
    p = cv.painter
    for _ in range(rng.integers(3, 12)):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        sz = rng.uniform(0.05, 0.5) * max(h, w)
        kind = rng.integers(4)
        if kind == 0:
            p.polygon([(cx, cy), (cx + sz * rng.uniform(0.3, 1.5), cy),
                       (cx + sz * rng.uniform(0.3, 1.5), cy + sz), (cx, cy + sz)])
        elif kind == 1:
            p.ellipse((cx, cy), sz * rng.uniform(0.2, 0.6), sz * rng.uniform(0.2, 0.6), rng.uniform(0, np.pi))
        elif kind == 2:
            ang = rng.uniform(0, 2 * np.pi)
            p.capsule((cx, cy), (cx + sz * np.cos(ang), cy + sz * np.sin(ang)),
                      sz * rng.uniform(0.05, 0.15), sz * rng.uniform(0.04, 0.12))
        else:
            p.polygon(np.array([cx, cy]) + rng.uniform(-sz, sz, (rng.integers(3, 6), 2)))
        cv.add(any_material(rng))


def _other_person(rng, cv: Canvas, k: float, behind: bool, style: str):
    """Another person labelled background (as in LIP), standing behind or cut by the frame in front."""
    shapes, _ = person_shapes(rng, style)
    h, w = cv.shape
    kk = k * rng.uniform(0.5, 1.3) if behind else k * rng.uniform(1.0, 1.8)
    if behind:
        px, py = rng.uniform(-0.2, 1.2) * w, rng.uniform(0.3, 1.4) * h
    else:  # enter from the left or right edge
        px = (rng.uniform(-0.25, 0.05) if rng.random() < 0.5 else rng.uniform(0.95, 1.25)) * w
        py = rng.uniform(0.5, 1.3) * h
    origin = (-px / kk, -py / kk)
    for shape in shapes:
        cv.paint(shape, origin, kk, labelled=False)


def _occluder(rng, cv: Canvas, k: float, person_box, style: str):
    """An object in front of part of the person (labelled background), or a fragment of another
    person entering from the side."""
    if rng.random() < 0.3:
        _other_person(rng, cv, k, behind=False, style=style)
        return
    x0, y0, x1, y1 = person_box
    cx, cy = rng.uniform(0.8 * x0 + 0.2 * x1, 0.2 * x0 + 0.8 * x1), rng.uniform(y0 + 0.25 * (y1 - y0), y1)
    sz = rng.uniform(0.12, 0.35) * k
    p = cv.painter
    kind = rng.integers(3)
    if kind == 0:  # box / table / sign
        w2, h2 = sz * rng.uniform(0.4, 1.2), sz * rng.uniform(0.3, 1.0)
        p.polygon([(cx - w2, cy - h2), (cx + w2, cy - h2), (cx + w2, cy + h2), (cx - w2, cy + h2)])
    elif kind == 1:  # ball / bag / plant
        p.ellipse((cx, cy), sz * rng.uniform(0.3, 0.7), sz * rng.uniform(0.3, 0.7), rng.uniform(0, np.pi))
    else:  # pole / racket handle
        ang, L = rng.uniform(np.pi / 3, 2 * np.pi / 3), rng.uniform(0.5, 1.5) * k
        p.capsule((cx - L * np.cos(ang), cy - L * np.sin(ang)), (cx + L * np.cos(ang), cy + L * np.sin(ang)),
                  0.02 * k + 1, 0.02 * k + 1)
    cv.add(any_material(rng) if rng.random() < 0.7 else garment_material(rng))


def _finish(rng, img: np.ndarray, scale: float) -> np.ndarray:
    """Lighting gradient, blur, sensor noise -> uint8."""
    h, w, _ = img.shape
    gy, gx = np.ogrid[0:h, 0:w]
    light = rng.uniform(0.75, 1.15) * (1 + rng.uniform(-0.3, 0.3) * (gx / w - 0.5)
                                       + rng.uniform(-0.3, 0.3) * (gy / h - 0.5))
    img = img * light[..., None].astype(np.float32)
    sigma = rng.uniform(0.0, 1.4) * scale
    if sigma > 0.3:
        img = gaussian_filter(img, (sigma, sigma, 0))
    img += rng.normal(0, rng.uniform(1, 7), img.shape).astype(np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def render_scene(rng, style: str = "lip", max_side: int | None = None):
    """Render one image: returns ``(image HxWx3 uint8, LIP label, PPP label, attributes dict)``.
    Attributes are the generator's ground truth (crop type, yaw) checked against the label map;
    a scene that fails the check is resampled."""
    scale = render_scale(style, max_side)
    for _ in range(50):
        framed = _frame_atr(rng, style) if style == "atr" else _frame_lip(rng, style, scale)
        if framed is None:
            continue
        crop, shapes, info, win, S = framed
        k = S * scale  # rendered pixels per unit (person height)
        w = max(8, int(round((win[2] - win[0]) * k)))
        h = max(8, int(round((win[3] - win[1]) * k)))
        cv = _behind(rng, style, h, w, k)
        x0, y0 = win[0], win[1]
        for shape in shapes:
            cv.paint(shape, (x0, y0), k)
        person_index = cv.painter.indices()
        if style != "atr" and rng.random() < OCCLUDER_P:
            box = [(v - o) * k for v, o in zip(bounding_box(shapes), (x0, y0, x0, y0))]
            _occluder(rng, cv, k, box, style)
        index = cv.painter.indices()
        lip, ppp = cv.labels(index)
        if not consistent(lip, crop, info["back"]) or not (lip > 0).any():
            continue
        attrs = image_attributes(crop, info["back"], cv.labels(person_index)[0], lip, shapes, win, scale)
        img = shp.compose(index, cv.materials, scale)
        return _finish(rng, img, scale), lip, ppp, attrs
    raise RuntimeError("could not sample a consistent scene in 50 tries")
