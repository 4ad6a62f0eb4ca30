"""One person as a list of painted shapes: outfit, colours, and the legs, garments, head and arms
drawn from the projected skeleton, in painting (depth) order."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lipstudy.data.synth.materials import garment_material, hair_material, jitter, skin_material
from lipstudy.data.synth.label_ids import BAG, BELT, LIP_ID, PPP_ID, sided
from lipstudy.data.synth.pose import LEFT, POSE_P, POSES, SIDES, YawCamera, sample_pose, sample_yaw, skeleton
from lipstudy.data.synth.shapes import Material

_K_DEPTH = 40.0              # depth -> painting order; limbs move in front of / behind the torso
TROUSERS = (LIP_ID["pants"], LIP_ID["jumpsuits"])   # lower garments with legs
SKIRTS = (LIP_ID["dress"], LIP_ID["skirt"])
# PASCAL-Person-Part labels limb segments: thigh / shin, upper arm / forearm (the hand counts as
# forearm); the whole head is one class.
PPP_LEGS = (PPP_ID["upper-legs"], PPP_ID["lower-legs"])
PPP_ARMS = (PPP_ID["upper-arms"], PPP_ID["lower-arms"], PPP_ID["lower-arms"])
PPP_HEAD = PPP_ID["head"]


@dataclass(frozen=True)
class PartShape:
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
                    yaw: float | None = None) -> tuple[list[PartShape], dict]:
    """Sample one person (pose, view, body build, outfit, colours) and return the elements that
    draw them, plus facts about them (yaw, pose, key points in unit coordinates)."""
    pose = pose or str(rng.choice(POSES, p=POSE_P))
    theta = sample_yaw(rng, front_only) if yaw is None else yaw
    build = {"shoulder": rng.uniform(0.095, 0.12), "hip": rng.uniform(0.08, 0.1),
             "limb": rng.uniform(0.85, 1.15), "head": rng.uniform(0.92, 1.1)}
    outfit = sample_outfit(rng, style)
    j = skeleton(sample_pose(rng, pose), build)
    cam = YawCamera(theta)
    skin, hair = skin_material(rng), hair_material(rng)
    up_mat, low_mat = garment_material(rng), garment_material(rng)
    if outfit.upper == outfit.lower:
        low_mat = up_mat
    coat_mat, shoe_mat = garment_material(rng), garment_material(rng, dark=rng.random() < 0.6)
    wanted = {"hat": outfit.hat, "scarf": outfit.scarf, "glove": outfit.gloves, "sock": outfit.socks > 0,
              "belt": outfit.belt, "bag": outfit.bag}
    acc = {k: garment_material(rng) for k, on in wanted.items() if on}
    glasses = Material(jitter(rng, (25, 25, 30), 10), shading=0.1)
    els: list[PartShape] = []
    back = cam.c < -0.5
    facing = 1.0 if cam.s >= 0 else -1.0

    def add(key, kind, geom, lip, ppp, mat):
        els.append(PartShape(float(key), kind, geom, lip, ppp, mat))

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
    for s in SIDES:
        hip, kn, an, toe = j[("leg", s)]
        key = -2 + np.clip(_K_DEPTH * cam.z(kn), -0.9, 0.9)
        pts = [cam.xy(p) for p in (hip, kn, an)]
        r = [0.06 * build["limb"], 0.045 * build["limb"], 0.032 * build["limb"]]
        for i in range(2):
            add(key, "capsule", (tuple(pts[i]), tuple(pts[i + 1]), r[i], r[i + 1]), sided("leg", s), PPP_LEGS[i], skin)
        if outfit.socks:
            a = pts[2] + outfit.socks * (pts[1] - pts[2])
            add(key, "capsule", (tuple(a), tuple(pts[2]), r[2] + 0.005, r[2] + 0.005), LIP_ID["socks"],
                PPP_ID["lower-legs"], acc["sock"])
        if outfit.lower in TROUSERS:
            for i, a, b, f in _chain(pts, outfit.leg_cover):
                add(key, "capsule", (tuple(a), tuple(b), r[i] + 0.012, r[i] + 0.012 + f * (r[i + 1] - r[i])),
                    outfit.lower, PPP_LEGS[i], low_mat)
        add(key, "capsule", (tuple(cam.xy(an + [0, -0.01, 0])), tuple(cam.xy(toe)), 0.033, 0.028),
            sided("shoe", s), PPP_ID["lower-legs"], shoe_mat)

    # Lower garment over the pelvis, skirt / dress below it.
    add(-1, "polygon", torso_poly(-0.25, 0.2, 0.004), outfit.lower, PPP_ID["torso"], low_mat)
    if outfit.lower in SKIRTS:
        top = P + 0.1 * axis
        w0 = cam.width(hipw + 0.015, 0.085)
        w1 = w0 * (1.2 + 0.6 * outfit.skirt_len)
        bot = top + np.array([0.0, outfit.skirt_len + 0.1])
        add(-1, "polygon", ((top[0] - w0, top[1]), (top[0] + w0, top[1]), (bot[0] + w1, bot[1]),
                            (bot[0] - w1, bot[1])), outfit.lower, PPP_ID["upper-legs"], low_mat)
    if outfit.belt:
        a, b = P + 0.12 * axis - nrm * cam.width(hipw, 0.07), P + 0.12 * axis + nrm * cam.width(hipw, 0.07)
        add(-0.5, "capsule", (tuple(a), tuple(b), 0.014, 0.014), BELT, PPP_ID["torso"], acc["belt"])

    # Upper garment, coat (open at the front in frontal views), scarf.
    add(0, "polygon", torso_poly(rng.uniform(-0.12, 0.05), 1.0, 0.006), outfit.upper, PPP_ID["torso"], up_mat)
    if outfit.coat:
        add(0, "polygon", torso_poly(rng.uniform(-0.8, -0.15), 1.0, 0.014, 0.04), LIP_ID["coat"], PPP_ID["torso"],
            coat_mat)
        if cam.c > 0.6 and rng.random() < 0.6:
            gap = rng.uniform(0.01, 0.035) * cam.c
            c0, c1 = P + 0.15 * axis, P + 0.97 * axis
            add(0, "polygon", (tuple(c0 - gap * nrm), tuple(c1 - gap * nrm), tuple(c1 + gap * nrm),
                               tuple(c0 + gap * nrm)), outfit.upper, PPP_ID["torso"], up_mat)
    if outfit.scarf:
        a, b = N - 0.055 * nrm + 0.01 * axis / alen, N + 0.055 * nrm + 0.01 * axis / alen
        add(0.5, "capsule", (tuple(a), tuple(b), 0.026, 0.026), LIP_ID["scarf"], PPP_ID["torso"], acc["scarf"])
        if rng.random() < 0.6:
            tail0 = N + rng.uniform(-0.03, 0.03) * nrm
            add(0.5, "capsule", (tuple(tail0), tuple(tail0 - 0.4 * axis), 0.02, 0.018), LIP_ID["scarf"], PPP_ID["torso"],
                acc["scarf"])

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
                                  (H[0] + 1.25 * rx, H[1] + hl), (H[0] - 1.25 * rx, H[1] + hl)), LIP_ID["hair"], PPP_HEAD, hair)
    add(1, "capsule", (tuple(N), tuple(H), 0.026, 0.024), LIP_ID["hair" if back else "face"], PPP_HEAD, skin)
    ortho = np.array([-hu[1], hu[0]])  # the head's own sideways axis (image x for an upright head)
    if back:
        add(1, "ellipse", (tuple(H - 0.08 * ry * hu), 1.08 * rx, 1.06 * ry, rot), LIP_ID["hair"], PPP_HEAD, hair)
    else:
        add(1, "ellipse", (tuple(H + 0.18 * ry * hu), 1.1 * rx, 0.95 * ry, rot), LIP_ID["hair"], PPP_HEAD, hair)
        side = abs(cam.s)
        fc = H - 0.14 * ry * hu + facing * 0.35 * rx * side * ortho
        add(1, "ellipse", (tuple(fc), rx * (1 - 0.3 * side), 0.86 * ry, rot), LIP_ID["face"], PPP_HEAD, skin)
        eye_c = fc + 0.12 * ry * hu
        feat = Material(jitter(rng, (50, 35, 30), 8), shading=0.0)
        eyes = [eye_c + e * 0.38 * rx * (1 - side) * ortho for e in (-1, 1)] if side < 0.7 \
            else [eye_c + facing * 0.3 * rx * ortho]
        for e in eyes:
            add(1, "ellipse", (tuple(e), 0.1 * rx, 0.07 * ry, rot), LIP_ID["face"], PPP_HEAD, feat)
        mouth = fc - 0.45 * ry * hu + facing * 0.25 * rx * side * ortho
        add(1, "ellipse", (tuple(mouth), 0.28 * rx * (1 - 0.5 * side), 0.05 * ry, rot), LIP_ID["face"], PPP_HEAD,
            Material(jitter(rng, (150, 60, 60), 15), shading=0.0))
        if outfit.sunglasses:
            half = (0.8 - 0.5 * side) * rx
            gc = eye_c + facing * 0.3 * rx * side * ortho
            add(1.2, "capsule", (tuple(gc - half * ortho), tuple(gc + half * ortho), 0.17 * ry, 0.17 * ry),
                LIP_ID["sunglasses"], PPP_HEAD, glasses)
    if outfit.hat:
        add(1.3, "ellipse", (tuple(H + 0.55 * ry * hu), 1.12 * rx, 0.62 * ry, rot), LIP_ID["hat"], PPP_HEAD, acc["hat"])
        brim = H + 0.3 * ry * hu
        add(1.3, "capsule", (tuple(brim - 1.35 * rx * ortho), tuple(brim + 1.35 * rx * ortho), 0.012, 0.012),
            LIP_ID["hat"], PPP_HEAD, acc["hat"])

    # Arms: skin, sleeves (the garment's label), gloves; in front of or behind the torso by depth.
    sleeve_lbl = LIP_ID["coat"] if outfit.coat else outfit.upper
    sleeve_mat = coat_mat if outfit.coat else up_mat
    sleeve_t = max(outfit.sleeve, 0.9) if outfit.coat else outfit.sleeve
    for s in SIDES:
        sh, el, wr, tip = j[("arm", s)]
        key = 2 + _K_DEPTH * np.mean([cam.z(el), cam.z(wr)])
        pts = [cam.xy(p) for p in (sh, el, wr, tip)]
        r = [0.037 * build["limb"], 0.03 * build["limb"], 0.024 * build["limb"], 0.02 * build["limb"]]
        for i in range(3):
            add(key, "capsule", (tuple(pts[i]), tuple(pts[i + 1]), r[i], r[i + 1]), sided("arm", s), PPP_ARMS[i], skin)
        extra = 0.014 if outfit.coat else 0.008
        for i, a, b, f in _chain(pts[:3], sleeve_t):
            add(key, "capsule", (tuple(a), tuple(b), r[i] + extra, r[i] + extra + f * (r[i + 1] - r[i])),
                sleeve_lbl, PPP_ARMS[i], sleeve_mat)
        if outfit.gloves:
            g0 = pts[2] + 0.25 * (pts[1] - pts[2])
            add(key, "capsule", (tuple(g0), tuple(pts[3]), r[2] + 0.006, r[3] + 0.008), LIP_ID["glove"],
                PPP_ID["lower-arms"], acc["glove"])
        if outfit.bag and s == LEFT:
            strap0 = cam.xy(j[("arm", -1)][0])
            bag_c = cam.xy(j[("leg", 1)][0]) + np.array([cam.width(0.13, 0.06) * (1 if cam.c >= 0 else -1), -0.02])
            add(key + 0.5, "capsule", (tuple(strap0), tuple(bag_c), 0.008, 0.008), BAG, PPP_ID["background"], acc["bag"])
            bw, bh = rng.uniform(0.05, 0.09), rng.uniform(0.05, 0.09)
            add(key + 0.5, "polygon", ((bag_c[0] - bw, bag_c[1] - bh), (bag_c[0] + bw, bag_c[1] - bh),
                                       (bag_c[0] + bw, bag_c[1] + bh), (bag_c[0] - bw, bag_c[1] + bh)),
                BAG, PPP_ID["background"], acc["bag"])

    els.sort(key=lambda e: e.key)  # stable: within a component, insertion order holds
    info = {"yaw": theta, "pose": pose, "back": bool(back), "pelvis": P, "neck": N,
            "knees": np.mean([cam.xy(j[("leg", s)][1]) for s in SIDES], axis=0)}
    return els, info
