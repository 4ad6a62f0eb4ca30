"""Visibility attributes (paper Section 2.2-2.3, Fig. 4 and Fig. 5) derived from a label map alone.

The paper breaks LIP down by full-body, upper-body, lower-body, head-missed, back-view and
occlusion, but LIP ships no attribute files. These rules recover them from what a LIP label map
shows; on the synthetic benchmark (whose generator knows the truth) :func:`attribute_agreement`
measures how well they do, which bounds how far a breakdown of real LIP by derived attributes can
be trusted. The rules, with ``head`` = any hat / hair / sunglasses / face pixel:

- **full_body**: head and at least one shoe are visible.
- **upper_body**: head visible; no shoe, leg skin or sock; trousers / skirt, if any, cover less
  than 15% of the area of the upper garments (so a head-to-knees crop is not upper-body).
- **lower_body**: no head; some of legs, shoes, socks, pants, skirt visible, and these cover more
  area than upper garments and arms together.
- **head_missed**: no head, not lower-body, and an upper garment (upper-clothes, dress, coat,
  jumpsuits) is visible.
- **back_view**: with a head visible, the face covers less than 10% of the hair's area (from
  behind one sees hair, not face). Without a head, the left/right pairs vote (arms, legs, shoes
  with both sides visible): the person's left part lying left of their right part in the image
  (mean column) is what a back view shows; a strict majority of such votes means back view.
- **occlusion**: a part is cut by the image frame (any part touching the left or right border,
  a head part touching the top border, a shoe touching the bottom border), or one side of a
  left/right pair is visible without the other (one arm, one leg or one shoe only), i.e. an
  expected part is missing. Self-occlusion in side views also triggers the second rule: this is
  the main source of false positives, and attribute_agreement reports it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lipstudy.labels import LIP_FLIP_PAIRS, LIP_ID, LIP_NUM_CLASSES

ATTRIBUTES = ("full_body", "upper_body", "lower_body", "head_missed", "back_view", "occlusion")


def _ids(*names: str) -> list[int]:
    return [LIP_ID[n] for n in names]


HEAD = _ids("hat", "hair", "sunglasses", "face")
UPPER_GARMENTS = _ids("upper-clothes", "dress", "coat", "jumpsuits")
LOWER_PARTS = _ids("socks", "pants", "skirt", "left-leg", "right-leg", "left-shoe", "right-shoe")
LEGS_AND_FEET = _ids("socks", "left-leg", "right-leg", "left-shoe", "right-shoe")
SHOES = _ids("left-shoe", "right-shoe")
ARMS = _ids("left-arm", "right-arm")
PAIRS = tuple(LIP_FLIP_PAIRS)
HAIR, FACE = LIP_ID["hair"], LIP_ID["face"]


def derive_attributes(label) -> dict[str, int]:
    """The six visibility attributes (0/1 ints) of one LIP label map ``HxW`` (ids 0..19, 255 =
    ignore), by the rules in this module's docstring."""
    lab = np.asarray(label)
    if lab.ndim != 2:
        raise ValueError(f"expected a 2-D label map, got shape {lab.shape}")
    area = np.bincount(lab.ravel(), minlength=256).astype(np.int64)
    has = area > 0
    head = bool(has[HEAD].any())
    shoes = bool(has[SHOES].any())
    full_body = head and shoes
    upper_area = area[UPPER_GARMENTS].sum()
    upper_body = (head and not has[LEGS_AND_FEET].any()
                  and area[_ids("pants", "skirt")].sum() < 0.15 * max(upper_area, 1))
    lower_area = area[LOWER_PARTS].sum()
    lower_body = (not head) and lower_area > 0 and lower_area > upper_area + area[ARMS].sum()
    head_missed = (not head) and not lower_body and upper_area > 0
    if head:
        back_view = area[HAIR] > 0 and area[FACE] < 0.1 * area[HAIR]
    else:
        votes = [np.nonzero(lab == left)[1].mean() < np.nonzero(lab == right)[1].mean()
                 for left, right in PAIRS if has[left] and has[right]]
        back_view = len(votes) > 0 and sum(votes) * 2 > len(votes)
    sides = np.concatenate([lab[:, 0], lab[:, -1]])
    cut = bool(((sides > 0) & (sides < LIP_NUM_CLASSES)).any())
    cut |= bool(np.isin(lab[0], HEAD).any()) or bool(np.isin(lab[-1], SHOES).any())
    one_sided = any(has[a] != has[b] for a, b in PAIRS)
    return {"full_body": int(full_body), "upper_body": int(upper_body), "lower_body": int(lower_body),
            "head_missed": int(head_missed), "back_view": int(back_view), "occlusion": int(cut or one_sided)}


def derive_attributes_batch(labels, ids=None):
    """Derived attributes of many label maps -> DataFrame (column ``id`` first when ``ids``)."""
    import pandas as pd

    rows = [derive_attributes(lab) for lab in labels]
    df = pd.DataFrame(rows, columns=list(ATTRIBUTES))
    if ids is not None:
        df.insert(0, "id", list(ids))
    return df


def derive_dataset_attributes(dataset, progress: bool = False):
    """Derived attributes of every labelled item of a dataset (e.g. ``LIPDataset``) -> DataFrame
    with columns id and the six attributes. Raises if the split has no labels (LIP's test set)."""
    from tqdm import tqdm

    ids, labels = [], []
    for i in tqdm(range(len(dataset)), disable=not progress, desc="attributes", unit="img"):
        item = dataset[i]
        if item["label"] is None:
            raise ValueError(f"item {item['id']!r} has no label: attributes need label maps "
                             "(LIP's test labels are hidden; pass label_dir for a synthetic test split)")
        ids.append(item["id"])
        labels.append(item["label"])
    return derive_attributes_batch(labels, ids)


def attribute_agreement(root, split: str = "val", progress: bool = False):
    """Derived vs generator attributes over a split of the synthetic benchmark at ``root`` ->
    DataFrame indexed by attribute: support (generator positives), derived (derived positives),
    precision, recall, accuracy. Precision / recall are NaN where undefined (no positives)."""
    import pandas as pd

    from lipstudy.data.datasets import LIPDataset

    root = Path(root)
    truth_path = root / "attributes.csv"
    if not truth_path.is_file():
        raise FileNotFoundError(f"{truth_path}: missing; attribute_agreement needs a synthetic benchmark")
    truth = pd.read_csv(truth_path, dtype={"id": str, "split": str})
    truth = truth[truth.split == split].set_index("id")
    label_dir = root / "server" / "test_segmentations" if split == "test" else None
    derived = derive_dataset_attributes(LIPDataset(root, split, label_dir=label_dir), progress).set_index("id")
    truth = truth.loc[derived.index]
    rows = {}
    for attr in ATTRIBUTES:
        t, d = truth[attr].to_numpy().astype(bool), derived[attr].to_numpy().astype(bool)
        tp = int((t & d).sum())
        rows[attr] = {
            "support": int(t.sum()), "derived": int(d.sum()),
            "precision": tp / d.sum() if d.sum() else float("nan"),
            "recall": tp / t.sum() if t.sum() else float("nan"),
            "accuracy": float((t == d).mean()) if len(t) else float("nan"),
        }
    return pd.DataFrame.from_dict(rows, orient="index")
