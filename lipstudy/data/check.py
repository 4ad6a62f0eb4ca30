"""`lipstudy check-data`: validate a whole dataset folder, reading every id list, image and label
in full and listing every problem at once (not just the first), so one pass fixes a download.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from tqdm import tqdm

from lipstudy.data.datasets import DATASET_CLASSES
from lipstudy.data.decode import DataError
from lipstudy.data.layout import KINDS, SPLITS, find_layout


@dataclass(frozen=True)
class CheckReport:
    """What one check found; the layouts and item counts feed check-data's summary line."""

    kind: str | None
    problems: list[str]
    checked: dict[str, int]  # split -> items checked
    layouts: dict[str, str]  # split -> layout name


def _check(root, kind: str = "auto", splits=None, workers: int = 1) -> CheckReport:
    try:
        layout = find_layout(root, kind)
    except DataError as e:
        return CheckReport(None, [str(e)], {}, {})
    problems: list[str] = []
    checked: dict[str, int] = {}
    layouts: dict[str, str] = {}
    wanted = list(splits) if splits else [s for s in SPLITS if s in layout.splits]
    if not wanted:
        problems.append(f"{layout.root}: no split of this {layout.kind.upper()} dataset found; "
                        f"looked for " + ", ".join(r for rs in layout.looked_for.values() for r in rs))
    for split in wanted:
        try:
            ds = DATASET_CLASSES[layout.kind](layout.root, split)
        except DataError as e:
            problems.append(str(e))
            continue
        layouts[split] = ds.layout
        for id_, n in Counter(ds.ids).items():
            if n > 1:
                problems.append(f"{ds.id_file}: id {id_!r} is listed {n} times")
        # Pillow releases the GIL while decoding, so threads give a real speed-up here.
        with ThreadPoolExecutor(max(1, workers)) as pool:
            results = pool.map(ds.problems, range(len(ds)))
            for item_problems in tqdm(results, total=len(ds), desc=f"check {split}",
                                      unit="img", file=sys.stderr, mininterval=0.5):
                problems.extend(item_problems)
        checked[split] = len(ds)
    return CheckReport(layout.kind, problems, checked, layouts)


def check_dataset(root, kind: str = "auto", splits=None, workers: int = 1) -> list[str]:
    """Validate every item of every present split (or of ``splits``), reading every file fully.

    Returns all problems found (one message each, naming the file), [] for a clean dataset.
    """
    return _check(root, kind, splits, workers).problems


def check_main(argv: list[str]) -> int:
    """``lipstudy check-data ROOT [--kind K] [--split S ...]``: exit 0 clean, 1 problems, 2 usage."""
    parser = argparse.ArgumentParser(
        prog="lipstudy check-data",
        description="Validate a LIP, PASCAL-Person-Part or ATR dataset folder: every id list, image "
                    "and label is read in full; all problems are listed.")
    parser.add_argument("root", help="dataset root folder")
    parser.add_argument("--kind", default="auto", choices=("auto",) + KINDS,
                        help="dataset kind (default: detect from the folders)")
    parser.add_argument("--split", dest="splits", action="extend", nargs="+", choices=SPLITS,
                        help="splits to check (default: every split present)")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                        help="decoding threads (default: %(default)s)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits 2 on usage errors, 0 on --help
        return int(e.code or 0)
    report = _check(args.root, args.kind, args.splits, args.workers)
    for problem in report.problems:
        print(problem)
    total = sum(report.checked.values())
    per_split = ", ".join(f"{s} {n} ({report.layouts[s]} layout)" for s, n in report.checked.items())
    kind = report.kind.upper() if report.kind else "no"
    print(f"{kind} dataset at {args.root}: checked {total} items"
          + (f" ({per_split})" if per_split else "")
          + f"; {len(report.problems)} problem{'s' if len(report.problems) != 1 else ''}")
    return 1 if report.problems else 0
