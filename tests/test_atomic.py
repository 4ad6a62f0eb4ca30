"""lipstudy.atomic, the one write-then-rename helper: round trips, and an interrupted writer (an
exception in the block, a process killed mid-write) leaves the previous file intact and no
temporary file behind."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from lipstudy.atomic import atomic_path, atomic_save, atomic_write, atomic_write_json

REPO = Path(__file__).resolve().parents[1]


def listing(folder: Path) -> list[str]:
    """Every entry of a folder, hidden temporaries included."""
    return sorted(os.listdir(folder))


def test_round_trips(tmp_path):
    text = tmp_path / "a" / "b" / "notes.txt"  # parent folders are created
    assert atomic_write(text, "größe ≤ 5\n") == text
    assert text.read_bytes() == "größe ≤ 5\n".encode("utf-8")
    raw = bytes(range(256))
    atomic_write(tmp_path / "raw.bin", raw)
    assert (tmp_path / "raw.bin").read_bytes() == raw
    obj = {"mean_iou": 0.4292, "ids": ["a", "b"], "nan": None}
    atomic_write_json(tmp_path / "m.json", obj)
    assert (tmp_path / "m.json").read_text() == json.dumps(obj, indent=1)
    assert json.loads((tmp_path / "m.json").read_text()) == obj
    atomic_write_json(tmp_path / "nan.json", {"x": float("nan")}, allow_nan=True)
    assert (tmp_path / "nan.json").read_text() == '{\n "x": NaN\n}'
    # A writer that wants a file name and looks at its extension (np.savez appends .npz otherwise).
    cms = np.arange(8, dtype=np.int64).reshape(2, 2, 2)
    atomic_save(tmp_path / "cm.npz", lambda p: np.savez_compressed(p, im0=cms[0], im1=cms[1]), suffix=".npz")
    with np.load(tmp_path / "cm.npz") as z:
        assert sorted(z.files) == ["im0", "im1"] and np.array_equal(z["im1"], cms[1])
    assert listing(tmp_path) == ["a", "cm.npz", "m.json", "nan.json", "raw.bin"]
    assert listing(text.parent) == ["notes.txt"]


def test_replacing_is_a_rename_not_an_overwrite(tmp_path):
    path = tmp_path / "metrics.json"
    atomic_write(path, "old")
    with open(path) as reader:  # a reader that opened the old version keeps reading it whole
        atomic_write(path, "new version")
        assert reader.read() == "old"
    assert path.read_text() == "new version" and listing(tmp_path) == ["metrics.json"]


def test_temporary_is_beside_the_target_with_its_suffix(tmp_path):
    with atomic_path(tmp_path / "pred.png", suffix=".png") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".pred.png.") and tmp.name.endswith(".tmp.png")
        assert tmp.exists() and not (tmp_path / "pred.png").exists()  # invisible until renamed
        tmp.write_bytes(b"png")
    assert (tmp_path / "pred.png").read_bytes() == b"png" and not tmp.exists()


def test_exception_inside_the_block_keeps_the_old_file(tmp_path):
    path = tmp_path / "checkpoint.pt"
    atomic_write(path, "old weights")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(path) as tmp:
            tmp.write_text("half of the new weights")
            raise RuntimeError("disk full")
    assert path.read_text() == "old weights"
    assert listing(tmp_path) == ["checkpoint.pt"]

    def failing_save(p):
        Path(p).write_text("partial")
        raise OSError("writer failed")

    with pytest.raises(OSError, match="writer failed"):
        atomic_save(path, failing_save)
    assert path.read_text() == "old weights" and listing(tmp_path) == ["checkpoint.pt"]
    # No previous version: a failed first write leaves nothing at all.
    with pytest.raises(ValueError):
        atomic_write_json(tmp_path / "new.json", {"x": float("nan")}, allow_nan=False)
    assert listing(tmp_path) == ["checkpoint.pt"]


_WRITER = """
import os, signal, sys
from lipstudy.atomic import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    with open(tmp, "w") as f:
        f.write("half of the new version")
        f.flush()
    print(tmp, flush=True)
    if sys.argv[2] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    sys.stdin.readline()  # "wait": hold the temporary file until told to finish
    with open(tmp, "a") as f:
        f.write(", and the rest")
"""


def _writer(tmp_path: Path, target: Path, how: str) -> subprocess.Popen:
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(_WRITER))
    return subprocess.Popen([sys.executable, str(script), str(target), how], cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_killed_writer_keeps_the_old_file_and_its_temporary_is_cleared(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    path = folder / "metrics.json"
    path.write_text("old")
    proc = _writer(tmp_path, path, "kill")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == -9, err
    leftover = Path(out.strip())
    # SIGKILL gives no chance to clean up: the temporary is there, the target untouched.
    assert path.read_text() == "old" and leftover.exists() and leftover.parent == folder
    # The next writer into the folder (this process: the writer above is dead) clears it.
    atomic_write(path, "new")
    assert path.read_text() == "new"
    assert listing(folder) == ["metrics.json"]


def test_a_live_writers_temporary_is_not_cleared(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    path = folder / "train_log.json"
    proc = _writer(tmp_path, path, "wait")
    try:
        tmp = Path(proc.stdout.readline().strip())
        assert tmp.exists()
        atomic_write(folder / "other.json", "{}")  # sweeps the folder for dead writers' files
        assert tmp.exists()
        _, err = proc.communicate("go\n", timeout=120)
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert proc.returncode == 0, err
    assert path.read_text() == "half of the new version, and the rest"
    assert listing(folder) == ["other.json", "train_log.json"]
