"""The reference build (lipstudy.reference, lipstudy.compare) and the CPU record of provenance:
a run is "identical" only when its per-image validation matrices are, the table names each side's
CPU, every verdict (and bin) that differs is listed, and the margins are measured only against a
reference of another CPU that holds every run."""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
from types import SimpleNamespace

import numpy as np
import pytest

from lipstudy import compare, provenance, reference
from lipstudy.bundles import FORMAT, FORMAT_VERSION, SPARSE, cms_digest, pack_cms
from lipstudy.claims import evidence as claims_evidence
from lipstudy.runs import Run

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx avx2 avx512f avx512bw avx512_bf16 amx_bf16 amx_tile amx_int8 avx512_vnni

processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu
"""


def test_the_cpu_record_names_the_model_the_kernel_flags_and_torchs_capability():
    import torch

    cpu = provenance.cpu_info(CPUINFO)
    assert cpu["model"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert cpu["flags"] == ["avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile"]
    assert cpu["capability"] == torch.backends.cpu.get_cpu_capability()
    epyc = provenance.cpu_info("model name\t: AMD EPYC 7B13\nflags\t\t: avx avx2 fma\n")
    assert epyc["flags"] == ["avx2"]
    assert provenance.cpu_label(epyc) == f"AMD EPYC 7B13 ({epyc['capability']}; avx2)"
    assert provenance.cpu_label(None) == "an unrecorded CPU"
    here = provenance.cpu_info()  # this machine's, as every run's provenance.json now records it
    assert here["model"] and here["capability"] and provenance.environment()["cpu"] == here


RUNS = {"deeplabv2": Run("deeplabv2"), "segnet": Run("segnet"), "fcn8s": Run("fcn8s")}
IDS = ["a", "b"]


def cms(v: int) -> np.ndarray:
    out = np.zeros((2, 3, 3), np.int64)
    out[:, 0, 0], out[:, 1, 1], out[:, 1, 0] = 10, v, 5
    return out


def write_run(root, key, miou, matrices, cpu):
    d = root / "runs" / key
    (d / "eval" / "val").mkdir(parents=True)
    np.savez_compressed(d / "eval" / "val" / "per_image_cm.npz", **dict(zip(IDS, matrices)))
    (d / "provenance.json").write_text(json.dumps({"cpu": cpu, "device": "CPU"}))
    (d / "metrics.json").write_text(json.dumps({"mean_iou": miou}))


def write_bundle(path, runs):
    """A bundle of ``{key: (mean IoU, matrices, cpu record)}`` as lipstudy.bundles lays it out."""
    members, matrices = {}, {}
    for key, (miou, m, cpu) in runs.items():
        members[f"runs/{key}/metrics.json"] = json.dumps({"mean_iou": miou}).encode()
        members[f"runs/{key}/provenance.json"] = json.dumps({"cpu": cpu}).encode()
        buf = io.BytesIO()
        np.savez(buf, **pack_cms(IDS, m))
        members[f"runs/{key}/eval/val/{SPARSE}"] = buf.getvalue()
        matrices[f"runs/{key}/eval/val/{SPARSE}"] = {"sha256": cms_digest(IDS, m), "images": 2}
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "profile": "smoke", "engine_version": "x",
                "data": "synthetic", "datasets": {}, "matrices": matrices,
                "runs": [{"key": k, "label": k, "run": {}, "finished_ns": 0} for k in runs],
                "files": {n: {"sha256": hashlib.sha256(b).hexdigest(), "bytes": len(b)} for n, b in members.items()}}
    with tarfile.open(path, "w:xz") as tar:
        for name, blob in [("manifest.json", json.dumps(manifest).encode()), *members.items()]:
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))


XEON = {"model": "Xeon", "flags": ["avx2", "avx512f"], "capability": "AVX512"}
EPYC = {"model": "EPYC", "flags": ["avx2"], "capability": "AVX2"}
KEYS = {"deeplabv2": "0" * 16, "segnet": "1" * 16, "fcn8s": "2" * 16}


@pytest.fixture
def builds(tmp_path, monkeypatch):
    """This build (three runs trained on a Xeon) and a reference of the same runs, one of them
    trained on an EPYC with other numbers."""
    monkeypatch.setenv("LIPSTUDY_RESULTS", str(tmp_path / "results"))
    monkeypatch.setattr(compare, "bundle_runs", lambda prof, seeds=None: list(RUNS.values()))
    monkeypatch.setattr(compare, "key_plan", lambda run, prof, data=None: SimpleNamespace(key=KEYS[run.model]))
    for model, key in KEYS.items():
        write_run(tmp_path / "results", key, 0.5, cms(7), XEON)
    write_bundle(tmp_path / "smoke.tar.xz", {KEYS["deeplabv2"]: (0.5, cms(7), XEON),
                                             KEYS["segnet"]: (0.4871, cms(6), EPYC)})
    return tmp_path


def test_runs_are_identical_only_with_the_same_matrices(builds):
    ref = reference.read_reference(builds / "smoke.tar.xz")
    table, here, theirs = compare.run_table("smoke", ref)
    diff = table.set_index("run")["difference (pp)"].to_dict()
    assert diff == {"DeepLabV2": "identical", "SegNet": "+1.29", "FCN-8s": "not in the reference"}
    assert table.set_index("run").loc["SegNet", "reference (%)"] == pytest.approx(48.71)
    assert here == [provenance.cpu_label(XEON)] and theirs == sorted(map(provenance.cpu_label, (XEON, EPYC)))
    # the same mean IoU from other matrices is not "identical"
    write_bundle(builds / "same.tar.xz", {KEYS["deeplabv2"]: (0.5, cms(8), XEON)})
    table, _, _ = compare.run_table("smoke", reference.read_reference(builds / "same.tar.xz"))
    assert table.set_index("run").loc["DeepLabV2", "difference (pp)"] == "+0.00"


def test_every_verdict_and_bin_that_differs_is_listed():
    ours = [{"claim": "A", "verdict": "supported", "ours": 1.0, "bins": []},
            {"claim": "B", "verdict": "undecided", "ours": 0.2,
             "bins": [{"bin": "small", "verdict": "supported", "ours": 0.9},
                      {"bin": "large", "verdict": "undecided", "ours": 0.1}]},
            {"claim": "C", "verdict": "untestable", "ours": 0.0, "bins": []},
            {"claim": "D", "verdict": "supported", "ours": 3.0}]
    theirs = [{"claim": "A", "verdict": "supported", "ours": 1.1, "bins": []},
              {"claim": "B", "verdict": "undecided", "ours": 0.3,
               "bins": [{"bin": "small", "verdict": "supported", "ours": 0.8},
                        {"bin": "large", "verdict": "contradicted", "ours": -0.9}]},
              {"claim": "C", "verdict": "undecided", "ours": 0.1, "bins": []}]
    t = compare.verdict_changes(ours, theirs)
    assert t[["claim", "bin", "this build", "reference"]].values.tolist() == [
        ["B", "large", "undecided", "contradicted"], ["C", "", "untestable", "undecided"],
        ["D", "", "supported", "not tested"]]


def test_margins_come_only_from_a_complete_reference_of_another_cpu(builds, monkeypatch):
    ref = reference.read_reference(builds / "smoke.tar.xz")
    monkeypatch.setattr(claims_evidence, "load_reference", lambda profile: ref)
    monkeypatch.setattr(claims_evidence, "reference_verdicts", lambda profile, r, seeds=None: [
        SimpleNamespace(claim="A", estimate=1.5, bins=[]),
        SimpleNamespace(claim="B", estimate=0.2, bins=[SimpleNamespace(name="small", estimate=0.7)])])

    def cpus(pairs):
        monkeypatch.setattr(claims_evidence, "reference_runs", lambda *a, **k: pairs)
        return claims_evidence.reference_margins("smoke")

    x, e = provenance.cpu_label(XEON), provenance.cpu_label(EPYC)
    assert cpus({"k1": (x, x), "k2": (x, x)}) is None                    # the same CPU: the default margin
    assert cpus({"k1": (x, x), "k2": (x, None)}) is None                 # a stale reference lacks a run
    estimates, where = cpus({"k1": (x, x), "k2": (x, e), "k3": (None, e)})  # k3 not trained here
    assert estimates == {("A", None): 1.5, ("B", None): 0.2, ("B", "small"): 0.7} and where == e
    assert claims_evidence.reference_margins("smoke", data="real/LIP") is None
    monkeypatch.setattr(claims_evidence, "load_reference", lambda profile: None)
    assert claims_evidence.reference_margins("smoke") is None


def test_a_reference_of_another_profile_is_refused(builds):
    from lipstudy.bundles import BundleError

    with pytest.raises(BundleError, match="a reference build of profile 'smoke', not 'cpu'"):
        reference.load_reference("cpu", builds / "smoke.tar.xz")
    assert reference.load_reference("cpu", builds / "none.tar.xz") is None
    ref = reference.load_reference("smoke", builds / "smoke.tar.xz")
    with pytest.raises(KeyError, match="no evaluation 'atr' of run"):
        ref.evaluation(KEYS["segnet"], "atr")
    ids, m = (lambda e: (e.ids, e.cms))(ref.evaluation(KEYS["segnet"], "val"))
    assert ids == IDS and np.array_equal(m, cms(6))


def test_a_reference_of_other_data_is_not_recomputed_here(builds, monkeypatch):
    from lipstudy.bundles import BundleError

    ref = reference.read_reference(builds / "smoke.tar.xz")
    ref.manifest["datasets"] = {"lip": "f" * 64, "challenge": "e" * 64}
    monkeypatch.setattr(claims_evidence, "data_root", lambda prof, ds, data=None: ds)
    monkeypatch.setattr(claims_evidence, "data_fingerprint", lambda root: "f" * 64)
    with pytest.raises(BundleError, match="dataset 'challenge' of profile smoke differs from the reference build's"):
        claims_evidence.reference_verdicts("smoke", ref)
    # ... and gives no margins: the default holds
    monkeypatch.setattr(claims_evidence, "load_reference", lambda profile: ref)
    monkeypatch.setattr(claims_evidence, "reference_runs", lambda *a, **k: {"k": ("a CPU", "another CPU")})
    assert claims_evidence.reference_margins("smoke") is None


def test_the_committed_reference_is_this_checkouts_cpu_book(monkeypatch):
    """results/reference/cpu.tar.xz reads through the bounded reader, and its runs are exactly the cpu
    book's runs under this checkout's keys (with the data fingerprints it records): a change that
    retrains a run must commit a new reference, or the comparison would be against other runs."""
    from pathlib import Path

    from lipstudy import store
    from lipstudy.data.roots import synthetic_root
    from lipstudy.runs import book_runs, with_ancestors

    assert reference.reference_file("cpu").is_file(), "the checkout commits the cpu profile's reference build"
    ref = reference.load_reference("cpu")
    recorded = {synthetic_root("cpu", ds): fp for ds, fp in ref.manifest["datasets"].items()}
    monkeypatch.setattr(store, "run_data", lambda run, profile, data=None: synthetic_root(profile, run.dataset))
    monkeypatch.setattr(store, "data_fingerprint", lambda root: recorded[Path(root)])
    ours = {store.key_plan(r, "cpu").key: r.label for r in with_ancestors(book_runs("cpu"), "cpu")}
    assert set(ref.runs) == set(ours), {k: ours.get(k) for k in set(ref.runs) ^ set(ours)}
    assert all("checkpoint.pt" not in name for name in ref.members)  # evaluations only
    for key in ref.runs:  # every run's validation matrices read back
        if ref.runs[key]["run"]["dataset"] == "lip":
            assert len(ref.evaluation(key, "val").ids) == 400
