"""Checkpoints: what a lipstudy checkpoint holds, and the one way any of them is read.

A checkpoint is ``torch.save``'s zip file: the trainer's (weights, optimiser, step, RNG states, the
log so far, the config: :mod:`lipstudy.train`) or a bundle's slim one (weights and config:
:func:`lipstudy.export.slim_checkpoint`). Every read, of a run's own checkpoint, a stage-1 run a stage 2 starts
from, the backbone, a bundle's, or the file ``lipstudy parse --checkpoint`` is handed, goes through
:func:`load_checkpoint`, because a checkpoint may come from elsewhere and a pickle read with
``weights_only=False`` runs whatever code its author put in it. So:

* the file must be a zip whose records are stored, not compressed (``torch.save`` never
  compresses; torch would inflate a compressed record however large it declares itself), with a
  central directory and a pickle of bounded size;
* it is unpickled with ``torch.load(weights_only=True)``, which builds tensors, containers and
  plain numbers only, plus an explicit allow-list: numpy's uint32 arrays, the one non-tensor type
  a checkpoint written before the RNG states were tensors holds (numpy's MT19937 key);
* what comes out must be a lipstudy checkpoint: known fields, weights as named tensors, a config
  that is a :class:`~lipstudy.config.TrainConfig`, RNG states of the expected shapes; anything else
  is refused with a ValueError naming the file, before a network is built from it.

:func:`check_weights` compares a checkpoint's tensors (names, shapes, dtypes) with those of the
network its config builds (:func:`expected_tensors` builds it on the meta device: no memory, no
arithmetic).
"""
from __future__ import annotations

import dataclasses
import os
import pickle
import random
import zipfile
from pathlib import Path

import numpy as np
import torch

from .config import TrainConfig, build_network

CHECKPOINT = "checkpoint.pt"
"""A run folder's checkpoint file (weights, optimiser, step, RNG states, log, config)."""

FIELDS = {"model", "config", "slim", "optimizer", "step", "epoch", "step_in_epoch", "log", "epoch_stats", "rng",
          "finished", "world_size"}
"""The fields a lipstudy checkpoint may hold: the trainer's (:func:`lipstudy.train.save_checkpoint`)
and ``slim`` (a bundle's weights-and-config checkpoint)."""
SLIM_FIELDS = {"model", "config", "slim"}

# What a checkpoint of this project holds is small apart from its tensors: the largest network's
# state dict has 177 tensors (SegNet), an AdamW state two more per parameter, and its pickle
# (names, config, log, Python's RNG state) a few tens of kilobytes.
MAX_RECORDS = 4096
MAX_PICKLE = 4 << 20

_RECONSTRUCT = np._core.multiarray._reconstruct
_NUMPY_MT19937 = (np.dtypes.UInt32DType, np.ndarray, np.dtype, _RECONSTRUCT,
                  (_RECONSTRUCT, "numpy.core.multiarray._reconstruct"))
"""The allow-list beyond torch's own: numpy's uint32 array, as the numpy RNG state of a checkpoint
written before :func:`rng_state` kept it as a tensor pickles it (numpy 1's module name too). No
other dtype can be built (an object array needs ``ObjectDType``), and the array may appear only as
that state's key (:func:`_check_rng`)."""


# ----------------------------------------------------------------------------- the RNG state

def rng_state() -> dict:
    """Every random generator a run draws from (torch, CUDA, numpy, Python), for a checkpoint, as
    tensors and plain numbers, which ``weights_only`` unpickling reads without running code:
    numpy's legacy MT19937 state becomes its 624-word key as an int64 tensor, the position, and
    the cached Gaussian."""
    _, key, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    state = {"torch": torch.get_rng_state(),
             "numpy": {"key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                       "gauss": float(gauss)},
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore :func:`rng_state`'s generators (a resumed run draws what the uninterrupted one drew)."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _check_rng(rng, where: str) -> dict:
    """``rng`` as :func:`rng_state` makes it; a legacy numpy state (numpy's own tuple) converted."""
    if not isinstance(rng, dict) or not {"torch", "numpy", "python"} <= set(rng) \
            or not set(rng) <= {"torch", "numpy", "python", "cuda"}:
        raise ValueError(f"{where}: its RNG state is not one a lipstudy run saves")
    n = rng["numpy"]
    if isinstance(n, tuple) and len(n) == 5 and n[0] == "MT19937" and isinstance(n[1], np.ndarray):
        n = {"key": torch.from_numpy(n[1].astype(np.int64)), "pos": n[2], "has_gauss": n[3], "gauss": n[4]}
    ok = (isinstance(n, dict) and set(n) == {"key", "pos", "has_gauss", "gauss"}
          and isinstance(n["key"], torch.Tensor) and n["key"].shape == (624,) and n["key"].dtype == torch.int64
          and isinstance(n["pos"], int) and isinstance(n["has_gauss"], int) and isinstance(n["gauss"], float)
          and isinstance(rng["torch"], torch.Tensor) and rng["torch"].dtype == torch.uint8 and rng["torch"].dim() == 1
          and isinstance(rng["python"], tuple) and len(rng["python"]) == 3
          and all(isinstance(c, torch.Tensor) for c in rng.get("cuda", [])))
    if not ok:
        raise ValueError(f"{where}: its RNG state is not one a lipstudy run saves")
    return {**rng, "numpy": n}


# ----------------------------------------------------------------------------- reading

def zip_records(path, max_records: int) -> list[zipfile.ZipInfo]:
    """The records of zip file ``path``, refused (ValueError) when its central directory is larger
    than ``max_records`` records take, before zipfile builds an object per record."""
    with open(path, "rb") as f:
        end = zipfile._EndRecData(f)  # zipfile's own reading of the end record, as ZipFile reads it
        if end is None:
            raise zipfile.BadZipFile("no zip end record")
        if end[zipfile._ECD_SIZE] > max_records * 512:
            raise ValueError(f"a zip directory of {end[zipfile._ECD_SIZE]:,} bytes, more than {max_records} "
                             f"records take")
        infos = zipfile.ZipFile(f).infolist()
    if len(infos) > max_records:
        raise ValueError(f"{len(infos)} zip records, more than {max_records}")
    return infos


def _check_container(path: Path) -> None:
    """Refuse a file that is not a zip of stored records of bounded number, as ``torch.save`` writes,
    before torch reads it: a compressed record would be inflated to whatever size it declares."""
    try:
        infos = zip_records(path, MAX_RECORDS)
    except (OSError, zipfile.BadZipFile, ValueError, EOFError) as e:
        raise ValueError(f"{path}: not a readable checkpoint (not torch's zip format: {e})") from None
    pickles = [i for i in infos if i.filename.endswith("/data.pkl")]
    if len(pickles) != 1:
        raise ValueError(f"{path}: not a lipstudy checkpoint ({len(pickles)} pickles in its zip)")
    packed = [i.filename for i in infos if i.compress_type != zipfile.ZIP_STORED or i.file_size != i.compress_size]
    if packed:
        raise ValueError(f"{path}: not a lipstudy checkpoint (compressed record {packed[0]!r}: torch.save stores "
                         f"its records uncompressed)")
    if pickles[0].file_size > MAX_PICKLE:
        raise ValueError(f"{path}: not a lipstudy checkpoint (a pickle of {pickles[0].file_size:,} bytes; "
                         f"at most {MAX_PICKLE:,})")


def _check_plain(obj, where: str) -> None:
    """Refuse any object but containers, plain numbers, strings and tensors (numpy arrays are
    allowed only as the legacy RNG key, which :func:`_check_rng` converts first)."""
    stack = [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, dict):
            if not all(isinstance(k, (str, int)) for k in o):
                raise ValueError(f"{where}: not a lipstudy checkpoint (a dict with keys of another type)")
            stack.extend(o.values())
        elif isinstance(o, (list, tuple)):
            stack.extend(o)
        elif not (o is None or isinstance(o, (bool, int, float, str, torch.Tensor))):
            raise ValueError(f"{where}: not a lipstudy checkpoint (it holds a {type(o).__module__}."
                             f"{type(o).__qualname__})")


_PLAIN = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "None": (type(None),)}


def _fits(value, annotation: str) -> bool:
    """Whether ``value`` is of a TrainConfig field's annotated type ("float | None", ...)."""
    kinds = annotation.split(" | ")
    if not all(k in _PLAIN for k in kinds):
        return True  # a field of another type: TrainConfig checks it
    if isinstance(value, bool):  # a bool is an int to isinstance: only a bool field takes one
        return "bool" in kinds
    return any(isinstance(value, _PLAIN[k]) for k in kinds)


def config_of(ckpt: dict, where) -> TrainConfig:
    """The TrainConfig of a checkpoint; ValueError naming ``where`` when its config is not one (an
    unknown field, a value of the wrong type, or one the config refuses)."""
    raw = ckpt["config"]
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: its config is not a TrainConfig")
    types = {f.name: str(f.type) for f in dataclasses.fields(TrainConfig)}
    wrong = [f"{k}={v!r}" for k, v in raw.items() if k in types and not _fits(v, types[k])]
    if wrong:
        raise ValueError(f"{where}: its config is not a TrainConfig (of the wrong type: {', '.join(wrong[:3])})")
    try:
        return TrainConfig.from_dict(raw)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: its config is not a TrainConfig ({e})") from None


def _refusal(e: pickle.UnpicklingError) -> str:
    """What torch's weights-only unpickler refused, in one line (its message's last paragraph)."""
    paragraphs = [p.strip() for p in str(e).split("Check the documentation")[0].split("\n\n") if p.strip()]
    reason = (paragraphs or [""])[-1].split("WeightsUnpickler error:")[-1].split(" Please use")[0]
    return " ".join(reason.split())[:300]


def load_checkpoint(path, map_location="cpu") -> dict:
    """A lipstudy checkpoint as a dict, read without running code from it (see the module's
    docstring); ValueError naming the file when it is not one, FileNotFoundError when absent. The
    RNG state comes back as :func:`rng_state` makes it, whichever form the file keeps it in."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    _check_container(path)
    try:
        with torch.serialization.safe_globals(list(_NUMPY_MT19937)):
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(f"{path}: refused: not a lipstudy checkpoint, its pickle asks for more than tensors, numbers "
                         f"and strings ({_refusal(e)}): reading it could run code") from None
    except Exception as e:  # noqa: BLE001 - a damaged record or pickle: a bad file either way
        raise ValueError(f"{path}: not a readable checkpoint ({' '.join(str(e).split())[:300]})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise ValueError(f"{path}: not a lipstudy checkpoint (no 'model' / 'config')")
    unknown = sorted(str(k) for k in set(ckpt) - FIELDS)
    if unknown:
        raise ValueError(f"{path}: not a lipstudy checkpoint (unknown fields: {', '.join(unknown)})")
    if "rng" in ckpt:
        ckpt["rng"] = _check_rng(ckpt["rng"], str(path))
    _check_plain(ckpt, str(path))
    weights = ckpt["model"]
    if not isinstance(weights, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                for k, v in weights.items()):
        raise ValueError(f"{path}: not a lipstudy checkpoint (its 'model' is not a state dict of named tensors)")
    config_of(ckpt, path)
    return ckpt


# ----------------------------------------------------------------------------- the network

def network_tensors(net: torch.nn.Module) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Name -> (shape, dtype) of every tensor of ``net``'s state dict."""
    return {k: (tuple(v.shape), v.dtype) for k, v in net.state_dict().items()}


def expected_tensors(cfg: TrainConfig) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """:func:`network_tensors` of the network ``cfg`` builds, built on the meta device (no weights
    are allocated, no file is read)."""
    plain = dataclasses.replace(cfg, pretrained=None, backbone_init=None, init=None)
    with torch.device("meta"):
        return network_tensors(build_network(plain))


def check_weights(weights: dict, want: dict, cfg: TrainConfig, where) -> None:
    """ValueError naming ``where`` unless ``weights`` holds exactly the tensors ``want`` (names,
    shapes, dtypes: :func:`network_tensors` of the network ``cfg`` builds)."""
    missing = [k for k in want if k not in weights]
    extra = [k for k in weights if k not in want]
    wrong = [f"{k} {tuple(weights[k].shape)} {weights[k].dtype} (expected {want[k][0]} {want[k][1]})"
             for k in want if k in weights and (tuple(weights[k].shape), weights[k].dtype) != want[k]]
    if missing or extra or wrong:
        parts = [f"{label} {', '.join(names[:3])}{', ...' if len(names) > 3 else ''}"
                 for label, names in (("missing", missing), ("unexpected", extra), ("wrong", wrong)) if names]
        raise ValueError(f"{where}: its weights are not those of the network its config builds ({cfg.model}, width "
                         f"{cfg.width:g}, {cfg.num_classes} classes): {'; '.join(parts)}")


def model_from_checkpoint(path, device="cpu") -> tuple[torch.nn.Module, TrainConfig]:
    """Rebuild the network a checkpoint was trained as, with its weights, in eval mode; ValueError
    naming the file when it is not a lipstudy checkpoint or its weights are not its network's (the
    network is built from the checked config, and the weights compared with it before loading)."""
    ckpt = load_checkpoint(path)
    cfg = config_of(ckpt, path)
    model = build_network(dataclasses.replace(cfg, pretrained=None, backbone_init=None))
    check_weights(ckpt["model"], network_tensors(model), cfg, path)
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), cfg


def load_backbone(model: torch.nn.Module, path) -> None:
    """Copy the backbone of a pretraining checkpoint (``lipstudy.train`` format, model
    ``"backbone"``) into ``model``'s VGG-16, which must have the same width and batch norms.
    Raises ValueError naming the file when it is not a checkpoint or its backbone does not fit."""
    from .models import backbone_of

    try:
        ckpt = load_checkpoint(path)
    except (ValueError, FileNotFoundError) as e:  # a missing / corrupt / foreign file: say which
        raise ValueError(f"{os.fspath(path)}: not a readable pretraining checkpoint ({e})") from None
    weights = {k[len("backbone."):]: v for k, v in ckpt["model"].items() if k.startswith("backbone.")}
    try:
        backbone_of(model).load_state_dict(weights)
    except RuntimeError as e:
        raise ValueError(f"{os.fspath(path)}: its backbone does not fit this model (same width and "
                         f"batch_norm=True needed): {' '.join(str(e).split())[:300]}") from e


def save_slim(weights: dict, config: dict, out) -> None:
    """A slim checkpoint (weights and config: what rebuilds the network) into ``out`` (a path or a
    binary file)."""
    torch.save({"model": weights, "config": config, "slim": True}, out)

