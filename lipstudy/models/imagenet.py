"""The ImageNet VGG-16 weights the paper's networks start from, found or fetched as torchvision
fetches them.

The paper starts every baseline from ImageNet VGG-16 ("We use the pre-trained models and networks
settings provided by DeepLabV2", Section 5.1; SegNet from VGG-16 with batch norm). We use
torchvision's published files, read by :func:`lipstudy.models.vgg.read_torchvision_vgg`:

- ``vgg16``    -> ``vgg16-397923af.pth``    (DeepLabV2, Attention, FCN-8s)
- ``vgg16_bn`` -> ``vgg16_bn-6c64b313.pth`` (SegNet)

:func:`weights_file` looks in the torch hub cache (``torch.hub.get_dir()/checkpoints``, i.e.
``$TORCH_HOME/hub/checkpoints``, where torchvision, timm and mmsegmentation keep the same files)
and otherwise downloads the file there with ``torch.hub.download_url_to_file``, checking the
sha256 prefix that the file name carries (as ``load_state_dict_from_url(check_hash=True)`` does).
The download goes to a temporary name and is renamed when complete and verified, so a cut
connection or a wrong file leaves nothing behind. A cached copy is reused without rehashing it (as
torchvision does): the run key records its name and size. Weights of one's own go in the same
place under torchvision's name. :func:`weights_for` only looks (a run key is computed without a
download); :func:`fetch_all` fetches, before a build generates data or trains.
"""
from __future__ import annotations

import os
from pathlib import Path

URLS: dict[str, str] = {
    "vgg16": "https://download.pytorch.org/models/vgg16-397923af.pth",
    "vgg16_bn": "https://download.pytorch.org/models/vgg16_bn-6c64b313.pth",
}
"""torchvision's published ImageNet weights, by architecture: the one place the URLs are written."""

class WeightsUnavailable(FileNotFoundError):
    """The ImageNet weights are neither cached nor downloadable; the message says where to put them."""


def arch_of(model: str) -> str:
    """The ImageNet network a baseline starts from: VGG-16-BN for SegNet, VGG-16 otherwise."""
    return "vgg16_bn" if model == "segnet" else "vgg16"


def cache_dir() -> Path:
    """Where torch.hub keeps downloaded weights (follows ``$TORCH_HOME`` at every call)."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def _check_arch(arch: str) -> None:
    if arch not in URLS:
        raise ValueError(f"unknown ImageNet network {arch!r}; choose one of {', '.join(URLS)}")


def cached_path(arch: str) -> Path:
    """The path of torchvision's file for ``arch`` in the torch hub cache (present or not)."""
    _check_arch(arch)
    return cache_dir() / os.path.basename(URLS[arch])


def _instructions(arch: str) -> str:
    path = cached_path(arch)
    return (f"download {URLS[arch]} and place it as {path.name} in {path.parent} (the torch hub cache, "
            f"$TORCH_HOME/hub/checkpoints); weights of your own go there under that name, as a torchvision-format "
            f"{arch} state dict (torch.save(torchvision.models.{arch}(weights='IMAGENET1K_V1').state_dict(), path))")


def weights_file(arch: str, download: bool = True, progress: bool = False) -> str:
    """The file of ``arch``'s ImageNet weights (``"vgg16"`` or ``"vgg16_bn"``): torchvision's file
    in the torch hub cache, downloaded there first when missing (``download``). Raises
    :class:`WeightsUnavailable` naming the URL, the file name and the cache folder when there is
    none; nothing is left half-written."""
    path = cached_path(arch)
    if path.is_file():
        return str(path)
    if not download:
        raise WeightsUnavailable(f"ImageNet {arch} weights: not in the torch hub cache; {_instructions(arch)}")
    _download(arch, path, progress)
    return str(path)


def weights_for(model: str) -> str:
    """The cached ImageNet weights file network ``model`` starts from (:func:`arch_of`), without
    downloading it (:class:`WeightsUnavailable` when it is not cached): what a run key records."""
    return weights_file(arch_of(model), download=False)


def fetch_all(progress: bool = True) -> dict[str, str]:
    """Every ImageNet weights file the paper's networks start from, fetched now when missing:
    ``{architecture: path}``. A build calls it before it generates data or trains anything, so a
    missing file stops it at once."""
    return {arch: weights_file(arch, download=True, progress=progress) for arch in URLS}


def _download(arch: str, path: Path, progress: bool) -> None:
    import torch.hub

    from ..locks import file_lock

    url = URLS[arch]
    match = torch.hub.HASH_REGEX.search(os.path.basename(url))
    hash_prefix = match.group(1) if match else None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise WeightsUnavailable(f"ImageNet {arch} weights: cannot create the torch hub cache {path.parent} "
                                 f"({err}); {_instructions(arch)}") from err
    # Two book workers may ask at once: one downloads, the other then finds the file.
    with file_lock(path.parent / f".{path.name}.lock"):
        if path.is_file():
            return
        try:
            torch.hub.download_url_to_file(url, str(path), hash_prefix=hash_prefix, progress=progress)
        except RuntimeError as err:  # torch.hub's "invalid hash value"
            raise WeightsUnavailable(f"ImageNet {arch} weights: the file downloaded from {url} failed its "
                                     f"sha256 check ({err}) and was not kept; {_instructions(arch)}") from err
        except OSError as err:  # offline, refused, not found, disk full
            raise WeightsUnavailable(f"ImageNet {arch} weights: no cached copy and downloading {url} failed "
                                     f"({err}); {_instructions(arch)}") from err
