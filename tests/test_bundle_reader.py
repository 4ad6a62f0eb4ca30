"""Bundles as an attacker would write them (lipstudy.bundle_reader, lipstudy.bundles.import_bundle):
a checkpoint that runs code, with the manifest's hashes to match; an .xz member that expands to
2 GiB; a pax header that declares 2 GiB; thousands of members; a 100 MB manifest; a checkpoint with
the right tensor names and the wrong shapes. Each is refused with the run or the problem named,
nothing is left behind, no code runs, and the import's peak memory stays bounded (measured in a
subprocess). The committed bundles still import, and the limits hold what a run really holds."""
import hashlib
import io
import json
import lzma
import os
import struct
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from lipstudy import bundle_reader, bundles, store, train_run
from lipstudy.bundles import BundleError, import_bundle, pack_cms
from lipstudy.checkpoints import CHECKPOINT, load_checkpoint, model_from_checkpoint
from lipstudy.export import export
from test_bundles import RUN, TINY, elsewhere, members_of, nothing_written, trained  # noqa: F401 (fixtures)
from test_checkpoints import evil_checkpoint
from test_train import REPO

GIB2 = 2 << 30
PEAK_MIB = 600  # the brief's bound for refusing a 2 GiB member


def sha(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def write_bundle(dst: Path, manifest: dict, members: dict[str, bytes], preset: int = 6) -> Path:
    with tarfile.open(dst, "w:xz", preset=preset) as tar:
        for name, blob in [("manifest.json", json.dumps(manifest).encode()), *members.items()]:
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return dst


def swapped(trained, dst: Path, suffix: str, blob: bytes) -> Path:
    """The trained bundle with member ``*suffix`` replaced by ``blob``, its manifest entry to match."""
    manifest, members = members_of(trained["bundle"], dst.parent / f"{dst.name}.members")
    name = next(n for n in members if n.endswith(suffix))
    members[name] = blob
    manifest["files"][name] = {"sha256": sha(blob), "bytes": len(blob)}
    return write_bundle(dst, manifest, members)


def slim_blob(trained, edit) -> bytes:
    """The bundled run's slim checkpoint with ``edit(ckpt)`` applied."""
    ckpt = load_checkpoint(trained["res"].dir / "checkpoint.pt")
    ckpt = {"model": ckpt["model"], "config": ckpt["config"], "slim": True}
    edit(ckpt)
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    return buf.getvalue()


# ----------------------------------------------------------------------------- checkpoints inside

def test_a_bundle_whose_checkpoint_would_run_code_is_refused_and_runs_nothing(trained, elsewhere):
    marker = elsewhere / "pwned"
    blob = evil_checkpoint(elsewhere / "evil.pt", marker).read_bytes()
    bad = swapped(trained, elsewhere / "evil.tar.xz", "checkpoint.pt", blob)  # its hashes match
    with pytest.raises(BundleError, match=r"evil\.tar\.xz: run 'DeepLabV2' \([0-9a-f]{16}\): its checkpoint\.pt is "
                                          r"refused: .*posix\.system"):
        import_bundle(bad)
    assert not marker.exists()
    assert nothing_written(elsewhere) == (True, [])


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["model"].update({"aspp.3.fc8.weight": c["model"]["aspp.3.fc8.weight"][:7].clone()}),
     r"its weights are not those of the network its config builds \(deeplabv2, width 0\.0625, 20 classes\): wrong "
     r"aspp\.3\.fc8\.weight \(7, "),
    (lambda c: c["model"].pop(next(iter(c["model"]))), r"its weights are not those .*: missing "),
    (lambda c: c["config"].update(atrous_scale=2.0), r"was trained with another config than this checkout's run: "
                                                      r"atrous_scale: 2\.0 -> 1\.0"),
    (lambda c: c.update(optimizer={}), r"is not a slim checkpoint"),
])
def test_a_checkpoint_that_is_not_its_runs_network_is_refused_naming_the_run(trained, elsewhere, edit, message):
    bad = swapped(trained, elsewhere / "shapes.tar.xz", "checkpoint.pt", slim_blob(trained, edit))
    with pytest.raises(BundleError, match=r"shapes\.tar\.xz: run 'DeepLabV2' \([0-9a-f]{16}\): its checkpoint\.pt:? "
                                          + message):
        import_bundle(bad)
    assert nothing_written(elsewhere) == (True, [])


def test_what_an_import_brought_is_read_again_without_running_code(trained, elsewhere):
    """After an import, a checkpoint is read by a re-export, by the figures and by parse: a file
    swapped in afterwards runs nothing in any of them."""
    from lipstudy.parse import main as parse_main
    from lipstudy.paths import REAL_SAMPLES

    import_bundle(trained["bundle"])
    here = elsewhere / "results" / "runs" / trained["res"].dir.name
    marker = elsewhere / "pwned"
    evil_checkpoint(here / "checkpoint.pt", marker)
    with pytest.raises(ValueError, match=r"checkpoint\.pt: refused"):
        export(TINY, elsewhere / "again.tar.xz", runs=[RUN], device="cpu", checkpoints="all")
    res = train_run.ensure(RUN, TINY, device="cpu", progress=False)
    (here / "figures" / "fig8.npz").unlink()
    with pytest.raises(ValueError, match=r"checkpoint\.pt: refused"):
        res.figure_maps("fig8")
    photo = sorted(REAL_SAMPLES.glob("*_*.jpg"))[0]
    assert parse_main([str(photo), "--checkpoint", str(here / "checkpoint.pt"), "--out", str(elsewhere / "out")]) == 2
    assert not marker.exists()


# ----------------------------------------------------------------------------- sizes and counts

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n >> 7 else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _xz_block(data: bytes):
    """(stream header, block, unpadded size, size) of ``data`` compressed alone as one .xz block."""
    s = lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32, preset=0)
    index_size = (struct.unpack("<I", s[-8:-4])[0] + 1) * 4
    index, i, fields = s[-12 - index_size:-12], 2, []
    for _ in range(2):  # one record: unpadded size, uncompressed size
        n = shift = 0
        while True:
            b = index[i]
            i += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        fields.append(n)
    return s[:12], s[12:-12 - index_size], fields[0], fields[1]


def xz_of(parts) -> bytes:
    """One .xz stream of the pieces ``[(bytes, times)]``, each compressed once and its block repeated
    (so 2 GiB of zeros cost one 64 MiB compression, not 2 GiB of it)."""
    blocks, records, header = [], [], b""
    for data, times in parts:
        header, block, unpadded, size = _xz_block(data)
        blocks += [block] * times
        records += [(unpadded, size)] * times
    index = b"\0" + _varint(len(records)) + b"".join(_varint(u) + _varint(s) for u, s in records)
    index += b"\0" * (-len(index) % 4)
    index += struct.pack("<I", zlib.crc32(index))
    body = struct.pack("<I", len(index) // 4 - 1) + header[6:8]
    return header + b"".join(blocks) + index + struct.pack("<I", zlib.crc32(body)) + body + b"YZ"


def _tar_header(name: str, size: int, kind=tarfile.REGTYPE) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.type = size, kind
    return info.tobuf(tarfile.USTAR_FORMAT)


def bomb(path: Path, variant: str) -> Path:
    """A bundle of the smoke profile whose one member expands to 2 GiB of zeros: "declared" (the
    manifest and the tar header both say 2 GiB), "header" (the manifest says 1 KiB, the header
    2 GiB), "pax" (the manifest says 1 KiB, and an extended header of 2 GiB comes first, which tarfile
    would read whole)."""
    key = "0123456789abcdef"
    name = f"runs/{key}/checkpoint.pt"
    manifest = {"format": "lipstudy-bundle", "format_version": 1, "profile": "smoke", "engine_version": "1",
                "data": "synthetic", "datasets": {}, "matrices": {},
                "runs": [{"key": key, "label": "DeepLabV2", "run": {"model": "deeplabv2"}, "finished_ns": 0}],
                "files": {name: {"sha256": "0" * 64, "bytes": GIB2 if variant == "declared" else 1024}}}
    blob = json.dumps(manifest).encode()
    head = _tar_header("manifest.json", len(blob)) + blob + b"\0" * (-len(blob) % 512)
    head += _tar_header(name, GIB2) if variant != "pax" else _tar_header("././@PaxHeader", GIB2, tarfile.XHDTYPE)
    path.write_bytes(xz_of([(head, 1), (bytes(64 << 20), GIB2 >> 26), (bytes(1024), 1)]))
    return path


# The peak is the process's own high-water mark (VmHWM), not getrusage's ru_maxrss: Linux carries
# ru_maxrss across fork and exec, so a child of a pytest worker grown to 2 GiB reported 2 GiB.
_IMPORT = """
import json, sys
from lipstudy.bundles import BundleError, import_bundle
try:
    import_bundle(sys.argv[1])
    outcome = "imported"
except BundleError as e:
    outcome = str(e)
(peak_kib,) = [int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")]
print(json.dumps({"outcome": outcome, "peak_mib": peak_kib / 1024}))
"""


def import_in_a_process(bundle: Path, home: Path) -> dict:
    """Import ``bundle`` in a fresh process: its outcome and peak resident memory (MiB)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "LIPSTUDY_RESULTS": str(home / "results"),
           "LIPSTUDY_DATA": str(home / "data"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", _IMPORT, str(bundle)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("variant, message", [
    ("declared", r"checkpoint\.pt \(run 'DeepLabV2' \(0123456789abcdef\)\) declares 2,147,483,648 bytes, more than "
                 r"a checkpoint file of profile smoke can hold"),
    ("header", r"checkpoint\.pt \(run 'DeepLabV2' \(0123456789abcdef\)\) is 2,147,483,648 bytes in the archive, "
               r"1,024 in the manifest"),
    ("pax", r"unexpected member '\./\./@PaxHeader' of type b'x'"),
])
def test_a_member_that_expands_to_2_gib_is_refused_in_bounded_memory(tmp_path, variant, message):
    import re

    path = bomb(tmp_path / f"{variant}.tar.xz", variant)
    assert path.stat().st_size < 1 << 20  # a few hundred kilobytes on disk
    got = import_in_a_process(path, tmp_path)
    assert re.search(message, got["outcome"]), got["outcome"]
    assert got["outcome"].startswith(str(path))
    assert got["peak_mib"] < PEAK_MIB, got
    assert nothing_written(tmp_path) == (True, [])


def test_a_run_with_thousands_of_members_is_refused_before_any_is_read(trained, elsewhere):
    manifest, members = members_of(trained["bundle"], elsewhere / "members")
    key = manifest["runs"][0]["key"]
    for i in range(12_000):  # each listed, with its hash: an import would write them all
        name = f"runs/{key}/eval/val@{i}/metrics.json"
        members[name] = b"{}"
        manifest["files"][name] = {"sha256": sha(b"{}"), "bytes": 2}
    bad = write_bundle(elsewhere / "many.tar.xz", manifest, members, preset=0)
    limit = bundle_reader.limits(TINY).files_per_run
    with pytest.raises(BundleError, match=rf"many\.tar\.xz: run 'DeepLabV2' \({key}\) lists 12,0\d\d files; a run of "
                                          rf"profile tinybundle has at most {limit}"):
        import_bundle(bad)
    assert nothing_written(elsewhere) == (True, [])


def test_a_100_mb_manifest_is_refused_by_its_header(trained, elsewhere):
    manifest, members = members_of(trained["bundle"], elsewhere / "members")
    manifest["padding"] = "x" * 100_000_000  # any reader that parses it imports the bundle
    bad = write_bundle(elsewhere / "fat.tar.xz", manifest, members, preset=0)
    with pytest.raises(BundleError, match=r"fat\.tar\.xz: its manifest\.json is 100,0\d\d,\d\d\d bytes; a manifest is "
                                          r"at most 2,097,152"):
        import_bundle(bad)
    assert nothing_written(elsewhere) == (True, [])


def test_the_manifest_comes_first_and_members_are_files(trained, elsewhere):
    manifest, members = members_of(trained["bundle"], elsewhere / "members")
    late = elsewhere / "late.tar.xz"
    with tarfile.open(late, "w:xz") as tar:
        for name, blob in [*members.items(), ("manifest.json", json.dumps(manifest).encode())]:
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    with pytest.raises(BundleError, match=r"its first member is 'runs/.*'; a bundle starts with its manifest\.json"):
        import_bundle(late)
    link = elsewhere / "link.tar.xz"
    with tarfile.open(link, "w:xz") as tar:
        blob = json.dumps(manifest).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))
        info = tarfile.TarInfo(next(iter(members)))
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(BundleError, match=r"unexpected member 'runs/.*' of type b'2'"):
        import_bundle(link)
    assert nothing_written(elsewhere) == (True, [])


def test_matrices_that_declare_more_images_than_the_profile_scores_are_refused(trained, elsewhere):
    n = bundle_reader.limits(TINY).images + 1
    packed = pack_cms([str(i) for i in range(n)], np.ones((n, 20, 20), np.int64))
    buf = io.BytesIO()
    np.savez(buf, **packed)
    bad = swapped(trained, elsewhere / "cms.tar.xz", f"eval/val/{bundles.SPARSE}", buf.getvalue())
    with pytest.raises(BundleError, match=rf"eval/val/per_image_cm\.sparse\.npz is not readable \({n} images of 20 "
                                          rf"classes, more than an evaluation of profile tinybundle scores\)"):
        import_bundle(bad)
    assert nothing_written(elsewhere) == (True, [])


# ----------------------------------------------------------------------------- what is allowed

def test_a_bundle_written_when_runs_also_kept_a_csv_log_still_imports(trained, elsewhere):
    """Bundles exported before the training log was JSON only (issue 33) hold train_log.csv too."""
    manifest, members = members_of(trained["bundle"], elsewhere / "members")
    key = trained["res"].dir.name
    name, csv = f"runs/{key}/train_log.csv", b"epoch,step,loss,lr,images_per_s,seconds\n0,2,2.9,0.01,9.5,0.8\n"
    members[name] = csv
    manifest["files"][name] = {"sha256": sha(csv), "bytes": len(csv)}
    assert import_bundle(write_bundle(elsewhere / "older.tar.xz", manifest, members)) == {"imported": [key], "kept": []}


def test_the_limits_hold_what_a_run_really_holds():
    """The checkpoint limit is the largest network's slim checkpoint, saved for real (not a round
    number far above it); the matrices' limit holds an evaluation of the profile's largest split
    with every cell non-zero and 64-bit counts."""
    from lipstudy.bundle_reader import largest_checkpoint
    from lipstudy.models import build_model
    from lipstudy.runs import MODEL_LABELS

    sizes = []
    for model in MODEL_LABELS:
        buf = io.BytesIO()
        net = build_model(model, width=0.0625, batch_norm=True, num_classes=20)
        torch.save({"model": net.state_dict(), "config": {"model": model}, "slim": True}, buf)
        sizes.append(len(buf.getvalue()))
    assert max(sizes) <= largest_checkpoint(0.0625) < 1.1 * max(sizes)
    lim = bundle_reader.limits("cpu")
    assert lim.images == 400  # the cpu profile's largest evaluated split (LIP val)
    ids = [f"{'x' * 60}{i:04d}" for i in range(lim.images)]
    buf = io.BytesIO()
    np.savez(buf, **pack_cms(ids, np.full((lim.images, 20, 20), 2**40, np.int64)))
    assert len(buf.getvalue()) <= lim.matrices


def test_the_committed_bundles_still_import(tmp_path, monkeypatch):
    """Every file of results/backbones/ and results/shipped/ imports through the whole path
    (limits, hashes, keys, checkpoints against their runs' networks, matrices), with the data
    fingerprints they record standing in for the cpu profile's generated data."""
    from lipstudy.data.roots import synthetic_root

    monkeypatch.setenv("LIPSTUDY_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("LIPSTUDY_DATA", str(tmp_path / "data"))
    files = sorted(p for d in ("backbones", "shipped") for p in (REPO / "results" / d).glob("*.tar.xz"))
    recorded = {}
    for f in files:
        manifest = bundles.read_manifest(f)
        recorded.update({synthetic_root("cpu", ds): fp for ds, fp in manifest["datasets"].items()})
    monkeypatch.setattr(bundles, "data_root", lambda profile, ds, data=None: synthetic_root(profile, ds))
    monkeypatch.setattr(bundles, "data_fingerprint", lambda root: recorded[Path(root)])
    monkeypatch.setattr(store, "run_data", lambda run, profile, data=None: synthetic_root(profile, run.dataset))
    monkeypatch.setattr(store, "data_fingerprint", lambda root: recorded[Path(root)])
    starts = []
    for f in files:
        assert import_bundle(f, log=lambda *a: None)["imported"] == [f.name.removesuffix(".tar.xz")], f.name
        model, cfg = model_from_checkpoint(tmp_path / "results" / "runs" / f.name.removesuffix(".tar.xz") /
                                           "checkpoint.pt")
        assert cfg.width == 0.0625
        # Its config names its files relative to the data and results folders (issue 33); resolved
        # here, they are the data its key was checked against and the checkpoint of the run it
        # starts from, as this machine's import lays them out.
        (entry,) = bundles.read_manifest(f)["runs"]
        here = cfg.resolved()
        assert cfg.data_root.startswith("data/"), f.name
        assert here.data_root == str(synthetic_root("cpu", entry["run"]["dataset"])), f.name
        start = cfg.init or cfg.backbone_init
        assert (start is None) == (entry["parent"] is None), f.name
        if start is not None:
            assert start == f"results/runs/{entry['parent']}/checkpoint.pt", f.name
            starts.append(Path(here.init or here.backbone_init))
            assert starts[-1] == tmp_path / "results" / "runs" / entry["parent"] / CHECKPOINT, f.name
    assert files and all(p.is_file() for p in starts)  # every parent was imported too
