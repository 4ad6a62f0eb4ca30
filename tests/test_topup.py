"""The challenge top-up (lipstudy.data.synth.topup): it reaches the target of every short challenge
type, keeps every candidate of a type still short and no other (rejection sampling, so a kept image
of a type is distributed as the validation images of that type), reads as a LIP validation split,
and renders the same bytes whatever the number of workers."""
from __future__ import annotations

import json

import pytest

from lipstudy.data.datasets import open_dataset
from lipstudy.data.synth import generate, read_attributes
from lipstudy.data.synth.dataset import _render_item
from lipstudy.data.synth.topup import CHALLENGE_TYPES, SEED, generate_topup, shortfall, topped_up

SIDE = 48


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("topup") / "lip"
    generate(root, 0, 12, 0, seed=0, max_side=SIDE, progress=False)
    return root


def test_the_top_up_keeps_every_candidate_of_a_short_type_and_no_other(base, tmp_path):
    """A candidate is kept while a type it shows is still short: once a type has its images, its
    candidates stop counting (a rare type would otherwise keep every image of a common one)."""
    need = shortfall(base, 4)
    val = read_attributes(base)
    assert need == {k: max(0, 4 - int(val[k].sum())) for k in CHALLENGE_TYPES}
    short = [k for k, n in need.items() if n > 0]
    assert short  # 12 images hold fewer than 4 of some type
    manifest = generate_topup(tmp_path / "top", base, 4, SIDE)
    top = read_attributes(tmp_path / "top")
    assert manifest["topup"]["topped_up"] == short and topped_up(tmp_path / "top") == frozenset(short)
    assert set(top["split"]) == {"challenge"} and all(top["id"].str.startswith("synth_challenge_"))
    for k in short:
        assert int(top[k].sum()) >= need[k] == manifest["topup"]["needed"][k]
    # Rendered again, candidate by candidate: kept exactly those of a short type, in index order.
    rendered = manifest["topup"]["candidates"]
    candidates = [_render_item((SEED, "lip", "val", i, SIDE)) for i in range(rendered)]
    found, expect = {k: 0 for k in short}, []
    for i, c in enumerate(candidates):
        if any(c[4][k] and found[k] < need[k] for k in short):
            expect.append(f"synth_challenge_{i:06d}")
            found = {k: found[k] + int(c[4][k]) for k in short}
    assert list(top["id"]) == expect and len(expect) == manifest["counts"]["val"] <= sum(need.values())
    # ... and the last candidate rendered is the one that completed the last short type.
    counts = {k: sum(c[4][k] for c in candidates[:-1]) for k in short}
    assert any(counts[k] < need[k] for k in short)
    ds = open_dataset(tmp_path / "top", "val", kind="lip")
    assert ds.ids == expect and ds[0]["label"].shape == ds[0]["image"].shape[:2]


def test_the_top_up_is_the_same_with_two_workers(base, tmp_path):
    one = generate_topup(tmp_path / "one", base, 3, SIDE, workers=1)
    two = generate_topup(tmp_path / "two", base, 3, SIDE, workers=2)
    assert one == two and json.loads((tmp_path / "two" / "manifest.json").read_text()) == two


def test_nothing_short_renders_an_empty_top_up(base, tmp_path):
    m = generate_topup(tmp_path / "none", base, 0, SIDE)
    assert m["topup"]["topped_up"] == [] and m["counts"]["val"] == 0 and m["topup"]["candidates"] == 0
