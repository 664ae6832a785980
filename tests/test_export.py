"""The export (``encoder.safetensors``): the README's recipes, read out of the README and run
as they are, load each kind of encoder (torchvision, timm; 1 and 3 input channels) into a
stock model, which then gives the project encoder's embedding on the same images; the
metadata holds the recipe and the settings digest of the job logs."""

import re

import pytest
import torch
from snakerun import readme_recipe

from ilmoco.config.backbones import backbone_ref
from ilmoco.config.settings.fields import digest
from ilmoco.models.backbone import build_backbone
from ilmoco.stages import export
from ilmoco.training.checkpoints import save_encoder


def encoder_file(tmp_path, arch, channels):
    """An ``encoder.pt`` as the pretraining stage writes it, of a backbone with random
    weights and non-trivial BatchNorm statistics."""
    torch.manual_seed(0)
    b = build_backbone(backbone_ref(arch).builder, arch, channels, False)
    b.train()
    with torch.no_grad():
        b(torch.rand(8, channels, 64, 64))
    settings = {"dataset": "dr", "method": "moco_mse", "settings": {"arch": arch, "lr": 0.03}}
    path = tmp_path / "encoder.pt"
    save_encoder(path, b, {"dataset": "dr", "method": "moco_mse", "arch": arch,
                           "builder": backbone_ref(arch).builder, "in_channels": channels,
                           "image_size": 64, "seed": 0, "epochs": 2, "selected_epoch": 1,
                           "settings": settings})
    return b.eval(), path, settings


CASES = [("resnet18", 1, "torchvision"), ("resnet18", 3, "torchvision"),
         ("timm:convnext_atto", 1, "timm"), ("timm:resnet18d", 3, "timm")]


@pytest.mark.parametrize("arch,channels,library", CASES)
def test_the_readme_recipe_loads_the_export_into_a_stock_model(tmp_path, arch, channels,
                                                                library):
    if library == "timm":
        pytest.importorskip("timm")
    backbone, enc, settings = encoder_file(tmp_path, arch, channels)
    out = tmp_path / "encoder.safetensors"
    meta = export.run(str(enc), str(out))
    code = readme_recipe(library)
    code = re.sub(r'^path = "[^"]*"', f"path = {str(out)!r}", code, count=1, flags=re.M)
    images = torch.rand(3, channels, 64, 64)
    scope = {"images": images}
    exec(compile(code, f"README.md ({library} recipe)", "exec"), scope)
    with torch.no_grad():
        want, _ = backbone(images)
    # the stock model runs the same modules on the exported (bitwise) weights, and the same
    # pooling: the same float32 operations, so equal
    torch.testing.assert_close(scope["embedding"], want, rtol=0, atol=0)
    assert scope["unexpected"] == []
    head = set(backbone.stock_head_keys())
    assert set(scope["missing"]) <= head  # only the classifier (timm: and what follows)
    if library == "torchvision":
        assert set(scope["missing"]) == {"fc.weight", "fc.bias"}
    assert meta["settings_digest"] == digest(settings)
    assert (meta["arch"], meta["in_channels"], meta["image_size"]) == (arch, str(channels),
                                                                      "64")
    assert meta["library"] == library and "[0, 1]" in meta["normalization"]


def test_the_metadata_is_the_recipe(tmp_path):
    from safetensors import safe_open

    _, enc, settings = encoder_file(tmp_path, "resnet18", 3)
    out = tmp_path / "encoder.safetensors"
    export.run(str(enc), str(out))
    meta = safe_open(str(out), "pt").metadata()
    assert {"format", "library", "model", "arch", "in_channels", "image_size", "normalization",
            "embedding", "method", "dataset", "settings_digest", "settings"} <= set(meta)
    assert (meta["method"], meta["dataset"], meta["model"]) == ("moco_mse", "dr", "resnet18")
    assert meta["block_dims"] == "[64, 128, 256, 512]"
    assert '"lr": 0.03' in meta["settings"]
