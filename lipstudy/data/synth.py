"""The synthetic benchmark: people rendered with LIP's 19 part labels, written in LIP's layout.

LIP (paper Section 2) cannot be downloaded here, so the study's default dataset is rendered. It is
built to be hard in the ways Section 2 says LIP is hard, so the paper's comparisons mean something:

- **People**: an articulated figure from a pose prior (standing, walking, sitting, arms raised,
  arms crossed, hands on hips, bending) under any yaw (front, turning, side, back). Layered
  clothing: hat, hair, sunglasses, face, upper-clothes / coat / dress / jumpsuits, scarf, gloves,
  pants / skirt, socks, shoes. As in LIP, arm and leg labels (14-17) cover visible skin only and
  left / right are the person's own: from the front the left arm is on the image's right, from the
  back the face is hidden and the sides are mirrored. Parts are painted back to front in depth
  order, into the label map and the image together, so self-occlusion is exact.
- **Appearance**: per-garment colours and textures, skin and hair tones, shading, lighting, blur,
  noise and JPEG compression. Background clutter uses the same colour and texture sampler as the
  clothes (and skin and hair tones), and other people stand in the background, labelled 0 as LIP
  does, so a pixel's colour alone cannot give its label. Occluders (objects, fragments of other
  people) are painted in front of the person.
- **Crops and sizes**: full-body, upper-body, lower-body, head-missed and three-quarter crops
  at LIP's rates (Section 2.2), image sides of ~110-640 px at LIP scale so person areas span the
  small / medium / large bins of Section 5.4 (153^2, 321^2).

Each scene is sampled at LIP scale; ``max_side`` only scales the geometry when rasterising, so a
small rendering has the same content distribution. Every image's random stream comes from
``SeedSequence([seed, split, index])``: output is byte-identical whatever the number of workers.

Styles: ``lip`` (the default, LIP layout), ``ppp`` (the same figures labelled with
PASCAL-Person-Part's 7 classes, whole limb segments including clothing) and ``atr`` (ATR's 18
classes incl. belt and bag; upright, front-view, full-body people in a fixed 400x600 frame on
plain outdoor backgrounds: a real domain shift for Table 6's cross-dataset column).
"""
from __future__ import annotations

import argparse
import colorsys
import csv
import hashlib
import io
import json
import os
import shutil
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter
from tqdm import tqdm

from lipstudy.atomic import atomic_save
from lipstudy.data import _shapes as shp
from lipstudy.data._shapes import Material
from lipstudy.labels import ATR_TO_LIP

GENERATOR_VERSION = "1.0"
SPLITS = ("train", "val", "test")
STYLES = ("lip", "ppp", "atr")
LIP_FULL_SIDE = 640          # longest image side at LIP scale; max_side scales relative to it
ATR_FRAME = (400, 600)       # ATR's image size (width, height) at full scale
SMALL_AREA, LARGE_AREA = 153 ** 2, 321 ** 2   # Section 5.4 object-size bins (COCO convention)

# Label ids beyond LIP's, used while painting and mapped away per style.
BELT, BAG = 20, 21
HEAD_IDS = (1, 2, 4, 13)
UPPER_IDS = (5, 6, 7, 10)
ATTRIBUTES = ("full_body", "upper_body", "lower_body", "head_missed", "back_view", "occlusion")
CSV_COLUMNS = ("id", "split", *ATTRIBUTES, "person_area", "size_bin", "width", "height")

# Crop types and their rates. LIP (Section 2.2): of 50,462 images 37.8% full-body, 27.1%
# upper-body, 0.8% lower-body, 6.7% head-missed; the rest are other partial views (here: head to
# knees or shins). Lower-body is raised to 2.5% so a split of a few hundred images has some.
CROPS = ("full", "upper", "three_quarter", "head_missed", "lower")
CROP_P = (0.38, 0.27, 0.255, 0.07, 0.025)
POSES = ("standing", "walking", "sitting", "arms_raised", "arms_crossed", "hands_on_hips", "bending")
POSE_P = (0.30, 0.22, 0.10, 0.10, 0.09, 0.10, 0.09)
OCCLUDER_P = 0.45            # plus frame cuts: ~40% of images end up with occlusion (LIP: 41.7%)
SIDE_CUT_P = 0.15
BACKGROUND_PERSON_P = 0.35
_K_DEPTH = 40.0              # depth -> painting order; limbs move in front of / behind the torso

# LIP id -> PASCAL-Person-Part id is per painted element (limb segments), so PPP labels are painted
# alongside; LIP id -> ATR id is a lookup (coat counts as ATR upper-clothes).
_ATR_LUT = np.zeros(256, np.uint8)
for _atr, _lip in ATR_TO_LIP.items():
    _ATR_LUT[_lip] = _atr
_ATR_LUT[7], _ATR_LUT[BELT], _ATR_LUT[BAG] = 4, 8, 16
_SPLIT_CODE = {"train": 0, "val": 1, "test": 2}
_STYLE_CODE = {"lip": 0, "ppp": 1, "atr": 2}


@dataclass(frozen=True)
class Elem:
    """One painted shape in unit coordinates (person height = 1, feet at y = 0, y down)."""

    key: float          # painting order (back to front)
    kind: str           # "capsule" (a, b, ra, rb) | "ellipse" (c, rx, ry, rot) | "polygon" (pts)
    geom: tuple
    lip: int            # LIP id (or BELT / BAG)
    ppp: int            # PASCAL-Person-Part id
    mat: Material

    def bbox(self) -> tuple[float, float, float, float]:
        if self.kind == "capsule":
            a, b, ra, rb = self.geom
            r = max(ra, rb)
            return min(a[0], b[0]) - r, min(a[1], b[1]) - r, max(a[0], b[0]) + r, max(a[1], b[1]) + r
        if self.kind == "ellipse":
            c, rx, ry, _ = self.geom
            r = max(rx, ry)
            return c[0] - r, c[1] - r, c[0] + r, c[1] + r
        pts = np.asarray(self.geom)
        return pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()


# ---------------------------------------------------------------------------------------------
# Appearance samplers

SKIN_TONES = np.array([(255, 224, 196), (241, 194, 160), (224, 172, 130), (198, 134, 98),
                       (161, 102, 72), (120, 76, 52), (88, 56, 40)], np.float32)
HAIR_TONES = np.array([(20, 18, 18), (45, 32, 24), (85, 58, 36), (140, 100, 58), (205, 175, 115),
                       (150, 150, 150), (120, 52, 30)], np.float32)
COMMON_COLOURS = np.array([(20, 20, 24), (235, 235, 235), (50, 70, 120), (120, 120, 125),
                           (90, 60, 40), (160, 30, 40), (30, 60, 40), (200, 180, 150)], np.float32)


_PATTERN_CDF = np.cumsum([0.45, 0.15, 0.1, 0.1])  # plain, stripes, checks, dots; else noise


def _hsv_colour(rng) -> np.ndarray:
    h, sat, v = rng.random(3)
    return 255.0 * np.array(colorsys.hsv_to_rgb(h, 0.1 + 0.85 * sat, 0.12 + 0.86 * v))


def _jitter(rng, c, amount=18.0) -> tuple:
    n = rng.normal(0, amount, 3)
    return tuple(min(255.0, max(0.0, float(c[i]) + n[i])) for i in range(3))


def garment_material(rng, dark=False) -> Material:
    """A cloth: a common or random colour, a pattern (plain, stripes, checks, dots, noise)."""
    u = rng.random(5)
    c1 = COMMON_COLOURS[int(u[0] * len(COMMON_COLOURS))] if u[1] < 0.4 else _hsv_colour(rng)
    if dark:
        c1 = c1 * (0.2 + 0.4 * u[2])
    pattern = int(np.searchsorted(_PATTERN_CDF, u[3], side="right"))
    c2 = _hsv_colour(rng) if u[4] < 0.5 else np.asarray(c1) * rng.uniform(0.5, 0.85)
    angle = (0.0, np.pi / 2, np.pi / 4, rng.uniform(0, np.pi))[int(rng.integers(4))]
    return Material(_jitter(rng, c1), _jitter(rng, c2), pattern, float(rng.uniform(3, 14)),
                    float(angle), float(rng.uniform(0.1, 0.35)))


def skin_material(rng) -> Material:
    c = _jitter(rng, SKIN_TONES[rng.integers(len(SKIN_TONES))], 10)
    return Material(c, tuple(0.92 * np.asarray(c)), shp.NOISE, float(rng.uniform(6, 16)), 0.0,
                    float(rng.uniform(0.15, 0.4)))


def hair_material(rng) -> Material:
    c = _jitter(rng, HAIR_TONES[rng.integers(len(HAIR_TONES))], 10)
    return Material(c, tuple(0.75 * np.asarray(c)), shp.STRIPES, float(rng.uniform(1.5, 3.5)),
                    float(rng.uniform(1.2, 1.9)), 0.3)


def any_material(rng) -> Material:
    """For background clutter and occluders: mostly cloth-like, sometimes skin or hair tones, so
    that colour and texture alone do not separate people from background."""
    u = rng.random()
    if u < 0.6:
        return garment_material(rng)
    if u < 0.75:
        return skin_material(rng)
    if u < 0.85:
        return hair_material(rng)
    return Material(_jitter(rng, rng.uniform(40, 220) * np.ones(3), 25), shading=0.0)


# ---------------------------------------------------------------------------------------------
# The person: pose prior -> 3-D joints -> projected, depth-ordered elements

def _limb_dir(alpha: float, phi: float, side: int) -> np.ndarray:
    """Unit direction in person coordinates (lateral l: person's left +, forward f, up y) of a
    limb abducted ``alpha`` degrees outward (negative: across the body) and flexed ``phi``
    degrees forward from hanging straight down."""
    a, p = np.radians(alpha), np.radians(phi)
    v = np.array([side * np.sin(a), np.sin(p) * np.cos(a), -np.cos(p) * np.cos(a)])
    return v / np.linalg.norm(v)


def sample_pose(rng, pose: str) -> dict:
    """Joint angles of one pose from the prior. Sides: +1 = person's left, -1 = right."""
    arms = {s: [rng.uniform(4, 18), rng.normal(0, 8), 0.0, 0.0] for s in (1, -1)}
    for s in (1, -1):
        arms[s][2] = arms[s][0] + rng.uniform(-5, 5)
        arms[s][3] = arms[s][1] + rng.uniform(0, 25)
    legs = {s: [rng.uniform(1, 7), rng.normal(0, 4), 0.0] for s in (1, -1)}
    for s in (1, -1):
        legs[s][2] = legs[s][1] - rng.uniform(0, 8)
    lean, tilt = rng.normal(0, 4), rng.normal(0, 3)
    if pose == "walking":
        swing = rng.uniform(12, 32) * rng.choice([-1, 1])
        for s in (1, -1):
            arms[s][1] = s * swing
            arms[s][3] = s * swing + rng.uniform(10, 35)
            legs[s][1] = -s * swing * 0.9
            legs[s][2] = legs[s][1] - rng.uniform(5, 30)
    elif pose == "sitting":
        for s in (1, -1):
            legs[s] = [rng.uniform(3, 15), rng.uniform(70, 95), rng.uniform(-10, 15)]
            arms[s] = [rng.uniform(3, 15), rng.uniform(5, 30), rng.uniform(-10, 10), rng.uniform(40, 80)]
    elif pose == "arms_raised":
        for s in ((1, -1) if rng.random() < 0.5 else (rng.choice([1, -1]),)):
            a = rng.uniform(100, 165)
            arms[s] = [a, rng.normal(0, 10), a + rng.uniform(-25, 20), rng.normal(0, 10)]
    elif pose == "arms_crossed":
        for s in (1, -1):
            arms[s] = [rng.uniform(0, 12), rng.uniform(15, 35), rng.uniform(-95, -70), rng.uniform(10, 40)]
    elif pose == "hands_on_hips":
        for s in (1, -1):
            arms[s] = [rng.uniform(30, 50), rng.normal(0, 10), rng.uniform(-70, -40), rng.normal(0, 10)]
    elif pose == "bending":
        lean = rng.uniform(25, 65)
    return {"arms": arms, "legs": legs, "lean": lean, "tilt": tilt, "head_tilt": rng.normal(0, 6)}


def sample_yaw(rng, front_only=False) -> float:
    """Viewpoint: yaw 0 = facing the camera, pi = back view (LIP: ~5.5% back-view images)."""
    if front_only:
        return float(rng.normal(0, np.radians(8)))
    u = rng.random()
    if u < 0.58:
        deg = rng.normal(0, 14)
    elif u < 0.77:
        deg = rng.choice([-1, 1]) * rng.uniform(28, 62)
    elif u < 0.91:
        deg = rng.choice([-1, 1]) * rng.uniform(75, 105)
    elif u < 0.95:
        deg = rng.choice([-1, 1]) * rng.uniform(118, 140)
    else:
        deg = 180 + rng.normal(0, 14)
    return float(np.radians(deg))


@dataclass(frozen=True)
class Outfit:
    upper: int               # 5 upper-clothes, 6 dress, 10 jumpsuits
    lower: int               # 9 pants, 12 skirt, 6 dress, 10 jumpsuits
    coat: bool
    sleeve: float            # fraction of the arm (shoulder to wrist) the sleeve covers
    leg_cover: float         # fraction of the leg (hip to ankle) the trousers cover
    skirt_len: float
    long_hair: bool
    hat: bool
    sunglasses: bool
    scarf: bool
    gloves: bool
    socks: float             # sock height as a fraction of the shin (0: none)
    belt: bool
    bag: bool


def sample_outfit(rng, style: str) -> Outfit:
    """Garment frequencies follow LIP's Fig. 3 in order: upper-clothes, pants, coat, hair and face
    are common; dress, skirt, jumpsuits and the accessories (gloves, sunglasses, scarf, socks)
    rare."""
    atr = style == "atr"
    u = rng.random()
    if u < 0.09:
        upper, lower = 6, 6
    elif u < 0.15 and not atr:
        upper, lower = 10, 10
    elif u < 0.26:
        upper, lower = 5, 12
    else:
        upper, lower = 5, 9
    sleeve = rng.choice([0.0, rng.uniform(0.22, 0.45), rng.uniform(0.85, 0.98)], p=(0.15, 0.45, 0.4))
    leg_cover = rng.uniform(0.85, 1.0) if rng.random() < 0.78 else rng.uniform(0.28, 0.45)
    return Outfit(
        upper=upper, lower=lower, coat=bool(rng.random() < 0.28),
        sleeve=float(sleeve), leg_cover=float(leg_cover),
        skirt_len=float(rng.uniform(0.14, 0.32)), long_hair=bool(rng.random() < 0.4),
        hat=bool(rng.random() < 0.12), sunglasses=bool(rng.random() < 0.08),
        scarf=bool(rng.random() < 0.06), gloves=bool(not atr and rng.random() < 0.05),
        socks=float(rng.uniform(0.12, 0.45)) if (not atr and rng.random() < 0.3) else 0.0,
        belt=bool(atr and rng.random() < 0.35), bag=bool(atr and rng.random() < 0.3),
    )


def _joints(pose: dict, build: dict) -> dict:
    """3-D joints (l, f, y) of the posed skeleton, feet on the ground (y = 0)."""
    lean, tilt = np.radians(pose["lean"]), np.radians(pose["tilt"])
    up = np.array([np.sin(tilt), np.sin(lean) * np.cos(tilt), np.cos(lean) * np.cos(tilt)])
    ht = np.radians(pose["head_tilt"])
    head_up = np.array([up[0] + np.sin(ht), up[1], up[2]])
    head_up /= np.linalg.norm(head_up)
    j = {"pelvis": np.array([0.0, 0.0, 0.53])}
    j["neck"] = j["pelvis"] + 0.33 * up
    j["head"] = j["neck"] + 0.075 * head_up
    j["up"], j["head_up"] = up, head_up
    for s in (1, -1):
        au, pu, af, pf = pose["arms"][s]
        sh = j["pelvis"] + 0.30 * up + np.array([s * build["shoulder"], 0, 0])
        el = sh + 0.17 * _limb_dir(au, pu, s)
        wr = el + 0.15 * _limb_dir(af, pf, s)
        j[("arm", s)] = (sh, el, wr, wr + 0.07 * _limb_dir(af, pf, s))
        at, pt, ps = pose["legs"][s]
        hip = j["pelvis"] + np.array([s * 0.055, 0, -0.02])
        kn = hip + 0.245 * _limb_dir(at, pt, s)
        an = kn + 0.245 * _limb_dir(at * 0.3, ps, s)
        toe = an + np.array([0.0, 0.095, -0.03])
        j[("leg", s)] = (hip, kn, an, toe)
    ground = min(min(j[("leg", s)][2][2], j[("leg", s)][3][2]) for s in (1, -1)) - 0.03
    for k, v in j.items():
        if k in ("up", "head_up"):
            continue
        j[k] = tuple(p - [0, 0, ground] for p in v) if isinstance(v, tuple) else v - [0, 0, ground]
    return j


class _Proj:
    """Orthographic camera at yaw ``theta``: image x = cos l + sin f, image y = -height,
    depth towards the camera z = -sin l + cos f (so a side view facing image-right shows the
    person's right side nearest, and a back view mirrors left and right)."""

    def __init__(self, theta: float):
        self.c, self.s = np.cos(theta), np.sin(theta)

    def xy(self, p) -> np.ndarray:
        return np.array([self.c * p[0] + self.s * p[1], -p[2]])

    def z(self, p) -> float:
        return float(-self.s * p[0] + self.c * p[1])

    def width(self, lateral: float, depth: float) -> float:
        return abs(self.c) * lateral + abs(self.s) * depth


def _chain(points, t: float):
    """The polyline ``points`` cut at fraction ``t`` of its length -> list of segments with the
    fraction of each original segment kept."""
    seg = [np.linalg.norm(points[i + 1] - points[i]) for i in range(len(points) - 1)]
    left, out = t * sum(seg), []
    for i, L in enumerate(seg):
        if left <= 0 or L == 0:
            break
        f = min(1.0, left / L)
        out.append((i, points[i], points[i] + f * (points[i + 1] - points[i]), f))
        left -= L
    return out


def person_elements(rng, style: str = "lip", front_only: bool = False, pose: str | None = None,
                    yaw: float | None = None) -> tuple[list[Elem], dict]:
    """Sample one person (pose, view, body build, outfit, colours) and return the elements that
    draw them, plus facts about them (yaw, pose, key points in unit coordinates)."""
    pose = pose or str(rng.choice(POSES, p=POSE_P))
    theta = sample_yaw(rng, front_only) if yaw is None else yaw
    build = {"shoulder": rng.uniform(0.095, 0.12), "hip": rng.uniform(0.08, 0.1),
             "limb": rng.uniform(0.85, 1.15), "head": rng.uniform(0.92, 1.1)}
    outfit = sample_outfit(rng, style)
    j = _joints(sample_pose(rng, pose), build)
    cam = _Proj(theta)
    skin, hair = skin_material(rng), hair_material(rng)
    up_mat, low_mat = garment_material(rng), garment_material(rng)
    if outfit.upper == outfit.lower:
        low_mat = up_mat
    coat_mat, shoe_mat = garment_material(rng), garment_material(rng, dark=rng.random() < 0.6)
    wanted = {"hat": outfit.hat, "scarf": outfit.scarf, "glove": outfit.gloves, "sock": outfit.socks > 0,
              "belt": outfit.belt, "bag": outfit.bag}
    acc = {k: garment_material(rng) for k, on in wanted.items() if on}
    glasses = Material(_jitter(rng, (25, 25, 30), 10), shading=0.1)
    els: list[Elem] = []
    back = cam.c < -0.5
    facing = 1.0 if cam.s >= 0 else -1.0

    def add(key, kind, geom, lip, ppp, mat):
        els.append(Elem(float(key), kind, geom, lip, ppp, mat))

    # Torso: a polygon of half-widths at levels along the pelvis -> neck axis.
    P, N = cam.xy(j["pelvis"]), cam.xy(j["neck"])
    axis = N - P
    alen = np.linalg.norm(axis) + 1e-9
    nrm = np.array([-axis[1], axis[0]]) / alen
    hipw = build["hip"]
    levels = [(-0.9, hipw + 0.05, 0.09), (-0.3, hipw + 0.02, 0.08), (-0.12, hipw, 0.075),
              (0.0, hipw - 0.005, 0.07), (0.45, 0.078, 0.06), (0.8, build["shoulder"] - 0.01, 0.07),
              (0.93, build["shoulder"] + 0.01, 0.06), (1.0, 0.045, 0.04)]
    lv = np.array([(s, cam.width(w, d)) for s, w, d in levels])

    def torso_poly(s0, s1, extra=0.0, flare=0.0):
        ss = np.concatenate([[s0], lv[(lv[:, 0] > s0) & (lv[:, 0] < s1), 0], [s1]])
        ws = np.interp(ss, lv[:, 0], lv[:, 1]) + extra + flare * np.clip(-ss, 0, None)
        cen = P[None] + ss[:, None] * axis[None]
        return tuple(map(tuple, np.concatenate([cen - ws[:, None] * nrm, (cen + ws[:, None] * nrm)[::-1]])))

    # Legs: skin, socks, trousers, shoes, ordered among themselves by depth, behind the torso.
    for s in (1, -1):
        hip, kn, an, toe = j[("leg", s)]
        key = -2 + np.clip(_K_DEPTH * cam.z(kn), -0.9, 0.9)
        pts = [cam.xy(p) for p in (hip, kn, an)]
        r = [0.06 * build["limb"], 0.045 * build["limb"], 0.032 * build["limb"]]
        lip_skin = 16 if s == 1 else 17
        for i in range(2):
            add(key, "capsule", (tuple(pts[i]), tuple(pts[i + 1]), r[i], r[i + 1]), lip_skin, 5 + i, skin)
        if outfit.socks:
            a = pts[2] + outfit.socks * (pts[1] - pts[2])
            add(key, "capsule", (tuple(a), tuple(pts[2]), r[2] + 0.005, r[2] + 0.005), 8, 6, acc["sock"])
        if outfit.lower in (9, 10):
            for i, a, b, f in _chain(pts, outfit.leg_cover):
                add(key, "capsule", (tuple(a), tuple(b), r[i] + 0.012, r[i] + 0.012 + f * (r[i + 1] - r[i])),
                    outfit.lower, 5 + i, low_mat)
        add(key, "capsule", (tuple(cam.xy(an + [0, -0.01, 0])), tuple(cam.xy(toe)), 0.033, 0.028),
            18 if s == 1 else 19, 6, shoe_mat)

    # Lower garment over the pelvis, skirt / dress below it.
    add(-1, "polygon", torso_poly(-0.25, 0.2, 0.004), outfit.lower, 2, low_mat)
    if outfit.lower in (6, 12):
        top = P + 0.1 * axis
        w0 = cam.width(hipw + 0.015, 0.085)
        w1 = w0 * (1.2 + 0.6 * outfit.skirt_len)
        bot = top + np.array([0.0, outfit.skirt_len + 0.1])
        add(-1, "polygon", ((top[0] - w0, top[1]), (top[0] + w0, top[1]), (bot[0] + w1, bot[1]),
                            (bot[0] - w1, bot[1])), outfit.lower, 5, low_mat)
    if outfit.belt:
        a, b = P + 0.12 * axis - nrm * cam.width(hipw, 0.07), P + 0.12 * axis + nrm * cam.width(hipw, 0.07)
        add(-0.5, "capsule", (tuple(a), tuple(b), 0.014, 0.014), BELT, 2, acc["belt"])

    # Upper garment, coat (open at the front in frontal views), scarf.
    add(0, "polygon", torso_poly(rng.uniform(-0.12, 0.05), 1.0, 0.006), outfit.upper, 2, up_mat)
    if outfit.coat:
        add(0, "polygon", torso_poly(rng.uniform(-0.8, -0.15), 1.0, 0.014, 0.04), 7, 2, coat_mat)
        if cam.c > 0.6 and rng.random() < 0.6:
            gap = rng.uniform(0.01, 0.035) * cam.c
            c0, c1 = P + 0.15 * axis, P + 0.97 * axis
            add(0, "polygon", (tuple(c0 - gap * nrm), tuple(c1 - gap * nrm), tuple(c1 + gap * nrm),
                               tuple(c0 + gap * nrm)), outfit.upper, 2, up_mat)
    if outfit.scarf:
        a, b = N - 0.055 * nrm + 0.01 * axis / alen, N + 0.055 * nrm + 0.01 * axis / alen
        add(0.5, "capsule", (tuple(a), tuple(b), 0.026, 0.026), 11, 2, acc["scarf"])
        if rng.random() < 0.6:
            tail0 = N + rng.uniform(-0.03, 0.03) * nrm
            add(0.5, "capsule", (tuple(tail0), tuple(tail0 - 0.4 * axis), 0.02, 0.018), 11, 2, acc["scarf"])

    # Head: neck, hair, face (front / side), features, sunglasses, hat.
    H = cam.xy(j["head"])
    hu = cam.xy(j["head"] + j["head_up"]) - H
    hu /= np.linalg.norm(hu) + 1e-9
    rot = float(np.arctan2(hu[0], -hu[1]))
    ry, rx = 0.068 * build["head"], 0.052 * build["head"]
    hair_key = 1.5 if back else -3
    if outfit.long_hair:
        hl = rng.uniform(0.1, 0.25)
        add(hair_key, "polygon", ((H[0] - 1.05 * rx, H[1]), (H[0] + 1.05 * rx, H[1]),
                                  (H[0] + 1.25 * rx, H[1] + hl), (H[0] - 1.25 * rx, H[1] + hl)), 2, 1, hair)
    add(1, "capsule", (tuple(N), tuple(H), 0.026, 0.024), 2 if back else 13, 1, skin)
    ortho = np.array([-hu[1], hu[0]])  # the head's own sideways axis (image x for an upright head)
    if back:
        add(1, "ellipse", (tuple(H - 0.08 * ry * hu), 1.08 * rx, 1.06 * ry, rot), 2, 1, hair)
    else:
        add(1, "ellipse", (tuple(H + 0.18 * ry * hu), 1.1 * rx, 0.95 * ry, rot), 2, 1, hair)
        side = abs(cam.s)
        fc = H - 0.14 * ry * hu + facing * 0.35 * rx * side * ortho
        add(1, "ellipse", (tuple(fc), rx * (1 - 0.3 * side), 0.86 * ry, rot), 13, 1, skin)
        eye_c = fc + 0.12 * ry * hu
        feat = Material(_jitter(rng, (50, 35, 30), 8), shading=0.0)
        eyes = [eye_c + e * 0.38 * rx * (1 - side) * ortho for e in (-1, 1)] if side < 0.7 \
            else [eye_c + facing * 0.3 * rx * ortho]
        for e in eyes:
            add(1, "ellipse", (tuple(e), 0.1 * rx, 0.07 * ry, rot), 13, 1, feat)
        mouth = fc - 0.45 * ry * hu + facing * 0.25 * rx * side * ortho
        add(1, "ellipse", (tuple(mouth), 0.28 * rx * (1 - 0.5 * side), 0.05 * ry, rot), 13, 1,
            Material(_jitter(rng, (150, 60, 60), 15), shading=0.0))
        if outfit.sunglasses:
            half = (0.8 - 0.5 * side) * rx
            gc = eye_c + facing * 0.3 * rx * side * ortho
            add(1.2, "capsule", (tuple(gc - half * ortho), tuple(gc + half * ortho), 0.17 * ry, 0.17 * ry),
                4, 1, glasses)
    if outfit.hat:
        add(1.3, "ellipse", (tuple(H + 0.55 * ry * hu), 1.12 * rx, 0.62 * ry, rot), 1, 1, acc["hat"])
        brim = H + 0.3 * ry * hu
        add(1.3, "capsule", (tuple(brim - 1.35 * rx * ortho), tuple(brim + 1.35 * rx * ortho), 0.012, 0.012),
            1, 1, acc["hat"])

    # Arms: skin, sleeves (the garment's label), gloves; in front of or behind the torso by depth.
    sleeve_lbl = 7 if outfit.coat else outfit.upper
    sleeve_mat = coat_mat if outfit.coat else up_mat
    sleeve_t = max(outfit.sleeve, 0.9) if outfit.coat else outfit.sleeve
    for s in (1, -1):
        sh, el, wr, tip = j[("arm", s)]
        key = 2 + _K_DEPTH * np.mean([cam.z(el), cam.z(wr)])
        pts = [cam.xy(p) for p in (sh, el, wr, tip)]
        r = [0.037 * build["limb"], 0.03 * build["limb"], 0.024 * build["limb"], 0.02 * build["limb"]]
        lip_skin = 14 if s == 1 else 15
        for i in range(3):
            add(key, "capsule", (tuple(pts[i]), tuple(pts[i + 1]), r[i], r[i + 1]), lip_skin, 3 + min(i, 1), skin)
        extra = 0.014 if outfit.coat else 0.008
        for i, a, b, f in _chain(pts[:3], sleeve_t):
            add(key, "capsule", (tuple(a), tuple(b), r[i] + extra, r[i] + extra + f * (r[i + 1] - r[i])),
                sleeve_lbl, 3 + i, sleeve_mat)
        if outfit.gloves:
            g0 = pts[2] + 0.25 * (pts[1] - pts[2])
            add(key, "capsule", (tuple(g0), tuple(pts[3]), r[2] + 0.006, r[3] + 0.008), 3, 4, acc["glove"])
        if outfit.bag and s == 1:
            strap0 = cam.xy(j[("arm", -1)][0])
            bag_c = cam.xy(j[("leg", 1)][0]) + np.array([cam.width(0.13, 0.06) * (1 if cam.c >= 0 else -1), -0.02])
            add(key + 0.5, "capsule", (tuple(strap0), tuple(bag_c), 0.008, 0.008), BAG, 0, acc["bag"])
            bw, bh = rng.uniform(0.05, 0.09), rng.uniform(0.05, 0.09)
            add(key + 0.5, "polygon", ((bag_c[0] - bw, bag_c[1] - bh), (bag_c[0] + bw, bag_c[1] - bh),
                                       (bag_c[0] + bw, bag_c[1] + bh), (bag_c[0] - bw, bag_c[1] + bh)),
                BAG, 0, acc["bag"])

    els.sort(key=lambda e: e.key)  # stable: within a component, insertion order holds
    info = {"yaw": theta, "pose": pose, "back": bool(back), "pelvis": P, "neck": N,
            "knees": np.mean([cam.xy(j[("leg", s)][1]) for s in (1, -1)], axis=0)}
    return els, info


# ---------------------------------------------------------------------------------------------
# Rasterising

class Canvas:
    """Shapes painted back to front into an element index map, with each element's material and
    labels (LIP and PPP) kept alongside; :meth:`render` turns it into image and label maps."""

    def __init__(self, h: int, w: int, backdrop: Material):
        self.painter = shp.Painter(h, w)
        self.materials, self.lip_ids, self.ppp_ids = [backdrop], [0], [0]
        self.shape = (h, w)

    def add(self, material: Material, lip: int = 0, ppp: int = 0):
        self.materials.append(material)
        self.lip_ids.append(lip)
        self.ppp_ids.append(ppp)

    def paint(self, el: Elem, origin, k: float, labelled: bool = True):
        """Rasterise ``el`` mapping unit coordinates u -> (u - origin) * k pixels."""
        o = np.asarray(origin)
        if el.kind == "capsule":
            a, b, ra, rb = el.geom
            self.painter.capsule((np.asarray(a) - o) * k, (np.asarray(b) - o) * k, ra * k, rb * k)
        elif el.kind == "ellipse":
            c, rx, ry, rot = el.geom
            self.painter.ellipse((np.asarray(c) - o) * k, rx * k, ry * k, rot)
        else:
            self.painter.polygon((np.asarray(el.geom) - o) * k)
        self.add(el.mat, el.lip if labelled else 0, el.ppp if labelled else 0)

    def labels(self, index: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(LIP, PPP) label maps of the current (or a saved) index map."""
        index = self.painter.indices() if index is None else index
        return (np.array(self.lip_ids, np.uint8)[index], np.array(self.ppp_ids, np.uint8)[index])


def _background(rng, cv: Canvas):
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


def _backdrop(rng, outdoor: bool) -> Material:
    if outdoor:  # ATR-like: a pale sky fading into a plain ground
        sky = np.array([rng.uniform(150, 220), rng.uniform(180, 230), 255.0]) * rng.uniform(0.8, 1.0)
        ground = np.array([rng.uniform(90, 170)] * 3) * np.array([1.0, rng.uniform(0.9, 1.1), rng.uniform(0.7, 1.0)])
        return Material(tuple(sky), tuple(ground), shp.GRADIENT, shading=0.0)
    return Material(tuple(_hsv_colour(rng)), tuple(_hsv_colour(rng)), shp.GRADIENT, shading=0.0)


def _other_person(rng, cv: Canvas, k: float, behind: bool, style: str):
    """Another person labelled background (as in LIP), standing behind or cut by the frame in front."""
    els, _ = person_elements(rng, style)
    h, w = cv.shape
    kk = k * rng.uniform(0.5, 1.3) if behind else k * rng.uniform(1.0, 1.8)
    if behind:
        px, py = rng.uniform(-0.2, 1.2) * w, rng.uniform(0.3, 1.4) * h
    else:  # enter from the left or right edge
        px = (rng.uniform(-0.25, 0.05) if rng.random() < 0.5 else rng.uniform(0.95, 1.25)) * w
        py = rng.uniform(0.5, 1.3) * h
    origin = (-px / kk, -py / kk)
    for el in els:
        cv.paint(el, origin, kk, labelled=False)


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


def _union_box(els, lips=None, boxes=None):
    """Bounding box (x0, y0, x1, y1) of the elements (optionally only those with LIP ids ``lips``)."""
    b = np.array([e.bbox() for e in els]) if boxes is None else boxes
    if lips is not None:
        b = b[np.isin([e.lip for e in els], lips)]
    if len(b) == 0:
        return None
    return b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()


def _crop_window(rng, els, info, crop: str):
    """The crop window (x0, y0, x1, y1) in unit coordinates for a crop type, from the elements'
    bounding boxes, so e.g. a head-missed crop starts below every head element."""
    boxes = np.array([e.bbox() for e in els])
    px0, py0, px1, py1 = _union_box(els, boxes=boxes)
    mg = lambda: rng.uniform(0.02, 0.1)  # noqa: E731
    head = _union_box(els, HEAD_IDS, boxes)
    lower_parts = _union_box(els, (8, 16, 17, 18, 19), boxes)
    shoes = _union_box(els, (18, 19), boxes)
    top, bottom = py0 - mg(), py1 + mg()
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
        x0, x1 = (x0 + cut, x1 + mg()) if rng.random() < 0.5 else (x0 - mg(), x1 - cut)
    else:
        x0, x1 = x0 - mg(), x1 + mg()
    return x0, top, x1, bottom


# Which image borders are a crop type's own cut (not an occlusion): the waist of an upper-body
# crop, the neck of a head-missed crop, ...
_NATURAL_CUTS = {"full": (), "upper": ("bottom",), "three_quarter": ("bottom",),
                 "head_missed": ("top",), "lower": ("top",)}


def _consistent(lip: np.ndarray, crop: str, back: bool) -> bool:
    """The label map shows what the attributes claim (else the scene is resampled)."""
    present = np.zeros(256, bool)
    present[np.unique(lip)] = True
    head, shoes = present[list(HEAD_IDS)].any(), present[[18, 19]].any()
    if back and present[13]:
        return False
    if crop == "full":
        return head and shoes
    if crop == "upper":
        return head and not present[[8, 16, 17, 18, 19]].any()
    if crop == "three_quarter":
        return head and not shoes
    if crop == "head_missed":
        return not head and present[list(UPPER_IDS)].any()
    return not head and present[[6, 9, 10, 12, 16, 17, 18, 19]].any()


def _occlusion(person: np.ndarray, final: np.ndarray, els, win, crop: str) -> bool:
    """Section 2.3: a part the person has is occluded (an occluder hides >= 20% of its pixels)
    or cut off by an image border other than the crop type's own cut (judged on the geometry at
    LIP scale, so the attribute does not depend on ``max_side``)."""
    before = np.bincount(person.ravel(), minlength=256)[1:20]
    after = np.bincount(final.ravel(), minlength=256)[1:20]
    hidden = before - after
    if ((before > 0) & (hidden >= np.maximum(0.2 * before, 2))).any():
        return True
    boxes = np.array([e.bbox() for e in els if 0 < e.lip < 20])
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
    Attributes are the generator's ground truth (crop type, yaw) checked against the label map."""
    full = ATR_FRAME[1] if style == "atr" else LIP_FULL_SIDE
    scale = 1.0 if max_side is None else min(1.0, max_side / full)
    for _ in range(50):
        if style == "atr":
            crop = "full"
            els, info = person_elements(rng, style, front_only=True,
                                        pose=str(rng.choice(["standing", "walking", "arms_crossed", "hands_on_hips"])))
            bx0, by0, bx1, by1 = _union_box(els)
            S = min(rng.uniform(0.78, 0.93) * ATR_FRAME[1] / (by1 - by0), 0.95 * ATR_FRAME[0] / (bx1 - bx0))
            wu, hu = ATR_FRAME[0] / S, ATR_FRAME[1] / S
            cx, cy = (bx0 + bx1) / 2 + rng.uniform(-0.02, 0.02), (by0 + by1) / 2 + rng.uniform(-0.02, 0.03)
            win = (cx - wu / 2, cy - hu / 2, cx + wu / 2, cy + hu / 2)
        else:
            crop = str(rng.choice(CROPS, p=CROP_P))
            els, info = person_elements(rng, style)
            win = _crop_window(rng, els, info, crop)
            if win is None:
                continue
            long_side = 110 + (full - 110) * float(rng.random()) ** 0.6
            S = long_side / max(win[2] - win[0], win[3] - win[1])
            # Keep a crop's own cut >= 1.5 rendered pixels clear of the parts it must exclude
            # (PIL fills boundary pixels).
            pad = 1.5 / (S * scale)
            x0, y0, x1, y1 = win
            if crop in ("head_missed", "lower"):
                y0 += pad
            if crop in ("upper", "three_quarter"):
                y1 -= pad
            win = (x0, y0, x1, y1)
        k = S * scale  # rendered pixels per unit (person height)
        w = max(8, int(round((win[2] - win[0]) * k)))
        h = max(8, int(round((win[3] - win[1]) * k)))
        cv = Canvas(h, w, _backdrop(rng, outdoor=style == "atr"))
        if style == "atr":  # ground plane below the horizon
            hz = h * rng.uniform(0.55, 0.8)
            cv.painter.polygon([(-1, hz), (w, hz), (w, h), (-1, h)])
            cv.add(Material(tuple(cv.materials[0].color2), shading=0.0))
        else:
            _background(rng, cv)
            if rng.random() < BACKGROUND_PERSON_P:
                _other_person(rng, cv, k, behind=True, style=style)
        origin = (win[0], win[1])
        for el in els:
            cv.paint(el, origin, k)
        person_index = cv.painter.indices()
        if style != "atr" and rng.random() < OCCLUDER_P:
            box = [(v - o) * k for v, o in zip(_union_box(els), origin * 2)]
            _occluder(rng, cv, k, box, style)
        index = cv.painter.indices()
        lip, ppp = cv.labels(index)
        if not _consistent(lip, crop, info["back"]) or not (lip > 0).any():
            continue
        area = int(((lip > 0) & (lip < 20)).sum())
        lip_area = area / scale ** 2
        attrs = {
            "full_body": int(crop == "full"), "upper_body": int(crop == "upper"),
            "lower_body": int(crop == "lower"), "head_missed": int(crop == "head_missed"),
            "back_view": int(info["back"]), "occlusion": int(_occlusion(cv.labels(person_index)[0], lip, els, win, crop)),
            "person_area": area,
            "size_bin": "small" if lip_area < SMALL_AREA else "medium" if lip_area < LARGE_AREA else "large",
            "width": w, "height": h,
        }
        img = shp.compose(index, cv.materials, scale)
        return _finish(rng, img, scale), lip, ppp, attrs
    raise RuntimeError("could not sample a consistent scene in 50 tries")


# ---------------------------------------------------------------------------------------------
# Writing the dataset

def image_id(split: str, index: int) -> str:
    """Stable, globally unique ids (PPP / ATR keep all splits in one folder)."""
    return f"synth_{split}_{index:06d}"


def _render_item(task) -> tuple[str, str, bytes, bytes, dict]:
    """Worker: one image, its RNG derived from (seed, style, split, index) only."""
    seed, style, split, index, max_side = task
    rng = np.random.default_rng(np.random.SeedSequence([seed, _STYLE_CODE[style], _SPLIT_CODE[split], index]))
    img, lip, ppp, attrs = render_scene(rng, style, max_side)
    label = {"lip": lip, "ppp": ppp, "atr": _ATR_LUT[lip]}[style]
    jpg, png = io.BytesIO(), io.BytesIO()
    Image.fromarray(img).save(jpg, format="JPEG", quality=int(rng.integers(55, 96)))
    Image.fromarray(label, mode="L").save(png, format="PNG", compress_level=1)
    return split, image_id(split, index), jpg.getvalue(), png.getvalue(), attrs


def _paths(style: str, split: str, ident: str) -> tuple[str, str]:
    """(image path, label path) relative to the dataset root."""
    if style == "lip":
        if split == "test":
            return f"Testing_images/testing_images/{ident}.jpg", f"server/test_segmentations/{ident}.png"
        return (f"TrainVal_images/{split}_images/{ident}.jpg",
                f"TrainVal_parsing_annotations/{split}_segmentations/{ident}.png")
    label_dir = "SegmentationPart" if style == "ppp" else "SegmentationClassAug"
    return f"JPEGImages/{ident}.jpg", f"{label_dir}/{ident}.png"


def _id_list_path(style: str, split: str) -> str:
    if style == "lip":
        return "Testing_images/test_id.txt" if split == "test" else f"TrainVal_images/{split}_id.txt"
    return f"{split}_id.txt"


def _write(path: Path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def generate(out, train: int, val: int, test: int, seed: int = 0, style: str = "lip", workers: int = 1,
             max_side: int | None = None, progress: bool = True, force: bool = False) -> dict:
    """Render the benchmark into ``out`` (LIP layout for ``style="lip"``, PPP / ATR layouts
    otherwise) and return its manifest. Rendering goes to ``<out>.tmp-<pid>``, renamed to ``out``
    at the end; an existing non-empty ``out`` is refused unless ``force``."""
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; expected one of {STYLES}")
    counts = {"train": int(train), "val": int(val), "test": int(test)}
    if min(counts.values()) < 0:
        raise ValueError(f"image counts must be >= 0, got {counts}")
    if max_side is not None and max_side < 16:
        raise ValueError(f"max_side must be at least 16 px, got {max_side}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise FileExistsError(f"{out}: exists and is not empty; choose another --out or pass --force")
    tmp = out.parent / f"{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    full = ATR_FRAME[1] if style == "atr" else LIP_FULL_SIDE
    scale = 1.0 if max_side is None else min(1.0, max_side / full)
    tasks = [(int(seed), style, split, i, max_side) for split in SPLITS for i in range(counts[split])]
    digest, rows, ids = hashlib.sha256(), [], {s: [] for s in SPLITS}
    try:
        pool = Pool(workers) if workers > 1 else None
        results = pool.imap(_render_item, tasks, chunksize=8) if pool else map(_render_item, tasks)
        for split, ident, jpg, png, attrs in tqdm(results, total=len(tasks), disable=not progress,
                                                  desc=f"synth {style}", unit="img"):
            img_rel, lab_rel = _paths(style, split, ident)
            _write(tmp / img_rel, jpg)
            _write(tmp / lab_rel, png)
            digest.update(png)
            digest.update(jpg)
            ids[split].append(ident)
            rows.append({"id": ident, "split": split, **attrs})
        if pool:
            pool.close()
            pool.join()
        for split in SPLITS:
            _write(tmp / _id_list_path(style, split), "".join(f"{i}\n" for i in ids[split]).encode())
        with open(tmp / "attributes.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        manifest = {"generator_version": GENERATOR_VERSION, "style": style, "seed": int(seed),
                    "counts": counts, "max_side": max_side, "scale": scale,
                    "fingerprint": digest.hexdigest()}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def read_attributes(root):
    """``<root>/attributes.csv`` as a DataFrame (ids as strings, attribute columns as ints)."""
    import pandas as pd

    path = Path(root) / "attributes.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no attributes.csv (not a synthetic benchmark?)")
    return pd.read_csv(path, dtype={"id": str, "split": str, "size_bin": str})


def gallery(root, out_png=None, n: int = 2, split: str | None = None, seed: int = 0):
    """A figure of example images (top) and their label overlays (below), one column per
    attribute (full-body, upper-body, lower-body, head-missed, back-view, occlusion); ``n``
    examples per column. For the book's first chapter (the paper's Fig. 1 / Fig. 4 in spirit)."""
    import matplotlib

    if out_png is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from lipstudy.labels import overlay, palette_for

    root = Path(root)
    style = json.loads((root / "manifest.json").read_text())["style"]
    df = read_attributes(root)
    if split is not None:
        df = df[df.split == split]
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(2 * n, len(ATTRIBUTES), figsize=(2.2 * len(ATTRIBUTES), 2.4 * 2 * n),
                             squeeze=False)
    for c, attr in enumerate(ATTRIBUTES):
        pick = df[df[attr] == 1]
        pick = pick.iloc[rng.permutation(len(pick))[:n]] if len(pick) else pick
        axes[0, c].set_title(attr.replace("_", "-"), fontsize=10)
        for r in range(n):
            for ax in (axes[2 * r, c], axes[2 * r + 1, c]):
                ax.axis("off")
            if r >= len(pick):
                continue
            row = pick.iloc[r]
            img_rel, lab_rel = _paths(style, row.split, row.id)
            img = np.asarray(Image.open(root / img_rel).convert("RGB"))
            lab = np.asarray(Image.open(root / lab_rel))
            axes[2 * r, c].imshow(img)
            ncls = {"lip": 20, "ppp": 7, "atr": 18}[style]
            axes[2 * r + 1, c].imshow(overlay(img, lab, palette=palette_for(ncls)))
    fig.tight_layout()
    if out_png is not None:
        atomic_save(out_png, lambda tmp: fig.savefig(tmp, dpi=100), suffix=".png")
    return fig


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="lipstudy synth", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output dataset directory")
    p.add_argument("--train", type=int, default=1000)
    p.add_argument("--val", type=int, default=200)
    p.add_argument("--test", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--style", choices=STYLES, default="lip")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--max-side", type=int, default=None,
                   help=f"render smaller: longest side <= PX (LIP scale: {LIP_FULL_SIDE})")
    p.add_argument("--force", action="store_true", help="replace an existing non-empty --out")
    a = p.parse_args(argv)
    try:
        m = generate(a.out, a.train, a.val, a.test, a.seed, a.style, a.workers, a.max_side, force=a.force)
    except (FileExistsError, ValueError) as e:
        print(f"lipstudy synth: {e}")
        return 2
    print(json.dumps(m, indent=2))
    return 0

