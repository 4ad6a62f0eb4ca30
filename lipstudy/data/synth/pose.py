"""The person's body: a pose prior, a viewpoint (yaw), the posed 3-D skeleton, and the
orthographic camera that projects it into unit image coordinates (person height = 1)."""
from __future__ import annotations

import numpy as np

LEFT, RIGHT = 1, -1
"""The person's own sides, as the skeleton's lateral axis signs them (+1: the person's left)."""
SIDES = (LEFT, RIGHT)

POSES = ("standing", "walking", "sitting", "arms_raised", "arms_crossed", "hands_on_hips", "bending")
POSE_P = (0.30, 0.22, 0.10, 0.10, 0.09, 0.10, 0.09)


def _limb_dir(alpha: float, phi: float, side: int) -> np.ndarray:
    """Unit direction in person coordinates (lateral l: person's left +, forward f, up y) of a
    limb abducted ``alpha`` degrees outward (negative: across the body) and flexed ``phi``
    degrees forward from hanging straight down."""
    a, p = np.radians(alpha), np.radians(phi)
    v = np.array([side * np.sin(a), np.sin(p) * np.cos(a), -np.cos(p) * np.cos(a)])
    return v / np.linalg.norm(v)


def sample_pose(rng, pose: str) -> dict:
    """Joint angles of one pose from the prior, per side (:data:`LEFT`, :data:`RIGHT`)."""
    arms = {s: [rng.uniform(4, 18), rng.normal(0, 8), 0.0, 0.0] for s in SIDES}
    for s in SIDES:
        arms[s][2] = arms[s][0] + rng.uniform(-5, 5)
        arms[s][3] = arms[s][1] + rng.uniform(0, 25)
    legs = {s: [rng.uniform(1, 7), rng.normal(0, 4), 0.0] for s in SIDES}
    for s in SIDES:
        legs[s][2] = legs[s][1] - rng.uniform(0, 8)
    lean, tilt = rng.normal(0, 4), rng.normal(0, 3)
    if pose == "walking":
        swing = rng.uniform(12, 32) * rng.choice([-1, 1])
        for s in SIDES:
            arms[s][1] = s * swing
            arms[s][3] = s * swing + rng.uniform(10, 35)
            legs[s][1] = -s * swing * 0.9
            legs[s][2] = legs[s][1] - rng.uniform(5, 30)
    elif pose == "sitting":
        for s in SIDES:
            legs[s] = [rng.uniform(3, 15), rng.uniform(70, 95), rng.uniform(-10, 15)]
            arms[s] = [rng.uniform(3, 15), rng.uniform(5, 30), rng.uniform(-10, 10), rng.uniform(40, 80)]
    elif pose == "arms_raised":
        for s in (SIDES if rng.random() < 0.5 else (rng.choice([LEFT, RIGHT]),)):
            a = rng.uniform(100, 165)
            arms[s] = [a, rng.normal(0, 10), a + rng.uniform(-25, 20), rng.normal(0, 10)]
    elif pose == "arms_crossed":
        for s in SIDES:
            arms[s] = [rng.uniform(0, 12), rng.uniform(15, 35), rng.uniform(-95, -70), rng.uniform(10, 40)]
    elif pose == "hands_on_hips":
        for s in SIDES:
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


def skeleton(pose: dict, build: dict) -> dict:
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
    for s in SIDES:
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
    ground = min(min(j[("leg", s)][2][2], j[("leg", s)][3][2]) for s in SIDES) - 0.03
    for k, v in j.items():
        if k in ("up", "head_up"):
            continue
        j[k] = tuple(p - [0, 0, ground] for p in v) if isinstance(v, tuple) else v - [0, 0, ground]
    return j


class YawCamera:
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
