"""ImageNet weights as torchvision fetches them (lipstudy.models.imagenet), without network: a
cached file where torch.hub looks, a download from a file:// URL with its hash checked, a run key
computed without a download, and the offline error that stops `lipstudy book` before any data is
generated."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from lipstudy import store
from lipstudy.book import runner
from lipstudy.models import imagenet
from lipstudy.profiles import get_profile
from lipstudy.runs import Run

TORCHVISION_NAMES = {"vgg16": "vgg16-397923af.pth", "vgg16_bn": "vgg16_bn-6c64b313.pth"}


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch cache under TORCH_HOME and published URLs that cannot be reached (file:// of a
    missing folder, with torchvision's file names)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    offline = tmp_path / "offline"
    monkeypatch.setattr(imagenet, "URLS", {a: (offline / n).as_uri() for a, n in TORCHVISION_NAMES.items()})
    return tmp_path / "torch" / "hub" / "checkpoints"


def tiny_state_file(path: Path, value: float = 1.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"features.0.weight": torch.full((2, 3, 3, 3), value)}, path)
    return path


def test_the_urls_are_torchvisions():
    assert {a: Path(u).name for a, u in imagenet.URLS.items()} == TORCHVISION_NAMES
    assert all(u.startswith("https://download.pytorch.org/models/") for u in imagenet.URLS.values())
    assert imagenet.arch_of("segnet") == "vgg16_bn"
    assert {imagenet.arch_of(m) for m in ("deeplabv2", "attention", "fcn8s")} == {"vgg16"}


def test_a_cached_copy_is_found_where_torch_hub_looks_and_keys_the_run(hub):
    cached = tiny_state_file(hub / "vgg16-397923af.pth")
    assert Path(torch.hub.get_dir()) / "checkpoints" == hub  # TORCH_HOME is followed at every call
    assert imagenet.weights_file("vgg16", download=False) == str(cached)
    assert imagenet.weights_for("deeplabv2") == str(cached)  # the URL is unreachable: not fetched
    full, run = get_profile("full"), Run("deeplabv2")
    key = store.run_key(run, full, "fp", None, imagenet.weights_for("deeplabv2"))
    tiny_state_file(cached, value=2.0)  # same name and size: same key
    assert store.run_key(run, full, "fp", None, str(cached)) == key
    torch.save({"features.0.weight": torch.zeros(3, 3, 3, 3)}, cached)  # another size: another key
    assert store.run_key(run, full, "fp", None, str(cached)) != key


def test_download_checks_the_hash_and_is_reused(hub, tmp_path, monkeypatch):
    src = tiny_state_file(tmp_path / "mirror" / "payload.pth", value=3.0)
    prefix = hashlib.sha256(src.read_bytes()).hexdigest()[:8]
    published = src.rename(src.with_name(f"vgg16-{prefix}.pth"))
    monkeypatch.setitem(imagenet.URLS, "vgg16", published.as_uri())
    got = Path(imagenet.weights_file("vgg16"))
    assert got == hub / published.name and got.read_bytes() == published.read_bytes()
    published.unlink()  # the cached copy is reused: no second download
    assert imagenet.weights_file("vgg16") == str(got)
    assert sorted(p.name for p in hub.iterdir()) == [f".{published.name}.lock", published.name]


def test_a_file_failing_its_hash_is_not_kept(hub, tmp_path, monkeypatch):
    wrong = tiny_state_file(tmp_path / "mirror" / "vgg16-00000000.pth")
    monkeypatch.setitem(imagenet.URLS, "vgg16", wrong.as_uri())
    with pytest.raises(imagenet.WeightsUnavailable, match=r"sha256 check .*invalid hash value.*not kept"):
        imagenet.weights_file("vgg16")
    assert [p.name for p in hub.iterdir()] == [".vgg16-00000000.pth.lock"]  # no file, no .partial


def test_offline_with_an_empty_cache_names_url_file_and_folder(hub):
    with pytest.raises(imagenet.WeightsUnavailable) as err:
        imagenet.fetch_all()
    msg = str(err.value)
    for part in (imagenet.URLS["vgg16"], "vgg16-397923af.pth", str(hub), "TORCH_HOME", "downloading"):
        assert part in msg, part
    assert [p.name for p in hub.iterdir()] == [".vgg16-397923af.pth.lock"]  # nothing half-written
    with pytest.raises(imagenet.WeightsUnavailable, match="not in the torch hub cache"):
        imagenet.weights_for("segnet")  # a key's lookup never downloads


def _no_data(*args, **kwargs):
    raise AssertionError("data must not be prepared before the ImageNet weights are checked")


def test_the_full_book_stops_before_any_data_offline(hub, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runner, "prepare_data", _no_data)
    monkeypatch.setenv("LIPSTUDY_RESULTS", str(tmp_path / "results"))
    for var in ("LIPSTUDY_PROFILE", "LIPSTUDY_LIP_ROOT", "LIPSTUDY_SEEDS"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(imagenet.WeightsUnavailable, match="vgg16"):
        runner.execute("full", book_dir=tmp_path / "book", log=lambda *a: None)
    assert runner.main(["--profile", "full", "--book-dir", str(tmp_path / "book2")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lipstudy book: ImageNet vgg16") and "vgg16-397923af.pth" in err
    assert not (tmp_path / "results" / "runs").exists()


def test_with_the_files_in_the_cache_the_book_goes_on(hub, tmp_path, monkeypatch):
    for name in TORCHVISION_NAMES.values():
        tiny_state_file(hub / name)

    class WentOn(Exception):
        pass

    def data_next(profile, data=None):
        raise WentOn(profile)

    monkeypatch.setattr(runner, "prepare_data", data_next)
    monkeypatch.setenv("LIPSTUDY_RESULTS", str(tmp_path / "results"))
    lines = []
    with pytest.raises(WentOn):
        runner.execute("full", book_dir=tmp_path / "book", log=lines.append)
    assert any(str(hub / "vgg16_bn-6c64b313.pth") in line for line in lines)
