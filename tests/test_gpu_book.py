"""benchmarks/gpu_book.sh end to end on a CPU at smoke scale (GPU_BOOK_SCALE=smoke: the gpu-smoke
profile and tiny benchmarks), so that the day a GPU is lent nothing runs for the first time: it
returns at most 8 files of at most 16 MiB under OUT, named as the device tool brings them back,
with the benchmark figures, the run report and a bundle that imports on another results and data
folder, after which the profile's book has nothing left to train or evaluate."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(Path(__file__).parent))

pytestmark = pytest.mark.slow

EXPECTED = {"env.json", "train_throughput.json", "eval_throughput.json", "ssl_overhead.json", "gpu-smoke.tar.xz",
            "runs.json", "log.txt"}


def test_the_canary_is_the_pinned_synthetic_data():
    import gpu_book
    from test_synth import PINNED_FINGERPRINTS

    assert gpu_book.CANARY == PINNED_FINGERPRINTS


@pytest.fixture(scope="module")
def script_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("gpu_book")
    env = {**os.environ, "GPU_BOOK_SCALE": "smoke", "PYTHON": sys.executable, "OMP_NUM_THREADS": "1",
           "LIPSTUDY_RESULTS": str(base / "results"), "LIPSTUDY_DATA": str(base / "data"),
           "GPU_BOOK_BUDGET_S": "1500"}
    env.pop("NPY_DISABLE_CPU_FEATURES", None)
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_book.sh"), str(base / "out")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    return {"base": base, "out": base / "out", "stdout": proc.stdout}


def test_the_script_returns_what_the_device_tool_brings_back(script_run):
    out = script_run["out"]
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {p.name for p in files} == EXPECTED and len(files) <= 8
    for p in files:
        assert p.stat().st_size <= 16 * 2**20, p
        assert re.fullmatch(r"[A-Za-z0-9._-]+", p.name) and len(p.relative_to(out).parts) <= 3
    log = (out / "log.txt").read_text()
    assert log == script_run["stdout"] and "torch" in log and "done;" in log


def test_the_device_and_the_figures(script_run):
    out = script_run["out"]
    env = json.loads((out / "env.json").read_text())
    assert env["torch"] and env["device"] and env["data_canary"] == {"lip": True, "ppp": True, "atr": True}
    train = json.loads((out / "train_throughput.json").read_text())
    assert [m["model"] for m in train["models"]] == ["segnet", "fcn8s", "deeplabv2", "attention"]
    assert all(m["mfu"] > 0 and m["train_flops_per_step"] > 0 for m in train["models"])
    evals = json.loads((out / "eval_throughput.json").read_text())
    assert evals["confusion_matrices_per_s"] > 0 and "single" in evals["inference_images_per_s"]
    ssl = json.loads((out / "ssl_overhead.json").read_text())
    assert "joint_term_fraction_of_step" in ssl
    runs = json.loads((out / "runs.json").read_text())
    # gpu-smoke at one seed: 6 paper methods, 2 controls, DeepLabV2's shuffled control, 4 PPP runs, the backbone
    assert runs["bundled"] == len(runs["runs"]) == 14 and all(r["in_bundle"] for r in runs["runs"])


def test_the_bundle_imports_elsewhere_and_leaves_nothing_to_train(script_run, tmp_path, monkeypatch):
    from lipstudy.bundles import import_bundle
    from lipstudy.store import book_products
    from lipstudy.runs import book_runs
    from lipstudy.process_pool import pending_tasks

    monkeypatch.setenv("LIPSTUDY_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("LIPSTUDY_DATA", str(tmp_path / "data"))  # the data is generated again here
    done = import_bundle(script_run["out"] / "gpu-smoke.tar.xz")
    assert len(done["imported"]) == 14
    tasks, _ = pending_tasks(book_runs("gpu-smoke"), "gpu-smoke", products=book_products("gpu-smoke"))
    assert tasks == {}
    prov = json.loads(next((tmp_path / "results" / "runs").glob("*/provenance.json")).read_text())
    assert prov["device"].startswith("CPU")  # where the script trained them


def test_the_gpu_profile_is_sized_to_fit_its_command():
    """benchmarks/gpu_sizing.py from FLOP counts: a run costs its images times its network's FLOPs
    per image, and the gpu profile's book fits 6 of the command's 8 minutes at the assumed
    150 TFLOP/s (an enlarged profile fails here before it fails on a lent GPU)."""
    import gpu_sizing
    from lipstudy.profiles import get_profile

    plan = gpu_sizing.plan("gpu")
    prof = get_profile("gpu")
    per_image = plan["train_flop_per_image"]
    assert 70e9 < per_image["deeplabv2"] < 90e9 and per_image["attention"] > per_image["deeplabv2"]
    rows = {(r["run"], r["dataset"], r["seed"]): r for r in plan["runs"]}
    dl = rows["DeepLabV2", "lip", 0]
    assert dl["train_images"] == prof.lip_data["train"] // prof.batch * prof.batch * prof.epochs_stage1
    assert dl["train_flop"] == dl["train_images"] * per_image["deeplabv2"]
    assert len(rows) == 32  # the book's 31 runs (9 LIP runs at each of 3 seeds, 4 PPP ones) and the backbone
    assert (plan["train_flop"] + plan["eval_flop"]) / 150e12 < 6 * 60
