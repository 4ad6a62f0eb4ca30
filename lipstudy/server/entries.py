"""The container of a submission (a zip, or a folder for ``--score``): which entry holds which test
image, checked from the zip's directory before a single byte is decompressed.

A zip says, in its central directory, how many entries it has, their names, compression methods,
flags and sizes. Everything that can be refused from that is refused there, so a hostile zip costs
the server a directory listing, not a decompression:

- the entry count and directory size are read from the end records (zip64 included, exactly where
  :mod:`zipfile` will read them), and the records counted in the directory, *before* :mod:`zipfile`
  parses it (it builds a ~500-byte object for every record: a directory of millions of tiny records
  would otherwise be parsed into memory first);
- each entry must be named ``<id>.png`` for a test id, at any folder depth (tools nest folders
  differently), each id exactly once: the same id in two folders is refused, never "the last wins".
  Folder entries and macOS metadata (``__MACOSX/``, ``._*``, ``.DS_Store``) are skipped unread;
  anything else is refused by name;
- only stored and deflated entries (no deflate64, bzip2, lzma...), none encrypted;
- each entry's declared uncompressed size is capped by what a PNG of its label map's size can need
  (:meth:`Limits.entry_cap`), and so is the total; the compression ratio is capped too;
- every entry is then read through a bounded read of at most cap + 1 bytes: a declared size is never
  trusted.
"""
from __future__ import annotations

import io
import json
import os
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .hidden import HiddenTestSet

_EOCD = b"PK\x05\x06"
_EOCD64_LOCATOR = b"PK\x06\x07"
_EOCD64 = b"PK\x06\x06"
_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
_METHOD_NAMES = {9: "deflate64", 12: "bzip2", 14: "lzma", 93: "zstandard", 95: "xz", 98: "ppmd", 99: "AES"}
_CENTRAL_RECORD_BYTES = 1024  # one directory record: 46 bytes + name (<= 255) + extra fields + comment


class SubmissionError(ValueError):
    """A submission the server refuses. ``problems`` lists every problem found, each naming the entry."""

    def __init__(self, problems: list[str] | str, source: str = "submission"):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__(f"{source} refused:\n  " + "\n  ".join(self.problems))


@dataclass(frozen=True)
class Limits:
    """What a submission may cost. The caps follow from the hidden labels' sizes: a prediction for a
    WxH image is an 8-bit PNG, whose worst honest encoding (stored, not compressed) is the W*H pixels
    plus one filter byte a row; twice that plus room for metadata chunks is generous and still small."""

    metadata_bytes: int = 64 * 1024
    max_ratio: float = 200.0  # deflate reaches ~1000:1 on zeros; PNGs inside a zip stay near 1:1
    extra_entries: int = 64  # folder entries and skipped metadata beyond one entry a test image
    max_name_chars: int = 255
    max_problems: int = 20  # stop reading a bad submission after this many problems

    def entry_cap(self, size: tuple[int, int]) -> int:
        w, h = size
        return 2 * (w * h + h) + self.metadata_bytes

    def total_cap(self, test_set: HiddenTestSet) -> int:
        return sum(self.entry_cap(s) for s in test_set.sizes.values())

    def max_entries(self, test_set: HiddenTestSet) -> int:
        return len(test_set.ids) + self.extra_entries

    def upload_cap(self, test_set: HiddenTestSet) -> int:
        """Default largest accepted upload: every entry at its cap, plus zip headers, at most 512 MiB."""
        zip_overhead = self.max_entries(test_set) * 2 * _CENTRAL_RECORD_BYTES
        return min(512 * 2 ** 20, self.total_cap(test_set) + zip_overhead)


def shown(name: str, limit: int = 80) -> str:
    """An entry name quoted for a message: JSON-escaped (control characters visible), shortened."""
    return json.dumps(name[:limit] + ("..." if len(name) > limit else ""), ensure_ascii=True)


def _skipped(parts: tuple[str, ...]) -> bool:
    return parts[0] == "__MACOSX" or parts[-1].startswith("._") or parts[-1] == ".DS_Store"


@dataclass(frozen=True)
class Entry:
    """One prediction in a submission: the test id, the name shown in messages, how to read it."""

    image_id: str
    name: str
    declared_size: int
    info: zipfile.ZipInfo | None = None  # zip entries
    path: Path | None = None  # folder files
    inode: tuple[int, int] | None = None  # (device, inode) of a folder file when it was listed


_END = 22  # the classic end record, without its comment
_LOCATOR, _END64 = 20, 56  # the zip64 locator and the zip64 end record (without extensible data)
_TAIL = 65536 + _END  # how far from the end zipfile looks for the end record: the longest comment and it


def _directory_extent(f, file_size: int) -> tuple[int, int, int]:
    """(declared number of entries, start, size) of the central directory that :mod:`zipfile` will
    parse, found as ``zipfile._EndRecData``, ``_EndRecData64`` and ``ZipFile._RealGetContents`` find it
    (CPython 3.10 to 3.13 read it the same way).

    The end record is the last 22 bytes when they are one without a comment, else the last end
    signature in the last 64 KiB + 22 bytes. A zip64 locator just before it is honoured whatever the
    classic record says (issue 24: a classic record declaring an empty directory hid a zip64 one of
    millions of records), and so is the zip64 record just before the locator. The directory then ends
    where those records begin; its start is that end minus the declared size, whatever offset the
    records give. A classic field that is not saturated (0xFFFF, 0xFFFFFFFF) must agree with the zip64
    one: no writer produces anything else."""
    f.seek(file_size - _END)
    rec = f.read(_END)
    if rec[:4] == _EOCD and rec[-2:] == b"\0\0":
        pos = file_size - _END
    else:
        tail_start = max(file_size - _TAIL, 0)
        f.seek(tail_start)
        tail = f.read(file_size - tail_start)
        i = tail.rfind(_EOCD)
        if i < 0 or i + _END > len(tail):
            raise SubmissionError("not a zip file (no end-of-central-directory record)")
        pos, rec = tail_start + i, tail[i:i + _END]
    _, _, _, _, entries, cd_size, _, _ = struct.unpack("<4s4H2LH", rec)
    cd_end = pos
    if pos >= _LOCATOR:
        f.seek(pos - _LOCATOR)
        sig, disk, _, disks = struct.unpack("<4sLQL", f.read(_LOCATOR))
        if sig == _EOCD64_LOCATOR:
            if disk != 0 or disks > 1:
                raise SubmissionError("not a readable zip file (it spans several disks)")
            if pos < _LOCATOR + _END64:
                raise SubmissionError("not a readable zip file (zip64 locator, but the zip64 end record missing)")
            f.seek(pos - _LOCATOR - _END64)
            rec64 = f.read(_END64)
            if rec64[:4] == _EOCD64:
                entries64, cd_size64 = struct.unpack("<QQ", rec64[32:48])
                if entries not in (0xFFFF, entries64) or cd_size not in (0xFFFFFFFF, cd_size64):
                    raise SubmissionError(
                        f"not a readable zip file (its zip64 end record ({entries64} entries, a {cd_size64}-byte "
                        f"directory) contradicts its classic end record ({entries} entries, {cd_size} bytes))")
                entries, cd_size, cd_end = entries64, cd_size64, pos - _LOCATOR - _END64
    if cd_size > cd_end:
        raise SubmissionError(f"not a readable zip file (a {cd_size}-byte directory in {cd_end} bytes)")
    return entries, cd_end - cd_size, cd_size


def _count_records(directory: bytes, limit: int) -> int:
    """Central directory records in ``directory``, counted up to ``limit + 1`` as :mod:`zipfile` walks
    them (the declared count can lie; zipfile would build an object for every record there is)."""
    n, pos = 0, 0
    while pos + 46 <= len(directory) and directory[pos:pos + 4] == b"PK\x01\x02" and n <= limit:
        name_len, extra_len, comment_len = struct.unpack("<3H", directory[pos + 28:pos + 34])
        pos += 46 + name_len + extra_len + comment_len
        n += 1
    return n


class _CheckedFile(io.FileIO):
    """The zip, opened so that :mod:`zipfile` can parse no directory but the one checked: while
    ``armed`` (during ``ZipFile``'s constructor) a read longer than the end-record search must be that
    directory. Should a future zipfile find its directory another way, the submission is refused
    instead of parsed unchecked."""

    def __init__(self, path, start: int, size: int):
        super().__init__(path, "rb")
        self.start, self.size, self.armed = start, size, True

    def read(self, n: int | None = -1) -> bytes:
        if self.armed:
            at = self.tell()
            want = os.fstat(self.fileno()).st_size - at if n is None or n < 0 else n
            if want > _TAIL and (at != self.start or want > self.size):
                raise SubmissionError(f"not a readable zip file (zipfile would read {want} bytes at {at}, not "
                                      f"the {self.size}-byte directory at {self.start} that was checked)")
        return super().read(n)


class _Zip(zipfile.ZipFile):
    """A ZipFile that closes the file it was given (ZipFile leaves a file object open)."""

    def close(self) -> None:
        fp = self.fp
        try:
            super().close()
        finally:
            if fp is not None:
                fp.close()


def open_zip(path: Path, test_set: HiddenTestSet, limits: Limits) -> zipfile.ZipFile:
    """Open a zip after checking its entry count and directory size, read from the file's end records
    and counted in the directory itself, before :mod:`zipfile` parses anything."""
    size = path.stat().st_size
    if size < _END:
        raise SubmissionError(f"not a zip file ({size} bytes)")
    max_entries = limits.max_entries(test_set)
    with open(path, "rb") as f:
        n, cd_start, cd_size = _directory_extent(f, size)
        if cd_size > max_entries * _CENTRAL_RECORD_BYTES:
            raise SubmissionError(f"the zip's directory takes {cd_size} bytes; at most "
                                  f"{max_entries * _CENTRAL_RECORD_BYTES} are accepted")
        f.seek(cd_start)
        n = max(n, _count_records(f.read(cd_size), max_entries))
    if n > max_entries:
        raise SubmissionError(f"the zip has {n} entries; at most {max_entries} are accepted "
                              f"({len(test_set.ids)} test images, plus folders)")
    f = _CheckedFile(path, cd_start, cd_size)
    try:
        z = _Zip(f)
    except SubmissionError:
        f.close()
        raise
    except (zipfile.BadZipFile, ValueError, struct.error, EOFError, OSError, NotImplementedError) as e:
        f.close()
        raise SubmissionError(f"not a readable zip file ({e})") from None
    f.armed = False
    return z


def _assign(name: str, parts: tuple[str, ...], wanted, found: dict, problems: list) -> str | None:
    """The test id an entry named ``name`` predicts, or None after recording why it is refused."""
    base = parts[-1]
    stem, dot, ext = base.rpartition(".")
    if not dot or ext.lower() != "png" or stem not in wanted:
        problems.append(f"{shown(name)}: not a test image prediction; entries must be named <id>.png "
                        f"for an id of the test set")
        return None
    if stem in found:
        problems.append(f"{shown(name)}: test image {stem!r} appears twice (also {shown(found[stem].name)}); "
                        f"keep one")
        return None
    return stem


def zip_entries(z: zipfile.ZipFile, test_set: HiddenTestSet, limits: Limits) -> list[Entry]:
    """Every prediction of a zip, checked from its directory only; raises SubmissionError otherwise."""
    wanted = set(test_set.ids)
    found: dict[str, Entry] = {}
    problems: list[str] = []
    total = 0
    for info in z.infolist():
        name = info.filename.replace("\\", "/")
        if len(name) > limits.max_name_chars:
            problems.append(f"{shown(name)}: name longer than {limits.max_name_chars} characters")
            continue
        parts = PurePosixPath(name).parts
        if not parts:
            problems.append(f"{shown(name)}: an entry without a name")
            continue
        if info.is_dir() or _skipped(parts):
            continue
        image_id = _assign(name, parts, wanted, found, problems)
        if image_id is None:
            continue
        cap = limits.entry_cap(test_set.sizes[image_id])
        w, h = test_set.sizes[image_id]
        if info.compress_type not in _METHODS:
            method = _METHOD_NAMES.get(info.compress_type, f"method {info.compress_type}")
            problems.append(f"{shown(name)}: compressed with {method}; use deflate or no compression")
        elif info.flag_bits & 0x1:
            problems.append(f"{shown(name)}: encrypted; submit an unencrypted zip")
        elif info.file_size > cap:
            problems.append(f"{shown(name)}: declares {info.file_size} bytes uncompressed, more than the "
                            f"{cap} bytes a PNG of a {w}x{h} label map can need")
        elif info.file_size > limits.max_ratio * max(info.compress_size, 1):
            problems.append(f"{shown(name)}: compression ratio {info.file_size / max(info.compress_size, 1):.0f}:1 "
                            f"is above {limits.max_ratio:.0f}:1 (PNGs do not compress like that)")
        total += info.file_size
        found[image_id] = Entry(image_id, name, info.file_size, info=info)
    problems += _missing(test_set, found)
    if total > limits.total_cap(test_set):
        problems.append(f"entries declare {total} bytes uncompressed in all, more than the "
                        f"{limits.total_cap(test_set)} bytes the test set's PNGs can need")
    if problems:
        raise SubmissionError(_shorten(problems, limits.max_problems))
    return sorted(found.values(), key=lambda e: e.info.header_offset)  # read in file order


def folder_entries(folder: Path, test_set: HiddenTestSet, limits: Limits) -> list[Entry]:
    """Every prediction of a folder (``--score``), with the same naming rules as a zip.

    Only regular files inside the folder are read. Symbolic links (to files or folders) and other
    non-regular files are refused by name, and so is any file that is one of the hidden labels (a hard
    link, or the label folder itself given as the submission): issue 24 scored 100% with a folder of
    links to the hidden labels. Each file is opened without following links and must still be the file
    that was listed (:func:`read_entry`)."""
    wanted = set(test_set.ids)
    found: dict[str, Entry] = {}
    problems: list[str] = []
    hidden = _hidden_inodes(test_set)
    for dirpath, dirnames, filenames in os.walk(folder):  # never descends into a linked folder
        dirnames.sort()
        here = Path(dirpath)
        for d in list(dirnames):
            rel = (here / d).relative_to(folder)
            if (here / d).is_symlink():
                dirnames.remove(d)
                if not _skipped(rel.parts):
                    problems.append(f"{shown(rel.as_posix())}: a symbolic link to a folder; --score reads only "
                                    f"files inside the submission's folder, and follows no links")
        for name in sorted(filenames):
            path = here / name
            rel = path.relative_to(folder)
            if _skipped(rel.parts):
                continue
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                problems.append(f"{shown(rel.as_posix())}: a symbolic link; --score reads only files inside the "
                                f"submission's folder, and follows no links")
                continue
            if not stat.S_ISREG(st.st_mode):
                problems.append(f"{shown(rel.as_posix())}: not a regular file")
                continue
            if (st.st_dev, st.st_ino) in hidden:
                problems.append(f"{shown(rel.as_posix())}: is one of the hidden test labels (a hard link, or the "
                                f"label folder itself); submit predictions, not the labels")
                continue
            image_id = _assign(rel.as_posix(), rel.parts, wanted, found, problems)
            if image_id is not None:
                found[image_id] = Entry(image_id, rel.as_posix(), st.st_size, path=path,
                                        inode=(st.st_dev, st.st_ino))
    problems += _missing(test_set, found)
    if problems:
        raise SubmissionError(_shorten(problems, limits.max_problems), str(folder))
    return list(found.values())


def _hidden_inodes(test_set: HiddenTestSet) -> set[tuple[int, int]]:
    inodes = set()
    for image_id in test_set.ids:
        try:
            st = test_set.label_path(image_id).stat()
        except OSError:  # a missing label is the server's error, raised when it is read
            continue
        inodes.add((st.st_dev, st.st_ino))
    return inodes


def _missing(test_set: HiddenTestSet, found: dict) -> list[str]:
    missing = [i for i in test_set.ids if i not in found]
    if not missing:
        return []
    return [f"{len(missing)} of {len(test_set.ids)} test images have no prediction, e.g. "
            + ", ".join(shown(m + ".png") for m in missing[:3])]


def _shorten(problems: list[str], limit: int) -> list[str]:
    if len(problems) <= limit:
        return problems
    return problems[:limit] + [f"... and {len(problems) - limit} more problems"]


def read_entry(entry: Entry, z: zipfile.ZipFile | None, cap: int) -> bytes:
    """The bytes of one entry, reading at most ``cap + 1`` whatever its header says."""
    if entry.path is not None:
        data = _read_file(entry, cap)
    else:
        try:
            with z.open(entry.info) as f:
                data = f.read(cap + 1)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError, ValueError) as e:
            raise SubmissionError(f"{shown(entry.name)}: corrupt zip entry ({e})") from None
    if len(data) > cap:
        raise SubmissionError(f"{shown(entry.name)}: more than {cap} bytes once decompressed "
                              f"(declared {entry.declared_size})")
    return data


def _read_file(entry: Entry, cap: int) -> bytes:
    """A folder file, opened without following a link (nor waiting on a FIFO), and only if it is still
    the regular file that was listed: a link put in its place since is refused, not followed."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(entry.path, flags)
    except OSError as e:
        raise SubmissionError(f"{shown(entry.name)}: unreadable ({e.strerror or e}; links are not followed)") from None
    with open(fd, "rb") as f:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != entry.inode or not stat.S_ISREG(st.st_mode):
            raise SubmissionError(f"{shown(entry.name)}: replaced by another file while the folder was read")
        return f.read(cap + 1)
