"""One person as a list of painted shapes: body build, outfit and colours, then the legs,
garments, head and arms drawn from the projected skeleton, sorted into painting (depth) order.

Labels follow LIP (Section 2.1): arm and leg labels cover visible skin only (sleeves and
trousers take their garment's label), left / right are the person's own, and a back view shows
no face. Each shape also carries its PASCAL-Person-Part label (the limb segment it lies on).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lipstudy.data.synth.label_ids import BAG, BELT, LIP_ID, PPP_ID, sided
from lipstudy.data.synth.materials import garment_material, hair_material, jitter, skin_material
from lipstudy.data.synth.pose import (
    LEFT,
    POSE_P,
    POSES,
    RIGHT,
    SIDES,
    Build,
    Skeleton,
    YawCamera,
    sample_build,
    sample_pose,
    sample_yaw,
    skeleton,
)
from lipstudy.data.synth.shapes import Material

# Painting order, back to front: long hair (-3), legs (-2, +-0.9 by depth), lower garment (-1),
# belt (-0.5), upper garment and coat (0), scarf (0.5), neck and head (1), sunglasses (1.2), hat
# (1.3), long hair seen from behind (1.5), arms (2 + DEPTH_TO_ORDER * depth: an arm turned away
# goes behind the torso), a bag just in front of its arm.
DEPTH_TO_ORDER = 40.0
TROUSERS = (LIP_ID["pants"], LIP_ID["jumpsuits"])   # lower garments with legs
SKIRTS = (LIP_ID["dress"], LIP_ID["skirt"])
# PASCAL-Person-Part labels limb segments: thigh / shin, upper arm / forearm (the hand counts as
# forearm); the whole head is one class.
PPP_LEGS = (PPP_ID["upper-legs"], PPP_ID["lower-legs"])
PPP_ARMS = (PPP_ID["upper-arms"], PPP_ID["lower-arms"], PPP_ID["lower-arms"])
PPP_HEAD, PPP_TORSO = PPP_ID["head"], PPP_ID["torso"]


@dataclass(frozen=True)
class PartShape:
    """One painted shape of a person in unit coordinates (person height = 1, feet at y = 0,
    y down), with its labels and surface."""

    order: float        # painting order (back to front)
    kind: str           # "capsule" (a, b, ra, rb) | "ellipse" (c, rx, ry, rot) | "polygon" (pts)
    geom: tuple
    lip: int            # LIP id (or BELT / BAG)
    ppp: int            # PASCAL-Person-Part id
    material: Material

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


@dataclass(frozen=True)
class Outfit:
    upper: int               # LIP id: upper-clothes, dress or jumpsuits
    lower: int               # LIP id: pants, skirt, or the same dress / jumpsuits
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
        upper = lower = LIP_ID["dress"]
    elif u < 0.15 and not atr:
        upper = lower = LIP_ID["jumpsuits"]
    elif u < 0.26:
        upper, lower = LIP_ID["upper-clothes"], LIP_ID["skirt"]
    else:
        upper, lower = LIP_ID["upper-clothes"], LIP_ID["pants"]
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


@dataclass(frozen=True)
class Wardrobe:
    """The surfaces of one person's skin, hair and garments."""

    skin: Material
    hair: Material
    upper: Material
    lower: Material
    coat: Material
    shoes: Material
    glasses: Material
    accessories: dict[str, Material]   # those the outfit has: hat, scarf, glove, sock, belt, bag


def sample_wardrobe(rng, outfit: Outfit) -> Wardrobe:
    skin, hair = skin_material(rng), hair_material(rng)
    upper, lower = garment_material(rng), garment_material(rng)
    if outfit.upper == outfit.lower:  # a dress or jumpsuit is one garment, one cloth
        lower = upper
    coat, shoes = garment_material(rng), garment_material(rng, dark=rng.random() < 0.6)
    wanted = {"hat": outfit.hat, "scarf": outfit.scarf, "glove": outfit.gloves, "sock": outfit.socks > 0,
              "belt": outfit.belt, "bag": outfit.bag}
    accessories = {k: garment_material(rng) for k, on in wanted.items() if on}
    glasses = Material(jitter(rng, (25, 25, 30), 10), shading=0.1)
    return Wardrobe(skin, hair, upper, lower, coat, shoes, glasses, accessories)


class TorsoFrame:
    """The torso in the image: the pelvis -> neck axis (``at(0)`` is the pelvis, ``at(1)`` the
    neck, negative values lie below the pelvis), its unit normal, and the body's apparent
    half-width at levels along it, from which garments are cut."""

    def __init__(self, cam: YawCamera, body: Skeleton, build: Build):
        self.pelvis, self.neck = cam.project(body.pelvis), cam.project(body.neck)
        self.axis = self.neck - self.pelvis
        self.length = np.linalg.norm(self.axis) + 1e-9
        self.normal = np.array([-self.axis[1], self.axis[0]]) / self.length
        hip, shoulder = build.hip, build.shoulder
        # (position along the axis, lateral half-width, front-to-back half-depth)
        levels = [(-0.9, hip + 0.05, 0.09), (-0.3, hip + 0.02, 0.08), (-0.12, hip, 0.075),
                  (0.0, hip - 0.005, 0.07), (0.45, 0.078, 0.06), (0.8, shoulder - 0.01, 0.07),
                  (0.93, shoulder + 0.01, 0.06), (1.0, 0.045, 0.04)]
        self.widths = np.array([(s, cam.apparent_width(w, d)) for s, w, d in levels])

    def at(self, s: float) -> np.ndarray:
        return self.pelvis + s * self.axis

    def polygon(self, s0: float, s1: float, extra: float = 0.0, flare: float = 0.0) -> tuple:
        """The torso's outline between levels ``s0`` and ``s1``, widened by ``extra`` (a garment's
        thickness) and, below the pelvis, by ``flare`` per unit (a coat's skirt)."""
        lv = self.widths
        ss = np.concatenate([[s0], lv[(lv[:, 0] > s0) & (lv[:, 0] < s1), 0], [s1]])
        ws = np.interp(ss, lv[:, 0], lv[:, 1]) + extra + flare * np.clip(-ss, 0, None)
        cen = self.pelvis[None] + ss[:, None] * self.axis[None]
        return tuple(map(tuple, np.concatenate([cen - ws[:, None] * self.normal,
                                                (cen + ws[:, None] * self.normal)[::-1]])))


@dataclass(frozen=True)
class _Person:
    """Everything sampled about one person before drawing, and where the shapes go."""

    cam: YawCamera
    body: Skeleton
    build: Build
    outfit: Outfit
    wardrobe: Wardrobe
    torso: TorsoFrame
    shapes: list

    def capsule(self, order, a, b, ra, rb, lip, ppp, material):
        self._add(order, "capsule", (tuple(a), tuple(b), ra, rb), lip, ppp, material)

    def ellipse(self, order, centre, rx, ry, rot, lip, ppp, material):
        self._add(order, "ellipse", (tuple(centre), rx, ry, rot), lip, ppp, material)

    def polygon(self, order, points, lip, ppp, material):
        self._add(order, "polygon", tuple(map(tuple, points)), lip, ppp, material)

    def _add(self, order, kind, geom, lip, ppp, material):
        self.shapes.append(PartShape(float(order), kind, geom, lip, ppp, material))


def _cut_polyline(points, t: float):
    """The polyline ``points`` cut at fraction ``t`` of its length -> ``(i, start, end, f)`` per
    segment kept: segment ``i`` from its start to ``end``, a fraction ``f`` of its length."""
    seg = [np.linalg.norm(points[i + 1] - points[i]) for i in range(len(points) - 1)]
    left, out = t * sum(seg), []
    for i, L in enumerate(seg):
        if left <= 0 or L == 0:
            break
        f = min(1.0, left / L)
        out.append((i, points[i], points[i] + f * (points[i + 1] - points[i]), f))
        left -= L
    return out


def _legs(p: _Person):
    """Skin, socks, trousers and shoes, ordered among themselves by depth, behind the torso."""
    cam, outfit, wardrobe, limb = p.cam, p.outfit, p.wardrobe, p.build.limb
    for s in SIDES:
        hip, knee, ankle, toe = p.body.legs[s]
        order = -2 + np.clip(DEPTH_TO_ORDER * cam.depth(knee), -0.9, 0.9)
        pts = [cam.project(q) for q in (hip, knee, ankle)]
        r = [0.06 * limb, 0.045 * limb, 0.032 * limb]
        for i in range(2):
            p.capsule(order, pts[i], pts[i + 1], r[i], r[i + 1], sided("leg", s), PPP_LEGS[i], wardrobe.skin)
        if outfit.socks:
            top = pts[2] + outfit.socks * (pts[1] - pts[2])
            p.capsule(order, top, pts[2], r[2] + 0.005, r[2] + 0.005, LIP_ID["socks"], PPP_ID["lower-legs"],
                      wardrobe.accessories["sock"])
        if outfit.lower in TROUSERS:
            for i, a, b, f in _cut_polyline(pts, outfit.leg_cover):
                p.capsule(order, a, b, r[i] + 0.012, r[i] + 0.012 + f * (r[i + 1] - r[i]), outfit.lower,
                          PPP_LEGS[i], wardrobe.lower)
        p.capsule(order, cam.project(ankle + [0, -0.01, 0]), cam.project(toe), 0.033, 0.028, sided("shoe", s),
                  PPP_ID["lower-legs"], wardrobe.shoes)


def _lower_garment(p: _Person):
    """The lower garment over the pelvis, a skirt or dress below it, an (ATR) belt."""
    outfit, torso, material = p.outfit, p.torso, p.wardrobe.lower
    p.polygon(-1, torso.polygon(-0.25, 0.2, 0.004), outfit.lower, PPP_TORSO, material)
    if outfit.lower in SKIRTS:
        top = torso.at(0.1)
        w0 = p.cam.apparent_width(p.build.hip + 0.015, 0.085)
        w1 = w0 * (1.2 + 0.6 * outfit.skirt_len)
        bot = top + np.array([0.0, outfit.skirt_len + 0.1])
        trapezoid = ((top[0] - w0, top[1]), (top[0] + w0, top[1]), (bot[0] + w1, bot[1]), (bot[0] - w1, bot[1]))
        p.polygon(-1, trapezoid, outfit.lower, PPP_ID["upper-legs"], material)
    if outfit.belt:
        half = torso.normal * p.cam.apparent_width(p.build.hip, 0.07)
        p.capsule(-0.5, torso.at(0.12) - half, torso.at(0.12) + half, 0.014, 0.014, BELT, PPP_TORSO,
                  p.wardrobe.accessories["belt"])


def _upper_garment(rng, p: _Person):
    """The upper garment, a coat over it (open at the front in frontal views), a scarf."""
    outfit, torso, wardrobe = p.outfit, p.torso, p.wardrobe
    p.polygon(0, torso.polygon(rng.uniform(-0.12, 0.05), 1.0, 0.006), outfit.upper, PPP_TORSO, wardrobe.upper)
    if outfit.coat:
        p.polygon(0, torso.polygon(rng.uniform(-0.8, -0.15), 1.0, 0.014, 0.04), LIP_ID["coat"], PPP_TORSO,
                  wardrobe.coat)
        if p.cam.cos > 0.6 and rng.random() < 0.6:
            gap = rng.uniform(0.01, 0.035) * p.cam.cos * torso.normal
            c0, c1 = torso.at(0.15), torso.at(0.97)
            p.polygon(0, (c0 - gap, c1 - gap, c1 + gap, c0 + gap), outfit.upper, PPP_TORSO, wardrobe.upper)
    if outfit.scarf:
        scarf, neck, normal = wardrobe.accessories["scarf"], torso.neck, torso.normal
        lift = 0.01 * torso.axis / torso.length
        p.capsule(0.5, neck - 0.055 * normal + lift, neck + 0.055 * normal + lift, 0.026, 0.026,
                  LIP_ID["scarf"], PPP_TORSO, scarf)
        if rng.random() < 0.6:
            tail = neck + rng.uniform(-0.03, 0.03) * normal
            p.capsule(0.5, tail, tail - 0.4 * torso.axis, 0.02, 0.018, LIP_ID["scarf"], PPP_TORSO, scarf)


def _head(rng, p: _Person, back: bool):
    """Neck, hair, face (turned with the view: none from the back), eyes, mouth, sunglasses, hat."""
    cam, outfit, wardrobe = p.cam, p.outfit, p.wardrobe
    centre = cam.project(p.body.head)
    up = cam.project(p.body.head + p.body.head_up) - centre
    up /= np.linalg.norm(up) + 1e-9
    across = np.array([-up[1], up[0]])  # the head's own sideways axis (image x for an upright head)
    rot = float(np.arctan2(up[0], -up[1]))
    ry, rx = 0.068 * p.build.head, 0.052 * p.build.head
    hair, face = LIP_ID["hair"], LIP_ID["face"]
    if outfit.long_hair:  # falls behind the back, or over it seen from behind
        hl = rng.uniform(0.1, 0.25)
        x, y = centre
        strands = ((x - 1.05 * rx, y), (x + 1.05 * rx, y), (x + 1.25 * rx, y + hl), (x - 1.25 * rx, y + hl))
        p.polygon(1.5 if back else -3, strands, hair, PPP_HEAD, wardrobe.hair)
    # LIP labels the neck as face; a back view shows no face, so from behind it is hair.
    p.capsule(1, p.torso.neck, centre, 0.026, 0.024, hair if back else face, PPP_HEAD, wardrobe.skin)
    if back:
        p.ellipse(1, centre - 0.08 * ry * up, 1.08 * rx, 1.06 * ry, rot, hair, PPP_HEAD, wardrobe.hair)
    else:
        p.ellipse(1, centre + 0.18 * ry * up, 1.1 * rx, 0.95 * ry, rot, hair, PPP_HEAD, wardrobe.hair)
        side = abs(cam.sin)  # 0: frontal, 1: profile
        facing = 1.0 if cam.sin >= 0 else -1.0
        fc = centre - 0.14 * ry * up + facing * 0.35 * rx * side * across
        p.ellipse(1, fc, rx * (1 - 0.3 * side), 0.86 * ry, rot, face, PPP_HEAD, wardrobe.skin)
        eye_c = fc + 0.12 * ry * up
        features = Material(jitter(rng, (50, 35, 30), 8), shading=0.0)
        eyes = [eye_c + e * 0.38 * rx * (1 - side) * across for e in (-1, 1)] if side < 0.7 \
            else [eye_c + facing * 0.3 * rx * across]
        for e in eyes:
            p.ellipse(1, e, 0.1 * rx, 0.07 * ry, rot, face, PPP_HEAD, features)
        mouth = fc - 0.45 * ry * up + facing * 0.25 * rx * side * across
        p.ellipse(1, mouth, 0.28 * rx * (1 - 0.5 * side), 0.05 * ry, rot, face, PPP_HEAD,
                  Material(jitter(rng, (150, 60, 60), 15), shading=0.0))
        if outfit.sunglasses:
            half = (0.8 - 0.5 * side) * rx
            gc = eye_c + facing * 0.3 * rx * side * across
            p.capsule(1.2, gc - half * across, gc + half * across, 0.17 * ry, 0.17 * ry, LIP_ID["sunglasses"],
                      PPP_HEAD, wardrobe.glasses)
    if outfit.hat:
        hat = wardrobe.accessories["hat"]
        p.ellipse(1.3, centre + 0.55 * ry * up, 1.12 * rx, 0.62 * ry, rot, LIP_ID["hat"], PPP_HEAD, hat)
        brim = centre + 0.3 * ry * up
        p.capsule(1.3, brim - 1.35 * rx * across, brim + 1.35 * rx * across, 0.012, 0.012, LIP_ID["hat"],
                  PPP_HEAD, hat)


def _arms(rng, p: _Person):
    """Skin, sleeves (the upper garment's or coat's label), gloves, in front of or behind the
    torso by depth; an (ATR) bag across the body."""
    cam, outfit, wardrobe, limb = p.cam, p.outfit, p.wardrobe, p.build.limb
    sleeve_lip = LIP_ID["coat"] if outfit.coat else outfit.upper
    sleeve_material = wardrobe.coat if outfit.coat else wardrobe.upper
    sleeve_t = max(outfit.sleeve, 0.9) if outfit.coat else outfit.sleeve
    for s in SIDES:
        shoulder, elbow, wrist, tip = p.body.arms[s]
        order = 2 + DEPTH_TO_ORDER * np.mean([cam.depth(elbow), cam.depth(wrist)])
        pts = [cam.project(q) for q in (shoulder, elbow, wrist, tip)]
        r = [0.037 * limb, 0.03 * limb, 0.024 * limb, 0.02 * limb]
        for i in range(3):
            p.capsule(order, pts[i], pts[i + 1], r[i], r[i + 1], sided("arm", s), PPP_ARMS[i], wardrobe.skin)
        extra = 0.014 if outfit.coat else 0.008
        for i, a, b, f in _cut_polyline(pts[:3], sleeve_t):
            p.capsule(order, a, b, r[i] + extra, r[i] + extra + f * (r[i + 1] - r[i]), sleeve_lip,
                      PPP_ARMS[i], sleeve_material)
        if outfit.gloves:
            g0 = pts[2] + 0.25 * (pts[1] - pts[2])
            p.capsule(order, g0, pts[3], r[2] + 0.006, r[3] + 0.008, LIP_ID["glove"], PPP_ID["lower-arms"],
                      wardrobe.accessories["glove"])
        if outfit.bag and s == LEFT:
            _bag(rng, p, order + 0.5)


def _bag(rng, p: _Person, order: float):
    """A bag at the left hip, its strap from the right shoulder: just in front of the left arm.
    ATR labels bags; PASCAL-Person-Part does not (background)."""
    cam, material = p.cam, p.wardrobe.accessories["bag"]
    strap0 = cam.project(p.body.arms[RIGHT][0])
    outward = cam.apparent_width(0.13, 0.06) * (1 if cam.cos >= 0 else -1)
    centre = cam.project(p.body.legs[LEFT][0]) + np.array([outward, -0.02])
    p.capsule(order, strap0, centre, 0.008, 0.008, BAG, PPP_ID["background"], material)
    bw, bh = rng.uniform(0.05, 0.09), rng.uniform(0.05, 0.09)
    x, y = centre
    p.polygon(order, ((x - bw, y - bh), (x + bw, y - bh), (x + bw, y + bh), (x - bw, y + bh)), BAG,
              PPP_ID["background"], material)


def person_shapes(rng, style: str = "lip", front_only: bool = False, pose: str | None = None,
                  yaw: float | None = None) -> tuple[list[PartShape], dict]:
    """Sample one person (pose, view, body build, outfit, colours) and return the shapes that
    draw them, back to front, plus facts about them: ``yaw``, ``pose``, ``back`` (a back view)
    and the image positions of ``pelvis``, ``neck`` and ``knees`` (their mean)."""
    pose = pose or str(rng.choice(POSES, p=POSE_P))
    theta = sample_yaw(rng, front_only) if yaw is None else yaw
    build = sample_build(rng)
    outfit = sample_outfit(rng, style)
    body = skeleton(sample_pose(rng, pose), build)
    cam = YawCamera(theta)
    wardrobe = sample_wardrobe(rng, outfit)
    person = _Person(cam, body, build, outfit, wardrobe, TorsoFrame(cam, body, build), shapes=[])
    back = cam.cos < -0.5  # turned more than 120 degrees away: the face is hidden
    _legs(person)
    _lower_garment(person)
    _upper_garment(rng, person)
    _head(rng, person, back)
    _arms(rng, person)
    shapes = sorted(person.shapes, key=lambda e: e.order)  # stable: within a part, insertion order holds
    info = {"yaw": theta, "pose": pose, "back": bool(back), "pelvis": person.torso.pelvis,
            "neck": person.torso.neck, "knees": np.mean([cam.project(body.legs[s][1]) for s in SIDES], axis=0)}
    return shapes, info
