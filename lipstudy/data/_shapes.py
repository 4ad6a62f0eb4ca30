"""Drawing primitives for the synthetic benchmark: shapes rasterised as pixel index arrays, and
materials (colour + texture + shading) evaluated only on those pixels.

Every shape returns ``(rr, cc, d)``: row and column indices of the covered pixels (clipped to the
canvas) and ``d``, each pixel's normalised distance from the shape's axis or centre (0 on the axis,
1 on the rim), which the material turns into cylinder-like shading. Coordinates are pixel centres
(x = column, y = row).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage import draw

_EMPTY = (np.zeros(0, np.intp), np.zeros(0, np.intp), np.zeros(0, np.float32))

# Thinner than this (in rendered pixels) a shape would vanish between pixel centres; small parts
# must survive downscaling, as they do in LIP's (anti-aliased) annotations.
MIN_RADIUS_PX = 0.55


def capsule(a, b, ra: float, rb: float, shape) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels within a tapered capsule from point ``a`` (radius ``ra``) to ``b`` (radius ``rb``).

    A limb segment: the set of points whose distance to the segment is at most the radius
    interpolated along it. Evaluated on the bounding box only.
    """
    h, w = shape
    ra, rb = max(ra, MIN_RADIUS_PX), max(rb, MIN_RADIUS_PX)
    r = max(ra, rb)
    x0 = int(np.floor(min(a[0], b[0]) - r)); x1 = int(np.ceil(max(a[0], b[0]) + r))
    y0 = int(np.floor(min(a[1], b[1]) - r)); y1 = int(np.ceil(max(a[1], b[1]) + r))
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w - 1), min(y1, h - 1)
    if x0 > x1 or y0 > y1:
        return _EMPTY
    ys, xs = np.mgrid[y0:y1 + 1, x0:x1 + 1]
    px = xs.astype(np.float32) - a[0]
    py = ys.astype(np.float32) - a[1]
    vx, vy = b[0] - a[0], b[1] - a[1]
    ll = vx * vx + vy * vy
    t = np.clip((px * vx + py * vy) / ll, 0.0, 1.0) if ll > 1e-9 else np.zeros_like(px)
    dist = np.hypot(px - t * vx, py - t * vy)
    rad = ra + (rb - ra) * t
    inside = dist <= rad
    return ys[inside], xs[inside], (dist[inside] / rad[inside]).astype(np.float32)


def ellipse(center, rx: float, ry: float, rotation: float, shape):
    """Pixels of a filled ellipse (``rotation`` in radians, counter-clockwise in the image)."""
    rx, ry = max(rx, MIN_RADIUS_PX), max(ry, MIN_RADIUS_PX)
    rr, cc = draw.ellipse(center[1], center[0], ry, rx, shape=shape, rotation=rotation)
    if rr.size == 0:
        return _EMPTY
    dy, dx = rr - center[1], cc - center[0]
    cs, sn = np.cos(rotation), np.sin(rotation)
    u = (dx * cs - dy * sn) / rx
    v = (dx * sn + dy * cs) / ry
    return rr, cc, np.sqrt(u * u + v * v).clip(0, 1).astype(np.float32)


def polygon(points, shape):
    """Pixels of a filled polygon given as ``[(x, y), ...]``; no shading axis (d = 0)."""
    pts = np.asarray(points, dtype=np.float64)
    rr, cc = draw.polygon(pts[:, 1], pts[:, 0], shape=shape)
    return rr, cc, np.zeros(rr.shape, np.float32)


# ---------------------------------------------------------------------------------------------
# Materials

PLAIN, STRIPES, CHECKS, DOTS, NOISE = range(5)


@dataclass(frozen=True)
class Material:
    """A surface: two colours and a pattern laid out in LIP-scale pixel units (so textures keep
    their size relative to the body whatever the rendering scale)."""

    color: tuple[float, float, float]
    color2: tuple[float, float, float] = (0.0, 0.0, 0.0)
    pattern: int = PLAIN
    period: float = 8.0
    angle: float = 0.0
    shading: float = 0.25  # darkening towards the rim of limbs and heads

    def fill(self, rr, cc, d, scale: float, offset=(0.0, 0.0)) -> np.ndarray:
        """RGB floats (0..255) for the pixels ``(rr, cc)``; ``d`` drives the shading."""
        c1 = np.asarray(self.color, np.float32)
        n = rr.shape[0]
        if self.pattern == PLAIN:
            rgb = np.broadcast_to(c1, (n, 3)).copy()
        else:
            # Pattern coordinates in LIP-scale pixels, anchored to the shape's frame.
            x = (cc / scale + offset[0]).astype(np.float32)
            y = (rr / scale + offset[1]).astype(np.float32)
            c2 = np.asarray(self.color2, np.float32)
            if self.pattern == STRIPES:
                s = x * np.cos(self.angle) + y * np.sin(self.angle)
                m = (np.floor(s / self.period) % 2).astype(bool)
            elif self.pattern == CHECKS:
                m = ((np.floor(x / self.period) + np.floor(y / self.period)) % 2).astype(bool)
            elif self.pattern == DOTS:
                p = self.period
                m = ((x % p) - p / 2) ** 2 + ((y % p) - p / 2) ** 2 < (0.3 * p) ** 2
            else:  # NOISE: smooth pseudo-random blotches from crossed sinusoids
                f = 2 * np.pi / self.period
                t = np.sin(f * x + 1.3 * np.sin(0.7 * f * y)) * np.sin(0.8 * f * y + self.angle)
                rgb = c1 + (c2 - c1) * (0.5 + 0.5 * t)[:, None]
                m = None
            if m is not None:
                rgb = np.where(m[:, None], c2, c1)
        if self.shading:
            rgb *= (1.0 - self.shading * d * d)[:, None]
        return rgb
