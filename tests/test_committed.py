"""The runs the checkout commits (lipstudy.committed): the committed files are exactly the cpu
profiles' backbone and the cpu profile's shipped runs; a build imports them instead of training
(identical weights and evaluations, and a stage-1 run from the imported backbone trains the weights
it trains from the backbone trained in place); what does not match, or the switch, trains them
here; a committed book turns training off; and the check that no decided verdict rests on a
shipped run."""
import dataclasses
import io
import json
import tarfile
from pathlib import Path

import pytest
import torch

from lipstudy import committed, process_pool, store, train_run
from lipstudy.bundles import read_bundle, read_manifest
from lipstudy.checkpoints import load_backbone, load_checkpoint
from lipstudy.export import export
from lipstudy.data.roots import data_root, synthetic_root
from lipstudy.models import build_model
from lipstudy.profiles import PROFILES, get_profile
from lipstudy.runs import BACKBONE, Run, method_runs
from test_pretrain import TINY as PRETRAIN_TINY

TINY = dataclasses.replace(PRETRAIN_TINY, name="tinycommitted", shipped=("DeepLabV2 + SSL", "DeepLabV2"))
STAGE1 = Run("deeplabv2")


def _committed_files(kind):
    return sorted(kind.file("x").parent.glob("*.tar.xz"))


def test_the_committed_backbone_is_the_one_the_cpu_profiles_start_from(monkeypatch, tmp_path):
    """Its key, recomputed from this checkout's settings and engine (with the pretraining split's
    fingerprint it records, so that nothing is generated here), is the one its file is named by:
    a change to the cpu pretraining settings makes it stale, and this test says so."""
    files = _committed_files(committed.BACKBONE_FILE)
    assert len(files) == 1, f"expected one committed backbone, found {files}"
    manifest, members = read_bundle(files[0], tmp_path)  # streamed into tmp_path, within the cpu profile's limits
    assert manifest["profile"] == "cpu" and set(manifest["datasets"]) == {"pretrain"}
    assert [r["run"]["dataset"] for r in manifest["runs"]] == ["pretrain"]
    recorded = manifest["datasets"]["pretrain"]
    monkeypatch.setattr(store, "run_data", lambda run, profile, data=None: synthetic_root(profile, run.dataset))
    monkeypatch.setattr(store, "data_fingerprint", lambda root: recorded)
    for name in ("cpu", "cpu-short", "cpu-long"):  # one backbone for the family
        key = store.key_plan(BACKBONE, get_profile(name)).key
        assert committed.BACKBONE_FILE.file(key) == files[0], name
    assert manifest["runs"][0]["key"] == files[0].name.removesuffix(".tar.xz")
    # Its weights fit the cpu profile's networks (width 1/16, batch norm).
    file = members[f"runs/{manifest['runs'][0]['key']}/checkpoint.pt"]
    ckpt = load_checkpoint(file)
    assert ckpt["slim"] and set(ckpt) == {"model", "config", "slim"}
    net = build_model("deeplabv2", width=get_profile("cpu").width, batch_norm=True)
    load_backbone(net, file)  # raises when it does not fit


def test_the_committed_shipped_files_are_the_cpu_profiles_shipped_runs(monkeypatch, tmp_path):
    """One file per shipped method, named by the key this checkout computes for it (with the data
    fingerprints the files record, so nothing is generated here), holding that one run with its
    slim weights and every product the chapters read: a change to the cpu settings or the run
    graph makes a file stale, and this test says which."""
    cpu = get_profile("cpu")
    manifests = {p.name.removesuffix(".tar.xz"): read_bundle(p, tmp_path / p.name)
                 for p in _committed_files(committed.SHIPPED)}
    fingerprints = {}
    for manifest in [*(m for m, _ in manifests.values()), read_manifest(_committed_files(committed.BACKBONE_FILE)[0])]:
        fingerprints.update(manifest["datasets"])
    roots = {synthetic_root(cpu, ds): fp for ds, fp in fingerprints.items()}
    monkeypatch.setattr(store, "run_data", lambda run, profile, data=None: synthetic_root(profile, run.dataset))
    monkeypatch.setattr(store, "data_fingerprint", lambda root: roots[Path(root)])
    keys = {store.key_plan(run, cpu).key: name for kind, name, run in committed.committed_runs(cpu)
            if kind is committed.SHIPPED}
    assert set(keys.values()) == set(cpu.shipped) and len(keys) == len(cpu.shipped)
    assert set(manifests) == set(keys), "results/shipped/ should hold exactly the cpu profile's shipped runs"
    products = store.book_products(cpu)
    for key, (manifest, members) in manifests.items():
        assert manifest["profile"] == "cpu" and set(manifest["datasets"]) == {"lip", "atr", "challenge"}
        assert [r["key"] for r in manifest["runs"]] == [key], keys[key]
        run = method_runs(cpu)[keys[key]][0]
        for p in [store.VAL, *products[run]]:
            where = f"eval/{p.name}/metrics.json" if isinstance(p, store.Evaluation) else f"figures/{p.name}.npz"
            assert f"runs/{key}/{where}" in members, (keys[key], p)
        ckpt = load_checkpoint(members[f"runs/{key}/checkpoint.pt"])
        assert set(ckpt) == {"model", "config", "slim"} and ckpt["config"]["width"] == cpu.width


def test_no_committed_file_names_the_machine_that_made_it(tmp_path):
    """Every path a committed bundle's files hold is relative to the data or results folder
    (issue 33): nothing absolute in any JSON member or checkpoint config."""
    from test_bundles import absolute_paths

    files = _committed_files(committed.BACKBONE_FILE) + _committed_files(committed.SHIPPED)
    assert files
    for path in files:
        _, members = read_bundle(path, tmp_path / path.name)
        for name, file in members.items():
            if name.endswith(".json"):
                assert not absolute_paths(json.loads(file.read_bytes())), (path.name, name)
            elif name.endswith(".pt"):
                config = load_checkpoint(file)["config"]
                assert not absolute_paths(config) and config["data_root"].startswith("data/synth-cpu-"), path.name
        assert not any(name.endswith("train_log.csv") for name in members)  # one training log


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """TINY's backbone, DeepLabV2 and DeepLabV2 + SSL trained here with every product, and their
    committed files, written by committed.export into a committed folder of the test's own."""
    base = tmp_path_factory.mktemp("committed")
    mp = pytest.MonkeyPatch()
    mp.setitem(PROFILES, TINY.name, TINY)
    mp.setenv("LIPSTUDY_DATA", str(base / "data"))
    mp.setenv("LIPSTUDY_RESULTS", str(base / "trained"))
    mp.setattr(committed, "committed_results", lambda name: base / "committed" / name)
    runs = {name: run for _, name, run in committed.committed_runs(TINY)}
    products = store.book_products(TINY)
    trained = {}
    for name in ("DeepLabV2", "DeepLabV2 + SSL"):  # the parent first
        res = train_run.ensure(runs[name], TINY, device="cpu", progress=False)
        for p in products[runs[name]]:
            p.make(res)
        trained[name] = res.dir
    trained["backbone"] = store.load_result(BACKBONE, TINY).dir
    paths = committed.export(TINY, log=lambda *a: None)
    yield {"base": base, "trained": trained, "paths": paths, "runs": runs}
    mp.undo()


def _weights(run_dir):
    return load_checkpoint(Path(run_dir) / "checkpoint.pt")["model"]


def _same(a, b) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in b)


def test_export_writes_one_file_per_committed_run(built):
    assert list(built["runs"]) == ["backbone", "DeepLabV2", "DeepLabV2 + SSL"]  # each after what it starts from
    assert [p.parent.name for p in built["paths"]] == ["backbones", "shipped", "shipped"]
    assert [p.name for p in built["paths"]] == [f"{Path(built['trained'][n]).name}.tar.xz" for n in built["runs"]]
    assert all(len(read_manifest(p)["runs"]) == 1 for p in built["paths"])  # no ancestors inside


def test_a_build_imports_the_committed_runs_instead_of_training_them(built, monkeypatch):
    monkeypatch.setenv("LIPSTUDY_RESULTS", str(built["base"] / "fresh"))
    lines = []
    assert committed.install(TINY, log=lines.append) == {"backbone": "imported", "DeepLabV2": "imported",
                                                        "DeepLabV2 + SSL": "imported"}
    assert committed.install(TINY, log=lines.append) == {"backbone": "finished", "DeepLabV2": "finished",
                                                        "DeepLabV2 + SSL": "finished"}
    # Nothing left to train or make of these runs.
    products = store.book_products(TINY)
    runs = [built["runs"]["DeepLabV2"], built["runs"]["DeepLabV2 + SSL"]]
    assert process_pool.pending_tasks(runs, TINY, products={r: products[r] for r in runs}) == ({}, {})
    for name, run in built["runs"].items():
        here, theirs = store.runs_dir() / store.finished_key(run, TINY), built["trained"][name]
        assert here.name == theirs.name
        assert json.loads((here / "metrics.json").read_text()) == json.loads((theirs / "metrics.json").read_text())
        assert _same(_weights(here), _weights(theirs))
        for ev in theirs.glob("eval/*/metrics.json"):
            assert (here / ev.relative_to(theirs)).read_bytes() == ev.read_bytes()
    origins = committed.origins(TINY)
    assert [(o["kind"], o["name"]) for o in origins] == [("backbone", "backbone"), ("shipped", "DeepLabV2"),
                                                         ("shipped", "DeepLabV2 + SSL")]
    assert [o["imported"] for o in origins] == [p.name for p in built["paths"]]


def test_a_run_from_the_imported_backbone_is_the_run_from_the_backbone_trained_here(built, monkeypatch):
    """A results folder that imports only the backbone trains DeepLabV2 from it to exactly the
    weights it had from the backbone trained in place; the pool imports before it plans."""
    monkeypatch.setenv("LIPSTUDY_RESULTS", str(built["base"] / "from-backbone"))
    assert committed.install(TINY, runs=[BACKBONE], log=lambda *a: None) == {"backbone": "imported"}
    tasks, _ = process_pool.pending_tasks([STAGE1], TINY)
    assert list(tasks) == [STAGE1]  # the backbone is not a task
    res = train_run.ensure(STAGE1, TINY, device="cpu", progress=False)
    assert res.trained and res.dir.name == built["trained"]["DeepLabV2"].name
    assert _same(_weights(res.dir), _weights(built["trained"]["DeepLabV2"]))
    monkeypatch.setenv("LIPSTUDY_RESULTS", str(built["base"] / "scheduled"))
    assert process_pool.ensure_all([built["runs"]["DeepLabV2 + SSL"]], TINY, device="cpu", log=lambda *a: None) == 0


def test_what_does_not_match_or_the_switch_trains_here(built, monkeypatch, tmp_path):
    monkeypatch.setenv("LIPSTUDY_RESULTS", str(tmp_path / "results"))
    lines = []
    out = committed.install(TINY, train_here=True, log=lines.append)
    assert out == {"backbone": "train", "DeepLabV2": "train", "DeepLabV2 + SSL": "train"}
    assert "--train-committed" in lines[-1] and committed.origins(TINY) == []
    # Other settings: other keys, no files of them.
    other = dataclasses.replace(TINY, name="tinycommitted2", lr=3e-3)
    monkeypatch.setitem(PROFILES, other.name, other)
    for ds in ("lip", "pretrain"):  # a key is read off the data: generated first, as a build does
        data_root(other, ds)
    out = committed.install(other, log=lines.append)
    assert out["DeepLabV2"] == "train" and "no committed shipped file of DeepLabV2 + SSL's key" in lines[-1]
    # A damaged file is refused, by name, and nothing is imported.
    backbone_file = built["paths"][0]
    with tarfile.open(backbone_file) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar]
    damaged = tmp_path / "committed" / "backbones" / backbone_file.name
    damaged.parent.mkdir(parents=True)
    with tarfile.open(damaged, "w:xz") as tar:
        for info, blob in members:
            if info.name.endswith("checkpoint.pt"):
                blob = blob[:-1] + bytes([blob[-1] ^ 1])
            tar.addfile(info, io.BytesIO(blob))
    monkeypatch.setattr(committed, "committed_results", lambda name: tmp_path / "committed" / name)
    assert committed.install(TINY, runs=[BACKBONE], log=lines.append) == {"backbone": "train"}
    assert "refused" in lines[-1] and "corrupt" in lines[-1] and "checkpoint.pt" in lines[-1]
    assert committed.origins(TINY) == []
    assert committed.install("smoke") == {}
    with pytest.raises(ValueError, match="commits no runs"):
        committed.export("smoke")


def test_a_committed_book_is_imported_and_then_nothing_trains(built, monkeypatch, tmp_path):
    """A checkout holding results/bundles/<profile>.tar.xz (the gpu profile's, one day): the pool
    imports it when runs are missing and then trains nothing, so a run the bundle lacks fails the
    build by name instead of training for hours; --train-committed trains instead."""
    monkeypatch.setenv("LIPSTUDY_RESULTS", str(built["base"] / "trained"))
    book = tmp_path / "committed" / "bundles" / f"{TINY.name}.tar.xz"
    book.parent.mkdir(parents=True)
    export(TINY, book, runs=[built["runs"]["DeepLabV2"]], device="cpu", checkpoints="none")
    monkeypatch.setattr(committed, "committed_results", lambda name: tmp_path / "committed" / name)
    monkeypatch.setenv("LIPSTUDY_RESULTS", str(tmp_path / "results"))
    lines = []
    assert process_pool.ensure_all([STAGE1], TINY, device="cpu", log=lines.append) == 0
    assert any(f"importing the runs of profile {TINY.name}" in line for line in lines)
    assert store.finished_key(STAGE1, TINY) == built["trained"]["DeepLabV2"].name
    with pytest.raises(RuntimeError, match=r"run 'FCN-8s' .* training is off"):
        process_pool.ensure_all([Run("fcn8s")], TINY, device="cpu", log=lines.append)
    assert committed.install(TINY, runs=[STAGE1], train_here=True, log=lines.append) == {
        "backbone": "finished", "DeepLabV2": "finished"}
    assert "--train-committed: training the tinycommitted profile's book here" in lines[-1]


def test_committed_runs_names_and_real_data():
    with pytest.raises(ValueError, match="ships \\['Deeplab'\\]"):
        committed.committed_runs(dataclasses.replace(TINY, shipped=("Deeplab",)))
    names = lambda profile, data=None: [n for _, n, _ in committed.committed_runs(profile, data)]  # noqa: E731
    assert names(TINY, data="/some/LIP") == ["backbone"]  # shipped runs trained on synthetic data: not for real LIP
    assert names("smoke") == [] and names("cpu-long") == ["backbone"]
    assert names("cpu") == ["backbone", *get_profile("cpu").shipped]  # stage 1 before stage 2


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
    assert committed.decided_with(records, shipped_methods) == [
        ("d", "undecided", ["Attention", "FCN-8s"]), ("e", "supported", ["SegNet"])]
    assert committed.decided_with(records[:3], shipped_methods) == []
    assert committed.decided_with(records, ()) == []
