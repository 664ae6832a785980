"""Weights in the stock libraries' layouts, in and out of a backbone.

* **In** (``init.weights``): a local file (torch ``.pth`` / ``.pt`` / ``.bin`` or
  ``.safetensors``) holding the state dict of the stock model (``torchvision.models.<arch>()``
  or ``timm.create_model(name)``), e.g. its ImageNet weights. The classifier is dropped; a
  stem of other input channels is adapted by timm's ``adapt_input_conv`` (a 1-channel stem
  is the sum of the RGB kernels: exact for a gray image shown as RGB); the input
  normalisation the weights were trained with (ImageNet's mean and std) is folded into the
  stem, so the backbone still takes images in [0, 1] like every other here: stem weights
  divided by std per input channel, and the constant -Σ w·mean/std added to the stem's
  bias or, for a bias-free conv, taken out of the next BatchNorm's running mean. The fold is
  exact except where the stem's zero padding reaches: it now pads with black, not with the
  mean colour (a stem without padding, as ConvNeXt's, is exact everywhere; BatchNorm's
  batch statistics in training mode include those border positions).
* **Out** (``encoder.safetensors``): the backbone's weights under the stock model's key
  names with the recipe in the file's metadata (``save_stock``).

Nothing downloads: files only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from ilmoco.io import InputError, atomic_path, torch_load
from ilmoco.optional import require

SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")


def read_state_dict(path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file: a plain state dict, or one under ``state_dict`` /
    ``model`` (training checkpoints), a ``module.`` prefix (DataParallel) removed."""
    p = Path(path)
    if p.suffix not in SUFFIXES:
        raise InputError(f"{path}: weights must be a {', '.join(SUFFIXES)} file")
    if not p.is_file():
        raise InputError(f"{path}: weights file not found")
    if p.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            sd = load_file(str(p))
        except (SafetensorError, OSError) as e:
            raise InputError(f"{path}: not a readable safetensors file ({e})") from None
    else:
        sd = torch_load(p)
        for key in ("state_dict", "model"):
            if isinstance(sd, Mapping) and isinstance(sd.get(key), Mapping):
                sd = sd[key]
    if not isinstance(sd, Mapping) or not sd or not all(
            isinstance(v, torch.Tensor) for v in sd.values()):
        raise InputError(f"{path}: not a state dict (a mapping of names to tensors)")
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return dict(sd)


def stem_modules(backbone: nn.Module) -> tuple[str, str | None]:
    """The module names of the input convolution (the first Conv2d) and of the module that
    follows it (its norm)."""
    names = [(n, m) for n, m in backbone.named_modules() if n]
    for i, (name, m) in enumerate(names):
        if isinstance(m, nn.Conv2d):
            after = next((n for n, _ in names[i + 1:] if not n.startswith(name + ".")), None)
            return name, after
    raise ValueError(f"{type(backbone).__name__} has no Conv2d stem")


def fold_normalization(sd: dict, stem: str, after: str | None, backbone: nn.Module,
                       mean: Sequence[float], std: Sequence[float], path) -> None:
    """Make ``stem`` (own keys in ``sd``) take raw [0, 1] inputs where the weights expected
    ``(x - mean) / std`` (see the module docstring)."""
    w = sd[f"{stem}.weight"].double()
    if len(mean) != w.shape[1] or len(std) != w.shape[1]:
        raise InputError(f"{path}: init mean/std give {len(mean)}/{len(std)} values but the "
                         f"weights' stem takes {w.shape[1]} input channels")
    m = torch.tensor(mean, dtype=torch.float64)[None, :, None, None]
    s = torch.tensor(std, dtype=torch.float64)[None, :, None, None]
    shift = -(w * m / s).sum(dim=(1, 2, 3))  # per output channel
    sd[f"{stem}.weight"] = (w / s).to(sd[f"{stem}.weight"].dtype)
    if f"{stem}.bias" in sd:
        sd[f"{stem}.bias"] = sd[f"{stem}.bias"] + shift.to(sd[f"{stem}.bias"].dtype)
        return
    norm = backbone.get_submodule(after) if after else None
    key = f"{after}.running_mean"
    if not isinstance(norm, nn.modules.batchnorm._BatchNorm) or key not in sd:
        raise InputError(f"{path}: cannot fold the input normalisation into {stem} (no bias "
                         "and no BatchNorm after it); set init mean: [0, 0, 0], std: [1, 1, 1] "
                         "and normalise the inputs yourself")
    sd[key] = sd[key] - shift.to(sd[key].dtype)


def adapt_stem(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """A stem kernel for ``in_channels`` inputs (timm's adapt_input_conv: 1 channel = the sum
    over RGB)."""
    if weight.shape[1] == in_channels:
        return weight
    timm = require("timm", f"adapting {weight.shape[1]}-channel weights to a "
                           f"{in_channels}-channel stem (timm's adapt_input_conv)")
    return timm.models.adapt_input_conv(in_channels, weight)


def load_stock_weights(backbone: nn.Module, path,
                       normalization: tuple[Sequence[float], Sequence[float]] | None = None
                       ) -> nn.Module:
    """Load the stock model's weights in ``path`` into ``backbone`` (see the module
    docstring); ``normalization``: the (mean, std) the weights were trained with, folded
    into the stem (None: the weights take [0, 1] inputs)."""
    sd = read_state_dict(path)
    mapping = backbone.stock_keys()
    own = backbone.state_dict()
    allowed = set(mapping.values()) | backbone.stock_head_keys()
    # BatchNorm's step counter is absent from older torchvision files; it changes nothing
    missing = [s for s in mapping.values() if s not in sd and not s.endswith(
        "num_batches_tracked")]
    unexpected = [k for k in sd if k not in allowed]
    if missing or unexpected:
        what = f"{backbone.library} {backbone.stock_name}"
        raise InputError(f"{path}: not the weights of {what}: " + "; ".join(
            f"{label} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
            for label, keys in (("missing", missing), ("unexpected", unexpected)) if keys))
    new = {o: sd[s] for o, s in mapping.items() if s in sd}
    stem, after = stem_modules(backbone)
    if normalization is not None:
        fold_normalization(new, stem, after, backbone, *normalization, path)
    new[f"{stem}.weight"] = adapt_stem(new[f"{stem}.weight"], backbone.in_channels)
    for o, t in new.items():
        if t.shape != own[o].shape:
            raise InputError(f"{path}: {mapping[o]} has shape {tuple(t.shape)} but "
                             f"{backbone.arch} with {backbone.in_channels} input channels "
                             f"needs {tuple(own[o].shape)}")
    result = backbone.load_state_dict(new, strict=False)
    assert not result.unexpected_keys and all(
        k.endswith("num_batches_tracked") for k in result.missing_keys), result
    return backbone


def stock_state_dict(backbone: nn.Module) -> dict[str, torch.Tensor]:
    """The backbone's weights under the stock model's key names (the classifier absent)."""
    sd = backbone.state_dict()
    return {s: sd[o].detach().cpu().contiguous() for o, s in backbone.stock_keys().items()}


def save_stock(path, backbone: nn.Module, metadata: Mapping[str, object]) -> None:
    """``stock_state_dict`` as a safetensors file (atomically); ``metadata`` values that are
    not strings are stored as JSON (safetensors metadata is str -> str)."""
    from safetensors.torch import save_file

    meta = {k: v if isinstance(v, str) else json.dumps(v, sort_keys=True)
            for k, v in metadata.items()}
    with atomic_path(path) as tmp:
        save_file(stock_state_dict(backbone), str(tmp), metadata=meta)
