"""Surfaces of the synthetic benchmark: skin and hair tones, garment colours and patterns, and the
samplers that draw them. Background clutter and occluders draw from the same samplers as people,
so that colour and texture alone cannot tell a person from the background."""
from __future__ import annotations

import colorsys

import numpy as np

from lipstudy.data.synth import shapes as shp
from lipstudy.data.synth.shapes import Material

SKIN_TONES = np.array([(255, 224, 196), (241, 194, 160), (224, 172, 130), (198, 134, 98),
                       (161, 102, 72), (120, 76, 52), (88, 56, 40)], np.float32)
HAIR_TONES = np.array([(20, 18, 18), (45, 32, 24), (85, 58, 36), (140, 100, 58), (205, 175, 115),
                       (150, 150, 150), (120, 52, 30)], np.float32)
COMMON_COLOURS = np.array([(20, 20, 24), (235, 235, 235), (50, 70, 120), (120, 120, 125),
                           (90, 60, 40), (160, 30, 40), (30, 60, 40), (200, 180, 150)], np.float32)


_PATTERN_CDF = np.cumsum([0.45, 0.15, 0.1, 0.1])  # plain, stripes, checks, dots; else noise


def hsv_colour(rng) -> np.ndarray:
    """A random RGB colour (0..255), at least slightly saturated, never black."""
    h, sat, v = rng.random(3)
    return 255.0 * np.array(colorsys.hsv_to_rgb(h, 0.1 + 0.85 * sat, 0.12 + 0.86 * v))


def jitter(rng, c, amount=18.0) -> tuple:
    """``c`` with Gaussian noise per channel, clipped to 0..255."""
    n = rng.normal(0, amount, 3)
    return tuple(min(255.0, max(0.0, float(c[i]) + n[i])) for i in range(3))


def garment_material(rng, dark=False) -> Material:
    """A cloth: a common or random colour, a pattern (plain, stripes, checks, dots, noise)."""
    u = rng.random(5)
    c1 = COMMON_COLOURS[int(u[0] * len(COMMON_COLOURS))] if u[1] < 0.4 else hsv_colour(rng)
    if dark:
        c1 = c1 * (0.2 + 0.4 * u[2])
    pattern = int(np.searchsorted(_PATTERN_CDF, u[3], side="right"))
    c2 = hsv_colour(rng) if u[4] < 0.5 else np.asarray(c1) * rng.uniform(0.5, 0.85)
    angle = (0.0, np.pi / 2, np.pi / 4, rng.uniform(0, np.pi))[int(rng.integers(4))]
    return Material(jitter(rng, c1), jitter(rng, c2), pattern, float(rng.uniform(3, 14)),
                    float(angle), float(rng.uniform(0.1, 0.35)))


def skin_material(rng) -> Material:
    c = jitter(rng, SKIN_TONES[rng.integers(len(SKIN_TONES))], 10)
    return Material(c, tuple(0.92 * np.asarray(c)), shp.NOISE, float(rng.uniform(6, 16)), 0.0,
                    float(rng.uniform(0.15, 0.4)))


def hair_material(rng) -> Material:
    c = jitter(rng, HAIR_TONES[rng.integers(len(HAIR_TONES))], 10)
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
    return Material(jitter(rng, rng.uniform(40, 220) * np.ones(3), 25), shading=0.0)


def backdrop_material(rng, outdoor: bool) -> Material:
    """The backdrop: a vertical gradient between two random colours (under LIP's clutter)."""
    if outdoor:  # ATR-like: a pale sky fading into a plain ground
        sky = np.array([rng.uniform(150, 220), rng.uniform(180, 230), 255.0]) * rng.uniform(0.8, 1.0)
        ground = np.array([rng.uniform(90, 170)] * 3) * np.array([1.0, rng.uniform(0.9, 1.1), rng.uniform(0.7, 1.0)])
        return Material(tuple(sky), tuple(ground), shp.GRADIENT, shading=0.0)
    return Material(tuple(hsv_colour(rng)), tuple(hsv_colour(rng)), shp.GRADIENT, shading=0.0)
