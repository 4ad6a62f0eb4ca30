"""The person's body: a pose prior, a viewpoint (yaw), a body build, the posed 3-D skeleton, and
the orthographic camera that projects it into unit image coordinates (person height = 1).

Person coordinates are (lateral l: the person's own left +, forward f, up y), in person heights,
feet on the ground at y = 0. Poses and views follow what Section 2 says LIP shows: mostly
standing and walking people, some sitting, bending or with raised / crossed arms, seen from
every side, ~5.5% from the back.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LEFT, RIGHT = 1, -1
"""The person's own sides, as the lateral axis signs them."""
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
    """Joint angles (degrees) of one pose from the prior: per side (:data:`LEFT`, :data:`RIGHT`)
    ``arms[s] = [upper arm abduction, upper arm flexion, forearm abduction, forearm flexion]`` and
    ``legs[s] = [abduction, thigh flexion, shin flexion]``; the trunk's ``lean`` (forward) and
    ``tilt`` (sideways), and ``head_tilt``."""
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


@dataclass(frozen=True)
class Build:
    """Body proportions, in person heights (``limb`` and ``head`` scale the limbs' thickness and
    the head's size)."""

    shoulder: float          # half-width at the shoulders
    hip: float               # half-width at the hips
    limb: float
    head: float


def sample_build(rng) -> Build:
    return Build(shoulder=rng.uniform(0.095, 0.12), hip=rng.uniform(0.08, 0.1), limb=rng.uniform(0.85, 1.15),
                 head=rng.uniform(0.92, 1.1))


@dataclass(frozen=True)
class Skeleton:
    """3-D joints (l, f, y) of a posed body, feet on the ground; ``up`` and ``head_up`` are the
    trunk's and the head's unit axes."""

    pelvis: np.ndarray
    neck: np.ndarray
    head: np.ndarray
    up: np.ndarray
    head_up: np.ndarray
    arms: dict[int, tuple]   # side -> (shoulder, elbow, wrist, fingertip)
    legs: dict[int, tuple]   # side -> (hip, knee, ankle, toe)


def skeleton(pose: dict, build: Build) -> Skeleton:
    """The skeleton of a pose (:func:`sample_pose`) and build, lowered so the lowest ankle or toe
    is just above the ground (y = 0.03)."""
    lean, tilt = np.radians(pose["lean"]), np.radians(pose["tilt"])
    up = np.array([np.sin(tilt), np.sin(lean) * np.cos(tilt), np.cos(lean) * np.cos(tilt)])
    ht = np.radians(pose["head_tilt"])
    head_up = np.array([up[0] + np.sin(ht), up[1], up[2]])
    head_up /= np.linalg.norm(head_up)
    pelvis = np.array([0.0, 0.0, 0.53])
    neck = pelvis + 0.33 * up
    head = neck + 0.075 * head_up
    arms, legs = {}, {}
    for s in SIDES:
        au, pu, af, pf = pose["arms"][s]
        shoulder = pelvis + 0.30 * up + np.array([s * build.shoulder, 0, 0])
        elbow = shoulder + 0.17 * _limb_dir(au, pu, s)
        wrist = elbow + 0.15 * _limb_dir(af, pf, s)
        arms[s] = (shoulder, elbow, wrist, wrist + 0.07 * _limb_dir(af, pf, s))
        at, pt, ps = pose["legs"][s]
        hip = pelvis + np.array([s * 0.055, 0, -0.02])
        knee = hip + 0.245 * _limb_dir(at, pt, s)
        ankle = knee + 0.245 * _limb_dir(at * 0.3, ps, s)
        legs[s] = (hip, knee, ankle, ankle + np.array([0.0, 0.095, -0.03]))
    ground = min(min(legs[s][2][2], legs[s][3][2]) for s in SIDES) - 0.03

    def lower(p):
        return p - [0, 0, ground]

    return Skeleton(pelvis=lower(pelvis), neck=lower(neck), head=lower(head), up=up, head_up=head_up,
                    arms={s: tuple(map(lower, arms[s])) for s in SIDES},
                    legs={s: tuple(map(lower, legs[s])) for s in SIDES})


class YawCamera:
    """Orthographic camera at yaw ``theta`` (0: the person faces the camera, pi: seen from the
    back): image x = cos l + sin f, image y = -height, depth towards the camera
    z = -sin l + cos f (so a side view facing image-right shows the person's right side nearest,
    and a back view mirrors left and right)."""

    def __init__(self, theta: float):
        self.cos, self.sin = np.cos(theta), np.sin(theta)

    def project(self, p) -> np.ndarray:
        """Image position (x, y) of a 3-D point."""
        return np.array([self.cos * p[0] + self.sin * p[1], -p[2]])

    def depth(self, p) -> float:
        """Distance towards the camera (larger: nearer)."""
        return float(-self.sin * p[0] + self.cos * p[1])

    def apparent_width(self, lateral: float, depth: float) -> float:
        """Image width of a body section ``lateral`` wide and ``depth`` deep."""
        return abs(self.cos) * lateral + abs(self.sin) * depth
