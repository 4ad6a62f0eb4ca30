"""Label ids the renderer paints with, by name, from the taxonomies in :mod:`lipstudy.labels`.

Every painted shape carries a LIP id and a PASCAL-Person-Part id (PPP labels limb *segments*, so
they cannot be looked up from LIP's per-garment ids afterwards); ATR labels are a lookup from the
LIP map. Belt and bag exist in ATR only: they are painted with ids beyond LIP's and mapped away.
"""
from __future__ import annotations

import numpy as np

from lipstudy.data.synth.pose import LEFT
from lipstudy.labels import ATR_CLASSES, ATR_TO_LIP, LIP_ID, LIP_NUM_CLASSES, PPP_CLASSES

PPP_ID: dict[str, int] = {name: i for i, name in enumerate(PPP_CLASSES)}
ATR_ID: dict[str, int] = {name: i for i, name in enumerate(ATR_CLASSES)}

BELT, BAG = LIP_NUM_CLASSES, LIP_NUM_CLASSES + 1
"""ATR's belt and bag, painted with ids beyond LIP's: not part of a LIP person (area, occlusion)."""


def lip_ids(*names: str) -> tuple[int, ...]:
    """LIP ids of the named classes, in the order given."""
    return tuple(LIP_ID[n] for n in names)


def sided(part: str, side: int) -> int:
    """LIP id of the person's own left or right ``part`` ("arm", "leg", "shoe")."""
    return LIP_ID[f"left-{part}" if side == LEFT else f"right-{part}"]


# The classes the crop types and their checks look for.
HEAD_IDS = lip_ids("hat", "hair", "sunglasses", "face")
UPPER_GARMENT_IDS = lip_ids("upper-clothes", "dress", "coat", "jumpsuits")
SHOE_IDS = lip_ids("left-shoe", "right-shoe")
LEG_AND_FOOT_IDS = lip_ids("socks", "left-leg", "right-leg", "left-shoe", "right-shoe")
"""What an upper-body crop must not show."""
LOWER_BODY_IDS = lip_ids("dress", "pants", "jumpsuits", "skirt", "left-leg", "right-leg", "left-shoe",
                         "right-shoe")
"""What a lower-body crop must show some of."""

ATR_LUT = np.zeros(256, np.uint8)
"""LIP id (and BELT / BAG) -> ATR id; LIP classes ATR lacks (gloves, socks, jumpsuits) become background."""
for _atr, _lip in ATR_TO_LIP.items():
    ATR_LUT[_lip] = _atr
ATR_LUT[LIP_ID["coat"]] = ATR_ID["upper-clothes"]  # ATR has no coat class
ATR_LUT[BELT], ATR_LUT[BAG] = ATR_ID["belt"], ATR_ID["bag"]
