"""Drawing primitives for the synthetic benchmark.

Shapes are painted back to front with PIL's ImageDraw into an *element index* map (each pixel
holds the index of the topmost shape covering it): one C call per shape, and painter's order
gives exact self-occlusion. Colours, textures and shading are then computed for the whole image
at once by :func:`compose`, looking each pixel's material up through its element index; label
maps come from the same index map through lookup tables, so image and labels always agree.

Coordinates are pixel centres (x = column, y = row).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from scipy.ndimage import distance_transform_edt

PLAIN, STRIPES, CHECKS, DOTS, NOISE, GRADIENT = range(6)

# Shapes thinner than this (rendered pixels) would vanish between pixel centres; small parts must
# survive downscaling, as they do in LIP's annotations.
MIN_RADIUS_PX = 0.6
_CIRCLE = np.stack([np.cos(np.linspace(0, 2 * np.pi, 20, endpoint=False)),
                    np.sin(np.linspace(0, 2 * np.pi, 20, endpoint=False))], 1)


@dataclass(frozen=True)
class Material:
    """A surface: two colours and a pattern laid out in LIP-scale pixel units (textures keep
    their size relative to the body whatever the rendering scale)."""

    color: tuple[float, float, float]
    color2: tuple[float, float, float] = (0.0, 0.0, 0.0)
    pattern: int = PLAIN
    period: float = 8.0
    angle: float = 0.0
    shading: float = 0.25  # darkening near the shape's outline (rounded limbs, folds)


class Painter:
    """Paints shapes, each with a new element index, into an ``int32`` index map (0 = nothing)."""

    def __init__(self, h: int, w: int):
        self.image = Image.new("I", (w, h), 0)
        self.draw = ImageDraw.Draw(self.image)
        self.count = 0

    def _next(self) -> int:
        self.count += 1
        return self.count

    def polygon(self, points) -> int:
        i = self._next()
        self.draw.polygon(np.asarray(points, np.float64).ravel().tolist(), fill=i, outline=i)
        return i

    def ellipse(self, center, rx: float, ry: float, rotation: float = 0.0) -> int:
        """A filled ellipse, rotated ``rotation`` radians (as a 20-gon)."""
        rx, ry = max(rx, MIN_RADIUS_PX), max(ry, MIN_RADIUS_PX)
        c, s = np.cos(rotation), np.sin(rotation)
        u = _CIRCLE * (rx, ry)
        pts = np.stack([u[:, 0] * c - u[:, 1] * s, u[:, 0] * s + u[:, 1] * c], 1) + center
        return self.polygon(pts)

    def capsule(self, a, b, ra: float, rb: float) -> int:
        """A tapered capsule (a limb segment) from ``a`` (radius ``ra``) to ``b`` (radius ``rb``)."""
        i = self._next()
        ra, rb = max(ra, MIN_RADIUS_PX), max(rb, MIN_RADIUS_PX)
        ax, ay, bx, by = float(a[0]), float(a[1]), float(b[0]), float(b[1])
        length = math.hypot(bx - ax, by - ay) + 1e-9
        nx, ny = (ay - by) / length, (bx - ax) / length
        quad = [(ax + ra * nx, ay + ra * ny), (bx + rb * nx, by + rb * ny),
                (bx - rb * nx, by - rb * ny), (ax - ra * nx, ay - ra * ny)]
        self.draw.polygon(quad, fill=i, outline=i)
        self.draw.ellipse((ax - ra, ay - ra, ax + ra, ay + ra), fill=i, outline=i)
        self.draw.ellipse((bx - rb, by - rb, bx + rb, by + rb), fill=i, outline=i)
        return i

    def indices(self) -> np.ndarray:
        return np.asarray(self.image, dtype=np.int32)


def compose(index: np.ndarray, materials: list[Material], scale: float, falloff: float = 6.0) -> np.ndarray:
    """RGB floats (0..255) for an element index map; ``materials[i]`` is element ``i``'s surface
    (``materials[0]`` the backdrop). Patterns are evaluated in LIP-scale pixels (``x / scale``);
    shading darkens pixels within ~``falloff`` LIP-scale pixels of an element boundary."""
    h, w = index.shape
    m = len(materials)
    c1 = np.array([mt.color for mt in materials], np.float32)
    c2 = np.array([mt.color2 for mt in materials], np.float32)
    pat = np.array([mt.pattern for mt in materials], np.int8)[index]
    per = np.array([mt.period for mt in materials], np.float32)[index]
    ang = np.array([mt.angle for mt in materials], np.float32)[index]
    sh = np.array([mt.shading for mt in materials], np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    x, y = xx / scale, yy / scale
    # Mixing weight of colour2 per pixel, by pattern.
    s = (x * np.cos(ang) + y * np.sin(ang)) / per
    used = {mt.pattern for mt in materials}
    mix = np.zeros((h, w), np.float32)
    if STRIPES in used:
        mix = np.where(pat == STRIPES, np.floor(s) % 2, mix)
    if CHECKS in used:
        mix = np.where(pat == CHECKS, (np.floor(x / per) + np.floor(y / per)) % 2, mix)
    if DOTS in used:
        dots = ((x % per) - per / 2) ** 2 + ((y % per) - per / 2) ** 2 < (0.3 * per) ** 2
        mix = np.where(pat == DOTS, dots, mix)
    if NOISE in used:
        f = 2 * np.pi / per
        noise = 0.5 + 0.5 * np.sin(f * x + 1.3 * np.sin(0.7 * f * y)) * np.sin(0.8 * f * y + ang)
        mix = np.where(pat == NOISE, noise, mix)
    if GRADIENT in used:
        mix = np.where(pat == GRADIENT, yy / max(h - 1, 1), mix)
    rgb = c1[index] + (c2[index] - c1[index]) * mix[..., None]
    if sh.any() and m > 1:
        edge = np.zeros((h, w), bool)
        edge[:, 1:] |= index[:, 1:] != index[:, :-1]
        edge[1:, :] |= index[1:, :] != index[:-1, :]
        dist = distance_transform_edt(~edge) if edge.any() else np.full((h, w), np.inf)
        rgb *= (1 - sh[index] * np.exp(-dist / max(falloff * scale, 0.5)).astype(np.float32))[..., None]
    return rgb
