"""The optional libraries (requirements-extras.txt) and the one-line error of a feature that
needs one that is not installed."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util

from ilmoco.io import InputError

PINS = {"timm": "timm==1.0.31", "tensorboard": "tensorboard==2.21.0",
        "pydicom": "pydicom==3.0.2", "pylibjpeg": "pylibjpeg==2.1.0",
        "pylibjpeg-libjpeg": "pylibjpeg-libjpeg==2.5.0", "pyarrow": "pyarrow==26.0.1"}


def installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def versions(*packages: str) -> dict[str, str]:
    """The installed version of each of ``packages`` (distribution names) that is installed."""
    out = {}
    for package in packages:
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def needs(package: str) -> str:
    """``the timm package: pip install timm==1.0.31 (requirements-extras.txt)``"""
    return f"the {package} package: pip install {PINS[package]} (requirements-extras.txt)"


def require(package: str, what: str):
    """The module ``package``, or an InputError saying that ``what`` needs it and how to
    install it."""
    if not installed(package):
        raise InputError(f"{what} needs {needs(package)}")
    return importlib.import_module(package)
