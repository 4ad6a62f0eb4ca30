"""A bundle read as the untrusted file it is: bounded, streamed, hashed.

A bundle (:mod:`lipstudy.bundles`) comes from another machine, and its manifest's hashes prove only
that it is intact: whoever crafted a member wrote the manifest too. So reading one trusts no size
it declares:

* the limits come from this checkout's profile (:func:`limits`): the largest slim checkpoint its
  networks can have, the sparse matrices of its largest evaluated split, the label maps of a figure
  set, the number of runs a book of it holds; the manifest's own size is bounded too;
* ``manifest.json`` is the first member, read only when its tar header says it is within
  :data:`MANIFEST_LIMIT`; every file it lists must be a file a run holds, within that kind's limit,
  and no run may list more files than a run has, all before any other member is read;
* each member's tar header must then agree with the manifest (name, size) before its data is read,
  and the data is streamed in bounded pieces into a folder, hashed on the way; a header that is not a
  regular file (pax or GNU extended headers, whose bodies tarfile would read whole) is refused as it
  is parsed;
* the .xz stream is decompressed in pieces no larger than what tarfile asks for, with the decoder's
  memory bounded (an .xz stream declares its dictionary size, up to 4 GiB).

So the memory an import takes does not depend on what the bundle declares, and the disk it takes
is bounded by the profile's limits. What the members hold (a checkpoint's tensors, the matrices'
shapes) is checked by :mod:`lipstudy.bundles` on import.
"""
from __future__ import annotations

import functools
import hashlib
import json
import lzma
import math
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

from .data.roots import profile_datasets
from .data.synth.topup import CHALLENGE_TYPES
from .evaluate import JOINT_TERMS
from .models.attention import SCALES
from .labels import DATASETS
from .profiles import PROFILES, get_profile
from .runs import MODEL_LABELS, book_runs, with_ancestors
from .showcase import FIG8_PANELS, FIGURE_SETS, SSL_IMAGES, photo_paths

FORMAT, FORMAT_VERSION = "lipstudy-bundle", 1
MANIFEST = "manifest.json"
RUN_FILES = ("config.json", "train_config.json", "provenance.json", "train_log.json")
OLD_RUN_FILES = ("train_log.csv",)
"""What bundles written before the training log was JSON only also hold: read, within the text limit."""
SPARSE = "per_image_cm.sparse.npz"
# An evaluation's per-image joint terms (9 squared distances and two presence flags per image) are far
# under a confusion matrix's bytes, so they are bounded as the matrices are.
MANIFEST_FIELDS = {"profile": str, "engine_version": str, "data": str, "datasets": dict, "runs": list,
                   "matrices": dict, "files": dict}

# A manifest lists each file in about 170 bytes (name, sha256, size): 2 MiB holds 12,000 files, more
# than twice the most any profile's limits allow (1 + runs x files per run).
MANIFEST_LIMIT = 2 << 20
# A run's config, provenance, log (one row per epoch) and an evaluation's metrics are a few kilobytes.
TEXT_LIMIT = 1 << 20
# Evaluations of one run a bundle may hold: val, val-flip, val-ms, test, atr and Table 6's input
# sizes are 8 in every profile.
MAX_EVALUATIONS = 16
# The seeds a bundle's runs may span (a profile's book uses up to 3).
MAX_SEEDS = 10
# Torch's zip around each tensor of a slim checkpoint (local and central headers, alignment, its
# pickled name) and the pickle of its config: measured under 500 bytes a tensor and 8 KiB.
RECORD_BYTES, PICKLE_BYTES = 1024, 64 << 10
# An evaluation's sparse matrices per image: C x C cells of a 16-bit index and at most a 64-bit
# count, the count of cells, and its id (numpy stores ids as 4-byte characters, 64 of them at most).
ID_CHARS = 64
# LIP's largest split (val and test: 10,000 images each), for bundles of runs on real LIP; and the
# side of a LIP-scale image (LIP's photos are person crops a few hundred pixels a side).
REAL_LIP_IMAGES, FULL_SCALE_SIDE = 10_000, 1024
# xz -9 needs 65 MiB to decompress; export writes preset 6 (9 MiB).
XZ_MEMLIMIT = 128 << 20
CHUNK = 1 << 20

_EVAL = r"eval/(?:val|val-flip|val-ms|test|atr|challenge|val@\d{1,5})"
_KINDS = {"text": re.compile(rf"(?:{'|'.join(map(re.escape, RUN_FILES + OLD_RUN_FILES))}|metrics\.json|"
                            rf"{_EVAL}/metrics\.json)"),
          "checkpoint": re.compile(r"checkpoint\.pt"),
          "matrices": re.compile(rf"{_EVAL}/(?:{re.escape(SPARSE)}|{re.escape(JOINT_TERMS)})"),
          "attention": re.compile(r"attention/(?:val|maps)\.npz"),
          "figures": re.compile(rf"figures/(?:{'|'.join(FIGURE_SETS)})\.npz")}
_RUN_MEMBER = re.compile(r"runs/([0-9a-f]{16})/([A-Za-z0-9_.@-]+(?:/[A-Za-z0-9_.@-]+){0,2})")


class BundleError(ValueError):
    """A bundle that cannot be written or read; the message names the file, the run and the problem."""


# ----------------------------------------------------------------------------- limits

@functools.lru_cache(maxsize=None)
def largest_checkpoint(width: float) -> int:
    """Bytes of the largest slim checkpoint of a network of ``width``: any of the networks (and the
    pretraining backbone), with or without batch norm, for any label set, built on the meta device,
    with torch's zip records around its tensors."""
    from .checkpoints import expected_tensors
    from .config import TrainConfig

    best = 0
    for model in MODEL_LABELS:
        for classes in sorted({len(d["classes"]) for d in DATASETS.values()}):
            for batch_norm in (None, True):
                tensors = expected_tensors(TrainConfig(model=model, width=width, num_classes=classes,
                                                       batch_norm=batch_norm))
                size = sum(math.prod(shape) * dtype.itemsize + RECORD_BYTES for shape, dtype in tensors.values())
                best = max(best, size)
    return best + PICKLE_BYTES


@dataclass(frozen=True)
class Limits:
    """The most a bundle of one profile may hold, in bytes per member by kind, and in number."""

    profile: str
    checkpoint: int
    matrices: int
    figures: int
    images: int  # the most images one evaluation scores
    runs: int
    attention: int = 0  # an Attention run's weights: the validation summary, the Fig. 8 weight maps
    text: int = TEXT_LIMIT
    evaluations: int = MAX_EVALUATIONS

    @property
    def files_per_run(self) -> int:
        return len(RUN_FILES + OLD_RUN_FILES) + 2 + 2 * self.evaluations + 1 + len(FIGURE_SETS) + 2

    @property
    def run_bytes(self) -> int:
        return (self.checkpoint + self.evaluations * (self.matrices + self.text) + self.matrices
                + len(FIGURE_SETS) * self.figures + 2 * self.attention + (len(RUN_FILES + OLD_RUN_FILES) + 1) * self.text)

    @property
    def members(self) -> int:
        return 1 + self.runs * self.files_per_run

    def of(self, kind: str) -> int:
        return {"text": self.text, "checkpoint": self.checkpoint, "matrices": self.matrices,
                "figures": self.figures, "attention": self.attention}[kind]


def limits(profile, real_data: bool = False) -> Limits:
    """What a bundle of ``profile``'s runs can hold (``real_data``: its LIP runs trained on real LIP)."""
    prof = get_profile(profile)
    specs = (prof.lip_data, prof.ppp_data, prof.atr_data)
    images = max(max(d.get("val", 0), d.get("test", 0)) for d in specs)
    # the challenge top-up keeps an image only while a type it shows is short of its target
    images = max(images, len(CHALLENGE_TYPES) * (prof.challenge_topup or 0))
    if real_data or prof.lip_data.get("max_side") is None:
        images = max(images, REAL_LIP_IMAGES)
    classes = max(len(d["classes"]) for d in DATASETS.values())
    matrices = images * (classes * classes * (2 + 8) + 8 + 4 * ID_CHARS) + (64 << 10)
    side = max([d.get("max_side") or FULL_SCALE_SIDE for d in specs] + [FULL_SCALE_SIDE if real_data else 0])
    photos = photo_paths()
    if photos:
        from PIL import Image

        side = max([side] + [max(Image.open(p).size) for p in photos])
    per_set = max(len(FIG8_PANELS), SSL_IMAGES, len(photos), 1)  # fig8, ssl, photos, cihp
    figures = per_set * side * side + (64 << 10)
    # float16 weights per scale and pixel of each Fig. 8 image; per validation image a few numbers per scale
    attention = len(FIG8_PANELS) * len(SCALES) * side * side * 2 + images * (8 * (len(SCALES) + 4) + 4 * ID_CHARS)
    runs = len(with_ancestors(book_runs(prof, range(MAX_SEEDS)), prof))
    return Limits(prof.name, largest_checkpoint(prof.width), matrices, figures, images, runs,
                  attention + (64 << 10))


def member_kind(relative: str) -> str | None:
    """The kind of a run's bundle member by its name under ``runs/<key>/`` (None: not one)."""
    return next((kind for kind, pattern in _KINDS.items() if pattern.fullmatch(relative)), None)


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


# ----------------------------------------------------------------------------- the manifest

def check_manifest(path: Path, manifest) -> Limits:
    """Refuse a manifest that is not a bundle's, or lists more, or larger files than a bundle of its
    profile can hold; return that profile's limits."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT \
            or manifest.get("format_version") != FORMAT_VERSION:
        said = (manifest.get("format"), manifest.get("format_version")) if isinstance(manifest, dict) else (None, None)
        raise BundleError(f"{path}: not a {FORMAT} of version {FORMAT_VERSION} (manifest says {said[0]!r} {said[1]!r})")
    missing = [k for k, t in MANIFEST_FIELDS.items() if not isinstance(manifest.get(k), t)]
    missing += [f"runs[{i}]" for i, r in enumerate(manifest.get("runs") or [])
                if not isinstance(r, dict) or not {"key", "label", "run", "finished_ns"} <= set(r)
                or not re.fullmatch(r"[0-9a-f]{16}", str(r["key"])) or not isinstance(r["run"], dict)
                or not isinstance(r["finished_ns"], int)]
    if missing:
        raise BundleError(f"{path}: its manifest lacks or garbles {', '.join(missing)}")
    if manifest["profile"] not in PROFILES:
        raise BundleError(f"{path}: its runs are of profile {manifest['profile']!r}, unknown to this checkout "
                          f"(profiles: {', '.join(PROFILES)})")
    lim = limits(manifest["profile"], manifest["data"] == "real")
    foreign = sorted(set(manifest["datasets"]) - set(profile_datasets(manifest["profile"])))
    if foreign or not all(isinstance(m, dict) for m in manifest["matrices"].values()):
        raise BundleError(f"{path}: its manifest garbles datasets or matrices"
                          + (f" (datasets {', '.join(map(repr, foreign[:3]))} are not profile "
                             f"{lim.profile}'s)" if foreign else ""))
    keys = [r["key"] for r in manifest["runs"]]
    if len(keys) > lim.runs or len(set(keys)) != len(keys):
        raise BundleError(f"{path}: its manifest lists {len(keys)} runs ({len(set(keys))} distinct); a bundle of "
                          f"profile {lim.profile} holds at most {lim.runs}, each once")
    owner = {k: f"run {r['label']!r} ({k})" for k, r in zip(keys, manifest["runs"])}
    per_run: dict[str, int] = {}
    total = 0
    for name, entry in manifest["files"].items():
        m = _RUN_MEMBER.fullmatch(name)
        if m is None or m.group(1) not in owner:
            raise BundleError(f"{path}: {name} belongs to no run of the manifest")
        kind = member_kind(m.group(2))
        if kind is None:
            raise BundleError(f"{path}: {name} ({owner[m.group(1)]}) is not a file a bundle holds")
        if not isinstance(entry, dict) or not isinstance(entry.get("bytes"), int) or entry["bytes"] < 0 \
                or not re.fullmatch(r"[0-9a-f]{64}", str(entry.get("sha256"))):
            raise BundleError(f"{path}: its manifest garbles the entry of {name}")
        if entry["bytes"] > lim.of(kind):
            raise BundleError(f"{path}: {name} ({owner[m.group(1)]}) declares {entry['bytes']:,} bytes, more than a "
                              f"{kind} file of profile {lim.profile} can hold ({lim.of(kind):,} bytes)")
        per_run[m.group(1)] = per_run.get(m.group(1), 0) + 1
        total += entry["bytes"]
    crowded = [k for k, n in per_run.items() if n > lim.files_per_run]
    if crowded:
        raise BundleError(f"{path}: {owner[crowded[0]]} lists {per_run[crowded[0]]:,} files; a run of profile "
                          f"{lim.profile} has at most {lim.files_per_run}")
    if total > len(keys) * lim.run_bytes:
        raise BundleError(f"{path}: its files declare {_mib(total)}, more than {len(keys)} runs of profile "
                          f"{lim.profile} can hold ({_mib(len(keys) * lim.run_bytes)})")
    return lim


# ----------------------------------------------------------------------------- the archive

class _Header(tarfile.TarInfo):
    """A tar header that must be a regular file: anything else (a directory, a link, and above all a
    pax or GNU extended header, whose body tarfile reads whole, whatever size it declares) is
    refused as the header is parsed, before tarfile reads more."""

    def _proc_member(self, tarfile_):
        if self.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
            raise BundleError(f"unexpected member {self.name!r} of type {self.type!r} (a bundle holds regular "
                              f"files only)")
        return super()._proc_member(tarfile_)


class _Xz:
    """The decompressed bytes of an .xz file, one stream as :func:`lipstudy.export.export` writes,
    read in pieces of at most the size asked for, with the decoder's memory bounded."""

    def __init__(self, raw):
        self.raw = raw
        self.decoder = lzma.LZMADecompressor(lzma.FORMAT_XZ, memlimit=XZ_MEMLIMIT)

    def read(self, n: int = CHUNK) -> bytes:
        n = CHUNK if n is None or n < 0 else n
        while not self.decoder.eof:
            chunk = b""
            if self.decoder.needs_input:
                chunk = self.raw.read(64 << 10)
                if not chunk:
                    raise EOFError("the .xz stream ends early")
            data = self.decoder.decompress(chunk, max_length=n)
            if data:
                return data
        return b""


def _members(path: Path):
    """The bundle's tar read through :class:`_Xz`, member by member, in stream mode (no seeking)."""
    with open(path, "rb") as raw, tarfile.open(fileobj=_Xz(raw), mode="r|", tarinfo=_Header) as tar:
        for info in tar:
            yield info, tar.extractfile(info)


def _read_small(stream, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise EOFError("a member ends early")
    return data


def read_manifest(path) -> dict:
    """A bundle's manifest, checked (:func:`check_manifest`), without reading any other member."""
    path = Path(path)
    if not path.is_file():
        raise BundleError(f"{path}: no such bundle")
    try:
        for info, stream in _members(path):
            return _parse_manifest(path, info, stream)[0]
    except BundleError as e:
        raise BundleError(str(e) if str(e).startswith(str(path)) else f"{path}: {e}") from None
    except (tarfile.TarError, EOFError, OSError, lzma.LZMAError) as e:
        raise BundleError(f"{path}: not a readable bundle ({e})") from None
    raise BundleError(f"{path}: an empty archive, not a bundle")


def _parse_manifest(path: Path, info, stream) -> tuple[dict, Limits]:
    if info.name != MANIFEST:
        raise BundleError(f"{path}: its first member is {info.name!r}; a bundle starts with its {MANIFEST}")
    if info.size > MANIFEST_LIMIT:
        raise BundleError(f"{path}: its {MANIFEST} is {info.size:,} bytes; a manifest is at most "
                          f"{MANIFEST_LIMIT:,}")
    try:
        manifest = json.loads(_read_small(stream, info.size))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise BundleError(f"{path}: no readable {MANIFEST} ({type(e).__name__}: {str(e)[:200]})") from None
    return manifest, check_manifest(path, manifest)


def read_bundle(path, folder) -> tuple[dict, dict[str, Path]]:
    """Check bundle ``path``'s manifest (:func:`check_manifest`), then stream every member into
    ``folder`` (under its name, ``runs/<key>/...``), each checked against the manifest: listed, of
    the listed size before its data is read, of the listed sha256 once read, none missing. Returns
    the manifest and ``{name: file}``. ``folder`` must be empty; on a refusal it holds what was
    streamed so far (the caller removes it: :func:`lipstudy.bundles.import_bundle` reads into a
    temporary folder)."""
    path, folder = Path(path), Path(folder)
    if not path.is_file():
        raise BundleError(f"{path}: no such bundle")
    files: dict[str, Path] = {}
    manifest = None
    try:
        for info, stream in _members(path):
            if manifest is None:
                manifest, lim = _parse_manifest(path, info, stream)
                listed = manifest["files"]
                owner = {f"runs/{r['key']}/": f"run {r['label']!r} ({r['key']})" for r in manifest["runs"]}
                continue
            name = info.name
            if name in files or name == MANIFEST or _RUN_MEMBER.fullmatch(name) is None:
                raise BundleError(f"{path}: unexpected member {name!r} (a bundle holds {MANIFEST} and runs/<key>/ "
                                  f"files, each once)")
            who = next((w for prefix, w in owner.items() if name.startswith(prefix)), None)
            if who is None:
                raise BundleError(f"{path}: {name} belongs to no run of the manifest")
            if name not in listed:
                raise BundleError(f"{path}: {name} ({who}) is not listed in the manifest")
            if info.size != listed[name]["bytes"]:
                raise BundleError(f"{path}: {name} ({who}) is {info.size:,} bytes in the archive, "
                                  f"{listed[name]['bytes']:,} in the manifest")
            files[name] = folder / name
            if _stream_to(files[name], stream, info.size) != listed[name]["sha256"]:
                raise BundleError(f"{path}: {name} ({who}) is corrupt: its sha256 differs from the manifest's")
    except BundleError as e:
        raise BundleError(str(e) if str(e).startswith(str(path)) else f"{path}: {e}") from None
    except (tarfile.TarError, EOFError, OSError, lzma.LZMAError) as e:
        raise BundleError(f"{path}: not a readable bundle ({e})") from None
    if manifest is None:
        raise BundleError(f"{path}: an empty archive, not a bundle")
    gone = sorted(set(listed) - set(files))
    if gone:
        who = next(w for prefix, w in owner.items() if gone[0].startswith(prefix))
        raise BundleError(f"{path}: {gone[0]} ({who}) is missing")
    return manifest, files


def _stream_to(dest: Path, stream, size: int) -> str:
    """Copy exactly ``size`` bytes of ``stream`` into a new file ``dest``, a piece at a time; return
    their sha256."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest, left = hashlib.sha256(), size
    with open(dest, "xb") as out:
        while left:
            piece = stream.read(min(CHUNK, left))
            if not piece:
                raise EOFError(f"{dest.name} ends early")
            digest.update(piece)
            out.write(piece)
            left -= len(piece)
    return digest.hexdigest()
