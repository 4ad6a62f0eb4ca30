"""The nine self-supervised joints of paper Section 4.2, their heatmaps, and the joint structure loss.

A joint is the centre (mean pixel coordinate) of a merged region of the parsing map:
head = {hat, hair, sunglasses, face}, upper body = {upper-clothes, coat, scarf}, lower body =
{pants, skirt}, and the left/right arm, leg and shoe alone (``labels.JOINT_GROUPS``). Glove,
dress, socks and jumpsuits feed no joint. Joints are computed from the ground truth and from the
predicted parsing alike, so no pose annotation is needed ("self-supervised").

Following the released Caffe code (github Engineering-Course/LIP_SSL), heatmaps are computed on
the label map subsampled by 8 (every 8th pixel: 41x41 for a 321 crop) with Gaussians of sigma 1
grid pixel, and a joint absent from a map gives an all-zero heatmap.

Coordinates are ``(x, y)`` = (column, row) in pixels of the map they were computed on.
"""
from __future__ import annotations

import numpy as np
import torch

from .labels import IGNORE_INDEX, JOINT_GROUPS, JOINT_NAMES, LIP_PALETTE

NUM_JOINTS = len(JOINT_NAMES)
CONVENTIONS = ("paper", "released")

# Bones of the skeleton drawn in Fig. 7, as pairs of joint indices into JOINT_NAMES.
SKELETON: tuple[tuple[int, int], ...] = (
    (0, 1),          # head - upper body
    (1, 3), (1, 4),  # upper body - arms
    (1, 2),          # upper body - lower body
    (2, 5), (2, 6),  # lower body - legs
    (5, 7), (6, 8),  # legs - shoes
)

# One colour per joint, taken from the LIP colour of a class of its region (face, upper-clothes,
# pants, then the arms, legs and shoes themselves) so joints read against the parsing maps.
JOINT_COLORS = LIP_PALETTE[[13, 5, 9, 14, 15, 16, 17, 18, 19]]


def _joint_lut(device) -> torch.Tensor:
    """256-entry table: label id -> joint index 0..8, or NUM_JOINTS for "feeds no joint"."""
    lut = torch.full((256,), NUM_JOINTS, dtype=torch.long)
    for j, name in enumerate(JOINT_NAMES):
        lut[list(JOINT_GROUPS[name])] = j
    lut[IGNORE_INDEX] = NUM_JOINTS
    return lut.to(device)


def _as_label_batch(labels) -> tuple[torch.Tensor, bool]:
    """Accept a torch or numpy label map ``[H,W]`` or batch ``[B,H,W]``; return ``([B,H,W], was_single)``."""
    if isinstance(labels, np.ndarray):
        labels = torch.from_numpy(np.ascontiguousarray(labels))
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"label maps must be a torch tensor or numpy array, got {type(labels).__name__}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.is_complex():
        raise TypeError(f"label maps must hold integer ids, got dtype {labels.dtype}")
    if labels.dim() not in (2, 3):
        raise ValueError(f"label maps must be [H,W] or [B,H,W], got shape {tuple(labels.shape)}")
    if labels.numel():
        lo, hi = torch.stack(labels.aminmax()).tolist()  # one device sync
        if lo < 0 or hi > 255:
            raise ValueError(f"label ids must lie in 0..255, got values in {lo}..{hi}")
    single = labels.dim() == 2
    return (labels[None] if single else labels), single


def joint_centers(labels) -> tuple[torch.Tensor, torch.Tensor]:
    """The nine joints of a parsing map or a batch of them (paper Section 4.2).

    ``labels``: integer ids ``[B,H,W]`` or ``[H,W]`` (torch on any device, or numpy). Ignore
    pixels (255) and labels outside the joint groups count for nothing.

    Returns ``(coords, present)``: ``coords`` float32 ``[B,9,2]`` as ``(x, y)`` = mean column and
    mean row of the joint's region; ``present`` bool ``[B,9]``. An absent joint has coords
    ``(0, 0)`` and ``present`` False. A single ``[H,W]`` map gives ``[9,2]`` and ``[9]``.

    One pass over the whole batch: the pixel -> (image, joint) bin index is built with a lookup
    table, and counts and coordinate sums are accumulated per bin in exact integer arithmetic
    (float32 sums of coordinates lose precision past 2^24, i.e. at a few hundred pixels squared).
    """
    labels, single = _as_label_batch(labels)
    coords, present = _centers(labels)
    if single:
        return coords[0], present[0]
    return coords, present


def _centers(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`joint_centers` of a validated ``[B,H,W]`` batch."""
    b, h, w = labels.shape
    nbins = NUM_JOINTS + 1  # the last bin collects pixels that feed no joint
    joint = _joint_lut(labels.device)[labels.long()]  # [B,H,W]
    bins = (joint + nbins * torch.arange(b, device=labels.device).view(b, 1, 1)).reshape(-1)
    ys = torch.arange(h, device=labels.device).view(1, h, 1).expand(b, h, w).reshape(-1)
    xs = torch.arange(w, device=labels.device).view(1, 1, w).expand(b, h, w).reshape(-1)
    count = torch.bincount(bins, minlength=b * nbins)
    sum_x = torch.zeros(b * nbins, dtype=torch.long, device=labels.device).scatter_add_(0, bins, xs)
    sum_y = torch.zeros(b * nbins, dtype=torch.long, device=labels.device).scatter_add_(0, bins, ys)
    count, sum_x, sum_y = (t.view(b, nbins)[:, :NUM_JOINTS] for t in (count, sum_x, sum_y))
    present = count > 0
    denom = count.clamp(min=1).to(torch.float64)
    coords = torch.stack([sum_x / denom, sum_y / denom], dim=-1).to(torch.float32)
    return coords, present


def gaussian_heatmaps(coords: torch.Tensor, present: torch.Tensor, height: int, width: int,
                      sigma: float = 1.0) -> torch.Tensor:
    """Heatmaps ``exp(-d^2 / (2 sigma^2))`` on a ``height x width`` grid, one per joint.

    ``coords [B,J,2]`` (x, y) in grid pixels, ``present [B,J]``; absent joints give zero maps
    (paper Section 4.2: "for the joints missed in the image, we simply replace the heatmaps with
    maps filled with zeros"). Returns float32 ``[B,J,height,width]``; the peak is 1 at a joint
    that lies on a grid point.
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    dev = coords.device
    gx = torch.arange(width, device=dev, dtype=torch.float32).view(1, 1, 1, width)
    gy = torch.arange(height, device=dev, dtype=torch.float32).view(1, 1, height, 1)
    cx = coords[..., 0, None, None].float()
    cy = coords[..., 1, None, None].float()
    d2 = (gx - cx) ** 2 + (gy - cy) ** 2
    return torch.exp(d2 / (-2.0 * sigma * sigma)) * present[..., None, None]


def joint_heatmaps(labels, stride: int = 8, sigma: float = 1.0) -> torch.Tensor:
    """Joint heatmaps of a parsing map, as the released code computes them.

    The map is subsampled by taking every ``stride``-th pixel (nearest, starting at pixel 0, so
    ``h = ceil(H / stride)``: 41 for a 321 crop and stride 8), the nine joints are the region
    centres on that grid, and each heatmap is a Gaussian of ``sigma`` grid pixels there. Returns
    float32 ``[B,9,h,w]`` (``[9,h,w]`` for a single ``[H,W]`` map); absent joints are zero maps.
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    labels, single = _as_label_batch(labels)
    maps = _heatmaps(labels[:, ::stride, ::stride], sigma)
    return maps[0] if single else maps


def _heatmaps(small: torch.Tensor, sigma: float) -> torch.Tensor:
    """Heatmaps of a validated, already subsampled ``[B,h,w]`` batch."""
    coords, present = _centers(small)
    return gaussian_heatmaps(coords, present, small.shape[1], small.shape[2], sigma)


def joint_structure_loss(pred_labels, gt_labels, stride: int = 8, sigma: float = 1.0,
                         convention: str = "paper") -> torch.Tensor:
    """Per-image joint structure loss between predicted and ground-truth parsing maps -> ``[B]``.

    ``convention="paper"`` is Eq. 1, ``L_joint = 1/(2N) sum_i ||c_i^p - c_i^gt||_2^2`` with
    ``c_i`` the heatmap of joint ``i`` and ``N = 9`` (the paper lets N vary with the visible
    body; a joint missing from both maps has two zero heatmaps and adds nothing, so we keep
    N = 9 fixed).
    ``convention="released"`` is the released Caffe code's value, which has no 1/N:
    ``0.05 * 1/2 * sum_i ||c_i^p - c_i^gt||^2`` (Caffe's Euclidean loss, half the sum of squares at batch
    size 1, times 0.05).
    The two differ only by a constant factor (1/18 vs 1/40).

    Both maps are integer label maps of the same shape (``[B,H,W]`` or ``[H,W]``); the loss has
    no gradient (it is a function of label maps).
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    pred, gt, single = _label_pair(pred_labels, gt_labels, stride)
    # Both maps go through one joint pass: subsample first, then one batch of 2B small maps.
    small = torch.cat([pred, gt])
    maps = _heatmaps(small, sigma)
    hp, hg = maps[: len(pred)], maps[len(pred):]
    sq = ((hp - hg) ** 2).sum(dim=(-3, -2, -1))
    sq = sq[0] if single else sq
    if convention == "paper":
        return sq / (2.0 * NUM_JOINTS)
    return 0.05 * 0.5 * sq


def _label_pair(pred_labels, gt_labels, stride: int):
    """Both label maps as ``[B, h, w]`` long batches of every ``stride``-th pixel, and whether they were
    single maps; a clear error for maps of different shapes or a stride below 1."""
    if tuple(pred_labels.shape) != tuple(gt_labels.shape):
        raise ValueError(f"predicted and ground-truth maps differ in shape: "
                         f"{tuple(pred_labels.shape)} vs {tuple(gt_labels.shape)}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    pred, single = _as_label_batch(pred_labels)
    gt, _ = _as_label_batch(gt_labels)
    return pred[:, ::stride, ::stride].long(), gt[:, ::stride, ::stride].long(), single


def joint_terms(pred_labels, gt_labels, stride: int = 8, sigma: float = 1.0):
    """What Eq. 1 is made of, joint by joint: ``(sq, present_pred, present_gt)``, each ``[B, 9]`` (or
    ``[9]`` for single maps). ``sq[b, i] = ||c_i^p - c_i^gt||^2`` on the grid of every ``stride``-th
    pixel (``L_joint = sq.sum(-1) / 18``, :func:`joint_structure_loss`'s "paper" value); a joint
    present in one map only adds its whole heatmap's energy, one present in both the part its
    displacement leaves unmatched, one in neither nothing. Ignore pixels (255) of the ground truth are
    ignored in both maps, as the loss ignores them."""
    pred, gt, single = _label_pair(pred_labels, gt_labels, stride)
    pred = torch.where(gt == IGNORE_INDEX, torch.full_like(pred, IGNORE_INDEX), pred)
    coords, present = _centers(torch.cat([pred, gt]))
    maps = gaussian_heatmaps(coords, present, pred.shape[1], pred.shape[2], sigma)
    b = len(pred)
    sq = ((maps[:b] - maps[b:]) ** 2).sum(dim=(-2, -1))
    out = (sq, present[:b], present[b:])
    return tuple(t[0] for t in out) if single else out


def composition(sq, present_pred, present_gt) -> dict:
    """How a set of images' L_joint divides between joints present in one map only (a part missed or
    invented) and joints present in both (a part displaced), from :func:`joint_terms`' arrays
    ``[N, 9]`` (numpy or torch): the two shares of the summed ``sq`` (they add to 1), the mean
    L_joint (Eq. 1) and the mean number of one-map joints per image."""
    sq, pp, pg = (np.asarray(x.cpu() if torch.is_tensor(x) else x) for x in (sq, present_pred, present_gt))
    one = pp != pg
    total = float(sq.sum())
    return {"one_map_share": float(sq[one].sum()) / total if total else float("nan"),
            "displaced_share": float(sq[pp & pg].sum()) / total if total else float("nan"),
            "mean_l_joint": float(sq.sum(-1).mean() / (2 * NUM_JOINTS)) if len(sq) else float("nan"),
            "one_map_joints_per_image": float(one.sum(-1).mean()) if len(sq) else float("nan"),
            "images": int(len(sq))}


# ----------------------------------------------------------------------------- drawing (Figs. 6-7)

def _to_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def draw_joints(image, coords, present, radius: int | None = None, thickness: int | None = None,
                bone_color=(255, 255, 255), colors: np.ndarray = JOINT_COLORS) -> np.ndarray:
    """Draw the joints (filled circles) and the skeleton (head-upper body, upper body-arms,
    upper body-lower body, lower body-legs, legs-shoes) over an image, as in the paper's Fig. 7.

    ``image`` HxWx3 uint8 (or HxW grey); ``coords [9,2]`` (x, y) in the image's pixels (scale
    joints computed on a subsampled map by the stride first); ``present [9]``. Bones are drawn
    only between present joints. Radius and thickness default to sizes that scale with the image.
    Returns a new HxWx3 uint8 array.
    """
    from skimage.draw import disk, polygon

    out = np.array(image, dtype=np.uint8, copy=True)
    if out.ndim == 2:
        out = np.repeat(out[..., None], 3, axis=2)
    if out.ndim != 3 or out.shape[2] != 3:
        raise ValueError(f"image must be HxWx3 or HxW, got shape {out.shape}")
    xy = _to_numpy(coords).astype(np.float64)
    ok = _to_numpy(present).astype(bool)
    if xy.shape != (NUM_JOINTS, 2) or ok.shape != (NUM_JOINTS,):
        raise ValueError(f"coords must be [9,2] and present [9], got {xy.shape} and {ok.shape}")
    h, w = out.shape[:2]
    side = min(h, w)
    radius = radius or max(2, round(side / 60))
    thickness = thickness or max(1, round(side / 150))
    for a, b in SKELETON:
        if not (ok[a] and ok[b]):
            continue
        (x0, y0), (x1, y1) = xy[a], xy[b]
        # A bone is a thin rectangle around the segment (skimage's lines are one pixel wide).
        dx, dy = x1 - x0, y1 - y0
        norm = max(np.hypot(dx, dy), 1e-9)
        nx, ny = -dy / norm * thickness / 2, dx / norm * thickness / 2
        rr, cc = polygon([y0 + ny, y1 + ny, y1 - ny, y0 - ny], [x0 + nx, x1 + nx, x1 - nx, x0 - nx],
                         shape=(h, w))
        out[rr, cc] = bone_color
    for j in np.flatnonzero(ok):
        rr, cc = disk((xy[j, 1], xy[j, 0]), radius, shape=(h, w))
        out[rr, cc] = colors[j]
    return out


def heatmap_overlay(image, heatmaps, alpha: float = 0.6, cmap: str = "jet") -> np.ndarray:
    """The nine heatmaps combined into one map (their pixel-wise maximum) over the image, as the
    paper's Fig. 6 shows them.

    ``heatmaps [9,h,w]`` on any grid (e.g. the stride-8 grid of ``joint_heatmaps``); it is
    resized to the image bilinearly. Each pixel is blended towards the colormap colour in
    proportion to the map value, so pixels far from every joint keep the image. Returns HxWx3 uint8.
    """
    from matplotlib import colormaps
    from skimage.transform import resize

    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    maps = _to_numpy(heatmaps).astype(np.float32)
    if maps.ndim != 3:
        raise ValueError(f"heatmaps must be [J,h,w], got shape {maps.shape}")
    combined = maps.max(axis=0) if len(maps) else np.zeros(maps.shape[1:], np.float32)
    combined = resize(combined, img.shape[:2], order=1, mode="edge", anti_aliasing=False).clip(0, 1)
    colored = colormaps[cmap](combined)[..., :3] * 255.0
    weight = alpha * combined[..., None]
    out = (1 - weight) * img.astype(np.float32) + weight * colored
    return out.round().clip(0, 255).astype(np.uint8)
