"""The runs the checkout ships (lipstudy.shipped): the committed files are exactly the cpu profile's
shipped runs, a build imports them instead of training (identical weights and evaluations), what
does not match trains here, and the check that no decided verdict rests on one of them."""
import dataclasses
import io
import json
from pathlib import Path

import pytest
import torch

from lipstudy import backbones, cache, schedule, shipped
from lipstudy.bundles import read_bundle
from lipstudy.data.roots import synthetic_root
from lipstudy.profiles import PROFILES, get_profile
from lipstudy.runs import BACKBONE, method_runs
from lipstudy.runtime import load_checkpoint
from test_pretrain import TINY as PRETRAIN_TINY

TINY = dataclasses.replace(PRETRAIN_TINY, name="tinyshipped", shipped=("DeepLabV2 + SSL", "DeepLabV2"))


def test_the_committed_files_are_the_cpu_profiles_shipped_runs(monkeypatch):
    """One file per shipped method, named by the key this checkout computes for it (with the data
    fingerprints the files record, so nothing is generated here), holding that one run with its
    slim weights and every product the chapters read: a change to the cpu settings or the run
    graph makes a file stale, and this test says which."""
    cpu = get_profile("cpu")
    files = sorted(shipped.shipped_file("x").parent.glob("*.tar.xz"))
    manifests = {p.name.removesuffix(".tar.xz"): read_bundle(p) for p in files}
    fingerprints = {}
    for manifest, _ in manifests.values():
        fingerprints.update(manifest["datasets"])
    backbone_manifest, _ = read_bundle(sorted(backbones.committed_backbone("x").parent.glob("*.tar.xz"))[0])
    fingerprints.update(backbone_manifest["datasets"])
    roots = {synthetic_root(cpu, ds): fp for ds, fp in fingerprints.items()}
    monkeypatch.setattr(cache, "run_data", lambda run, profile, data=None: synthetic_root(profile, run.dataset))
    monkeypatch.setattr(cache, "data_fingerprint", lambda root: roots[Path(root)])
    keys = {cache.key_plan(run, cpu).key: method for method, run in shipped.shipped_runs(cpu).items()}
    assert set(keys.values()) == set(cpu.shipped) and len(keys) == len(cpu.shipped)
    assert set(manifests) == set(keys), "results/shipped/ should hold exactly the cpu profile's shipped runs"
    products = cache.book_products(cpu)
    for key, (manifest, members) in manifests.items():
        assert manifest["profile"] == "cpu" and set(manifest["datasets"]) == {"lip", "atr", "challenge"}
        assert [r["key"] for r in manifest["runs"]] == [key], keys[key]
        run = method_runs(cpu)[keys[key]][0]
        for name in ["val", *products[run]]:
            where = f"eval/{name}/metrics.json" if not name.startswith("figures/") else f"{name}.npz"
            assert f"runs/{key}/{where}" in members, (keys[key], name)
        ckpt = torch.load(io.BytesIO(members[f"runs/{key}/checkpoint.pt"]), map_location="cpu", weights_only=False)
        assert set(ckpt) == {"model", "config", "slim"} and ckpt["config"]["width"] == cpu.width


@pytest.fixture(scope="module")
def committed(tmp_path_factory):
    """TINY's backbone, DeepLabV2 and DeepLabV2 + SSL trained here with every product, and their
    committed files (backbone and shipped runs)."""
    base = tmp_path_factory.mktemp("shipped")
    mp = pytest.MonkeyPatch()
    mp.setitem(PROFILES, TINY.name, TINY)
    mp.setenv("LIPSTUDY_DATA", str(base / "data"))
    mp.setenv("LIPSTUDY_RESULTS", str(base / "trained"))
    mp.setattr(backbones, "committed_results", lambda name: base / "committed" / name)
    mp.setattr(shipped, "committed_results", lambda name: base / "committed" / name)
    runs = shipped.shipped_runs(TINY)
    products = cache.book_products(TINY)
    trained = {}
    for method in ("DeepLabV2", "DeepLabV2 + SSL"):  # the parent first
        res = cache.ensure(runs[method], TINY, device="cpu", progress=False)
        for name in products[runs[method]]:
            cache.product(res, name)
        trained[method] = res.dir
    backbones.export_backbone(TINY, log=lambda *a: None)
    paths = shipped.export_shipped(TINY, log=lambda *a: None)
    yield {"base": base, "trained": trained, "paths": paths, "runs": runs}
    mp.undo()


def test_a_build_imports_the_shipped_runs_instead_of_training_them(committed, monkeypatch):
    monkeypatch.setenv("LIPSTUDY_RESULTS", str(committed["base"] / "fresh"))
    # Stage 1 is listed second in the profile; it is imported first, before the run that starts from it.
    assert list(shipped.shipped_runs(TINY)) == ["DeepLabV2", "DeepLabV2 + SSL"]
    assert all(len(read_bundle(p)[0]["runs"]) == 1 for p in committed["paths"])  # no ancestors inside
    lines = []
    assert shipped.install(TINY, log=lines.append) == {"backbone": "imported", "DeepLabV2": "imported",
                                                       "DeepLabV2 + SSL": "imported"}
    assert shipped.install(TINY, log=lines.append) == {"backbone": "finished", "DeepLabV2": "finished",
                                                       "DeepLabV2 + SSL": "finished"}
    # Nothing left to train or evaluate for the book's products of these runs.
    products = cache.book_products(TINY)
    wanted = {r: products[r] for r in committed["runs"].values()}
    tasks, _ = schedule.pending_tasks(list(committed["runs"].values()), TINY, evaluations=wanted)
    assert tasks == {}
    for method, run in committed["runs"].items():
        ours = cache.finished_key(run, TINY)
        theirs = committed["trained"][method]
        assert ours == theirs.name
        here = Path(cache.runs_dir()) / ours
        assert json.loads((here / "metrics.json").read_text()) == json.loads((theirs / "metrics.json").read_text())
        a, b = (load_checkpoint(d / "checkpoint.pt")["model"] for d in (here, theirs))
        assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in b)
        for ev in theirs.glob("eval/*/metrics.json"):
            assert (here / ev.relative_to(theirs)).read_bytes() == ev.read_bytes()
    origins = shipped.origins(TINY)
    assert [o["method"] for o in origins] == ["DeepLabV2", "DeepLabV2 + SSL"]
    assert {o["imported"] for o in origins} == {p.name for p in committed["paths"]}


def test_ensure_all_imports_before_it_plans(committed, monkeypatch):
    monkeypatch.setenv("LIPSTUDY_RESULTS", str(committed["base"] / "scheduled"))
    assert schedule.ensure_all([committed["runs"]["DeepLabV2 + SSL"]], TINY, device="cpu") == 0


def test_what_does_not_match_trains_here(committed, monkeypatch, tmp_path):
    monkeypatch.setenv("LIPSTUDY_RESULTS", str(tmp_path / "results"))
    lines = []
    monkeypatch.setenv(shipped.TRAIN_ENV, "1")
    out = shipped.install(TINY, log=lines.append)
    assert out == {"backbone": "imported", "DeepLabV2": "train", "DeepLabV2 + SSL": "train"}
    assert shipped.TRAIN_ENV in lines[-1] and shipped.origins(TINY) == []
    monkeypatch.setenv(shipped.TRAIN_ENV, "0")  # "0" means no
    other = dataclasses.replace(TINY, name="tinyshipped2", lr=3e-3)  # other settings: other keys, no files
    monkeypatch.setitem(PROFILES, other.name, other)
    out = shipped.install(other, log=lines.append)
    assert out["DeepLabV2"] == "train" and "no committed shipped of key" in lines[-1]


def test_shipped_runs_names_and_real_data():
    with pytest.raises(ValueError, match="ships \\['Deeplab'\\]"):
        shipped.shipped_runs(dataclasses.replace(TINY, shipped=("Deeplab",)))
    assert shipped.shipped_runs(TINY, data="/some/LIP") == {}  # trained on synthetic data: not for real LIP
    assert shipped.shipped_runs("smoke") == {} and shipped.shipped_runs("cpu-long") == {}
    assert list(shipped.shipped_runs("cpu")) == list(get_profile("cpu").shipped)  # stage 1 before stage 2


def test_decided_with_names_every_decided_verdict_on_a_shipped_run():
    records = [
        {"claim": "a", "verdict": "untestable", "seeds": {"Attention": [0], "DeepLabV2": [0, 1, 2]}},
        {"claim": "b", "verdict": "by construction", "seeds": {"SegNet": [0]}},
        {"claim": "c", "verdict": "contradicted", "seeds": {"DeepLabV2 + SSL": [0, 1, 2]}},
        {"claim": "d", "verdict": "undecided", "seeds": {"Attention": [0], "FCN-8s": [0], "DeepLabV2": [0]}},
        {"claim": "e", "verdict": "supported", "seeds": {"SegNet": [0]}},
        {"claim": "f", "verdict": "supported", "seeds": None},
    ]
    shipped_methods = ("SegNet", "FCN-8s", "Attention")
    assert shipped.decided_with(records, shipped_methods) == [
        ("d", "undecided", ["Attention", "FCN-8s"]), ("e", "supported", ["SegNet"])]
    assert shipped.decided_with(records[:3], shipped_methods) == []
    assert shipped.decided_with(records, ()) == []
