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
``SeedSequence([seed, style, split, index])``: output is byte-identical whatever the number of
workers.

Styles: ``lip`` (the default, LIP layout), ``ppp`` (the same figures labelled with
PASCAL-Person-Part's 7 classes, whole limb segments including clothing) and ``atr`` (ATR's 18
classes incl. belt and bag; upright, front-view, full-body people in a fixed 400x600 frame on
plain outdoor backgrounds: a real domain shift for Table 6's cross-dataset column).

Modules, in the order an image is made: :mod:`.pose` (pose prior, yaw, build, 3-D skeleton,
camera), :mod:`.materials` (skin, hair, garment and background surfaces), :mod:`.label_ids` (the
LIP / PPP / ATR ids painted, by name), :mod:`.person` (outfit and the person's painted shapes),
:mod:`.crops` (crop types, crop window, the attributes and their checks), :mod:`.scene` (one
image: backdrop, other people, occluders, finish), :mod:`.shapes` (the vectorised painter and
compositor) and :mod:`.dataset` (the files on disk, ``lipstudy synth``). The package re-exports
the entry points its callers use.
"""
from __future__ import annotations

from lipstudy.data.attributes import ATTRIBUTES
from lipstudy.data.synth.dataset import (
    CSV_COLUMNS,
    GENERATOR_VERSION,
    SPLITS,
    STYLES,
    gallery,
    generate,
    image_id,
    main,
    read_attributes,
)
from lipstudy.data.synth.scene import LIP_FULL_SIDE, render_scene

__all__ = ["ATTRIBUTES", "CSV_COLUMNS", "GENERATOR_VERSION", "LIP_FULL_SIDE", "SPLITS", "STYLES",
           "gallery", "generate", "image_id", "main", "read_attributes", "render_scene"]
