"""The evaluation protocol: confusion matrices, scores, breakdowns and confidence intervals.

The paper scores with pixel accuracy, mean (class) accuracy and mean IoU (Section 3, "Following
[5, 28], we use the standard intersection over union (IoU) criterion and pixel-wise accuracy"). Every
table and figure of the study is an aggregation of per-image confusion matrices, so the per-image
matrices are the unit of storage; a breakdown (a challenge type, an object size) sums a subset of them.

Class averaging. Two conventions are in use and they differ on classes missing from an evaluation set:

* ``absent="skip"`` (default): the LIP evaluation script's. IoU_c = TP / (TP + FP + FN) and
  acc_c = TP / (TP + FN) are averaged with ``nanmean``: a class with no ground-truth and no predicted
  pixel (0/0) is left out of mean IoU, and a class with no ground-truth pixel is left out of mean accuracy.
* ``absent="zero"``: several codebases (e.g. SCHP's ``compute_mean_ioU``) divide by ``max(1, .)``, so
  such classes count as 0 and pull the mean down. On a full LIP split every class occurs and the two agree;
  on small subsets (one challenge type, a single image) they do not, which is why the book says which it uses.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .labels import IGNORE_INDEX

STATS = ("overall_acc", "mean_acc", "mean_iou")


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def _check_shapes(pred, target) -> None:
    if tuple(pred.shape) != tuple(target.shape):
        raise ValueError(f"prediction shape {tuple(pred.shape)} != label shape {tuple(target.shape)}")


def _range_error(which: str, values, num_classes: int, ignore_index: int) -> ValueError:
    return ValueError(f"{which} values {sorted(int(v) for v in values)[:10]} are outside "
                      f"0..{num_classes - 1} (and are not the ignore value {ignore_index})")


def _as_uint8(x: np.ndarray, which: str, num_classes: int, ignore_index: int) -> np.ndarray:
    """Labels as uint8 so a (target, prediction) pair packs into 16 bits; checks wider types first."""
    if x.dtype == np.uint8:
        return x
    bad = (x < 0) | (x > 255)
    if bad.any():
        raise _range_error(which, np.unique(x[bad]), num_classes, ignore_index)
    return x.astype(np.uint8)


def _cm_numpy(pred: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int) -> np.ndarray:
    """One image: pack (target << 8 | pred) into uint16 and take a 65536-bin histogram.

    Two byte-wide passes and one bincount, about 5x faster than int64 index arithmetic; out-of-range
    values land in their own bins, so validation costs nothing extra.
    """
    t = _as_uint8(np.asarray(target), "label", num_classes, ignore_index)
    p = _as_uint8(np.asarray(pred), "prediction", num_classes, ignore_index)
    code = t.astype(np.uint16)
    code <<= 8
    code |= p
    h = np.bincount(code.ravel(), minlength=65536).reshape(256, 256)
    if 0 <= ignore_index < 256:
        h[ignore_index] = 0
    bad_rows = np.flatnonzero(h[num_classes:].sum(1)) + num_classes
    if bad_rows.size:
        raise _range_error("label", bad_rows, num_classes, ignore_index)
    bad_cols = np.flatnonzero(h[:, num_classes:].sum(0)) + num_classes
    if bad_cols.size:
        raise _range_error("prediction", bad_cols, num_classes, ignore_index)
    return h[:num_classes, :num_classes].astype(np.int64)


def _cm_torch(pred, target, num_classes: int, ignore_index: int, batched: bool):
    """Torch path (CUDA above all): one bincount over ``b * C * C + t * C + p`` for the whole batch."""
    import torch

    t = target.long()
    p = pred.long()
    valid = t != ignore_index
    bad_t = valid & ((t < 0) | (t >= num_classes))
    bad_p = valid & ((p < 0) | (p >= num_classes))
    if bool(bad_t.any()):
        raise _range_error("label", torch.unique(t[bad_t]).tolist(), num_classes, ignore_index)
    if bool(bad_p.any()):
        raise _range_error("prediction", torch.unique(p[bad_p]).tolist(), num_classes, ignore_index)
    cc = num_classes * num_classes
    b = t.shape[0] if batched else 1
    idx = t * num_classes + p
    if batched:
        idx = idx + (torch.arange(b, device=t.device) * cc).view(b, *([1] * (t.ndim - 1)))
    # Ignored pixels go to bin 0 of a one-longer histogram, which is then dropped.
    idx = torch.where(valid, idx + 1, torch.zeros_like(idx))
    counts = torch.bincount(idx.reshape(-1), minlength=b * cc + 1)[1:]
    shape = (b, num_classes, num_classes) if batched else (num_classes, num_classes)
    return counts.to(torch.int64).reshape(shape)


def confusion_matrix(pred, target, num_classes: int, ignore_index: int = IGNORE_INDEX):
    """Confusion matrix ``[C, C]`` (int64) of one map or a batch; rows = ground truth, cols = prediction.

    ``pred`` and ``target`` are integer arrays of the same shape, numpy or torch (any device: the result
    stays on it and is of the same kind). Pixels whose target is ``ignore_index`` are skipped; any other
    value outside ``0..C-1`` raises, naming the values.
    """
    _check_shapes(pred, target)
    if _is_torch(pred):
        if pred.device.type == "cpu" and num_classes <= 255:
            import torch

            return torch.from_numpy(_cm_numpy(pred.numpy(), target.numpy(), num_classes, ignore_index))
        return _cm_torch(pred, target, num_classes, ignore_index, batched=False)
    return _cm_numpy(pred, target, num_classes, ignore_index)


def batched_confusion_matrix(pred, target, num_classes: int, ignore_index: int = IGNORE_INDEX):
    """One confusion matrix per image: ``[B, H, W]`` maps -> ``[B, C, C]`` int64.

    On a GPU the whole batch is one bincount (each image's bins offset by ``b * C * C``); on the CPU the
    16-bit histogram of one image at a time is faster than any int64 index arithmetic over the batch.
    """
    _check_shapes(pred, target)
    if pred.ndim < 2:
        raise ValueError(f"expected a batch [B, ...] of maps, got shape {tuple(pred.shape)}")
    if _is_torch(pred):
        if pred.device.type == "cpu" and num_classes <= 255:
            import torch

            p, t = pred.numpy(), target.numpy()
            return torch.from_numpy(np.stack([_cm_numpy(p[i], t[i], num_classes, ignore_index)
                                              for i in range(p.shape[0])]))
        return _cm_torch(pred, target, num_classes, ignore_index, batched=True)
    pred, target = np.asarray(pred), np.asarray(target)
    if num_classes > 255:
        raise ValueError("the numpy path packs labels into bytes: at most 255 classes")
    return np.stack([_cm_numpy(pred[i], target[i], num_classes, ignore_index) for i in range(pred.shape[0])])


def _as_float(cm) -> np.ndarray:
    cm = cm.cpu().numpy() if _is_torch(cm) else np.asarray(cm)
    return cm.astype(np.float64)


def _scores_arrays(cm: np.ndarray, absent: str):
    """Scores of a stack of matrices ``[..., C, C]`` -> arrays shaped ``[...]`` (and ``[..., C]``)."""
    if absent not in ("skip", "zero"):
        raise ValueError(f"absent must be 'skip' or 'zero', got {absent!r}")
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    gt = cm.sum(-1)
    pr = cm.sum(-2)
    total = gt.sum(-1)
    union = gt + pr - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        overall = tp.sum(-1) / total
        acc = tp / gt
        iou = tp / union
    if absent == "zero":
        acc = np.where(gt > 0, acc, 0.0)
        iou = np.where(union > 0, iou, 0.0)
    with np.errstate(invalid="ignore"), _quiet_nanmean():
        mean_acc = np.nanmean(acc, axis=-1)
        mean_iou = np.nanmean(iou, axis=-1)
    return overall, mean_acc, mean_iou, acc, iou


class _quiet_nanmean:
    """nanmean of an all-NaN row is NaN by definition here; silence numpy's warning about it."""

    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        self._w.__exit__(*exc)


def scores(cm, absent: str = "skip") -> dict:
    """Overall (pixel) accuracy, mean accuracy, mean IoU and per-class IoU/accuracy of one matrix.

    All values are fractions in [0, 1] (the book shows percentages). ``per_class_iou`` and
    ``per_class_acc`` are arrays of length C with NaN for skipped classes (``absent="skip"``).
    """
    overall, mean_acc, mean_iou, acc, iou = _scores_arrays(_as_float(cm), absent)
    return {
        "overall_acc": float(overall),
        "mean_acc": float(mean_acc),
        "mean_iou": float(mean_iou),
        "per_class_iou": iou,
        "per_class_acc": acc,
    }


def stat_fn(stat: str | Callable, absent: str = "skip") -> Callable[[np.ndarray], np.ndarray]:
    """A vectorised statistic over a stack of matrices ``[..., C, C]`` -> ``[...]``.

    ``stat`` is one of ``overall_acc``, ``mean_acc``, ``mean_iou``, ``iou:<class id>``,
    ``miou:<id>,<id>,...`` (mean IoU over a subset of classes), or a callable taking such a stack.
    """
    if callable(stat):
        return stat
    if stat in STATS:
        pos = STATS.index(stat)
        return lambda cm: _scores_arrays(cm, absent)[pos]
    if stat.startswith("iou:"):
        c = int(stat[4:])
        return lambda cm: _scores_arrays(cm, absent)[4][..., c]
    if stat.startswith("miou:"):
        ids = [int(s) for s in stat[5:].split(",")]

        def subset_miou(cm):
            iou = _scores_arrays(cm, absent)[4][..., ids]
            with _quiet_nanmean():
                return np.nanmean(iou, axis=-1)

        return subset_miou
    raise ValueError(f"unknown statistic {stat!r}; use one of {STATS}, 'iou:<id>', 'miou:<ids>' or a callable")


def miou_of(ids: Sequence[int]) -> str:
    """The :func:`stat_fn` name of "mean IoU over these classes"."""
    return "miou:" + ",".join(str(int(i)) for i in ids)


def aggregate(cms, index=None) -> np.ndarray:
    """Sum per-image matrices ``[N, C, C]`` over a subset (boolean mask or integer indices; all if None).

    This is how every breakdown is computed: the confusion matrix of a subset of images is the sum of
    their matrices, so challenge types and size bins need no re-evaluation.
    """
    cms = cms.cpu().numpy() if _is_torch(cms) else np.asarray(cms)
    if index is not None:
        index = np.asarray(index)
        if index.dtype == bool and index.shape != cms.shape[:1]:
            raise ValueError(f"mask of length {index.shape[0]} for {cms.shape[0]} images")
        cms = cms[index]
    return cms.sum(0, dtype=np.int64)


def select(ids: Sequence[str], wanted: Sequence[str]) -> np.ndarray:
    """Integer positions of ``wanted`` ids within ``ids`` (raises on an id that is not there)."""
    pos = {i: k for k, i in enumerate(ids)}
    missing = [w for w in wanted if w not in pos]
    if missing:
        raise KeyError(f"{len(missing)} ids not evaluated, e.g. {missing[:3]}")
    return np.array([pos[w] for w in wanted], dtype=np.int64)


def bootstrap_ci(cms, stat="mean_iou", n_boot: int = 1000, alpha: float = 0.05, seed: int = 0,
                 absent: str = "skip", other=None) -> dict:
    """Percentile bootstrap over images of a score (or of a paired difference).

    Images are resampled with replacement ``n_boot`` times; each resample's confusion matrix is the
    weighted sum of the per-image matrices (one einsum for all resamples). With ``other`` (matrices of
    another method on the same images, same order) the statistic is ``stat(cms) - stat(other)`` on the
    same resample, which is what a claim "A beats B" needs. Returns ``{"value", "low", "high", "n"}``.
    """
    a = _as_float(cms)
    n = a.shape[0]
    if n == 0:
        raise ValueError("bootstrap over zero images")
    f = stat_fn(stat, absent)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(n_boot, n))
    weights = np.zeros((n_boot, n))
    np.add.at(weights, (np.repeat(np.arange(n_boot), n), draws.ravel()), 1.0)
    boot = f(np.einsum("bn,ncd->bcd", weights, a))
    value = f(a.sum(0))
    if other is not None:
        b = _as_float(other)
        if b.shape != a.shape:
            raise ValueError(f"paired bootstrap needs matrices of the same images: {a.shape} vs {b.shape}")
        boot = boot - f(np.einsum("bn,ncd->bcd", weights, b))
        value = value - f(b.sum(0))
    with np.errstate(invalid="ignore"):
        lo, hi = np.nanquantile(boot, [alpha / 2, 1 - alpha / 2])
    return {"value": float(value), "low": float(lo), "high": float(hi), "n": int(n)}
