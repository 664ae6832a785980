"""Where encoders start and which backbone each method has, as the run resolves them: the
``imagenet`` reference method and ``init.weights``, variants pretrained from a weights file,
a variant's own ``arch`` through every stage of the method, and the config errors of each at
dry-run (resolve)."""

import pytest
import torch
import torchvision
from stagedata import prepare, tiny_settings

from ilmoco.io import ConfigError, torch_load
from ilmoco.models.resnet import ResNetBackbone
from ilmoco.models.weights import load_stock_weights
from ilmoco.stages import init_encoder
from ilmoco.training.ssl import build_model

IMAGENET_NORM = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A torchvision resnet18 state dict of random weights: a stand-in for ImageNet's."""
    torch.manual_seed(5)
    path = tmp_path_factory.mktemp("w") / "resnet18_imagenet.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return str(path)


def test_imagenet_is_a_reference_method_with_an_encoder(weights_file):
    s = tiny_settings(methods=["supervised", "moco", "imagenet"],
                      init={"weights": weights_file})
    assert s.method("imagenet").display == "ImageNet"
    assert s.encoder_methods == ["moco", "imagenet"] and s.weights_methods == ["imagenet"]
    assert s.ssl_methods == ["moco"]
    assert "imagenet" in s.probe_methods()
    assert s.arch_of("imagenet") == s.finetune.arch
    run = s.init_run("dr", "imagenet")
    assert run.init.weights == weights_file
    assert (run.init.mean, run.init.std) == IMAGENET_NORM  # the schema's defaults
    assert s.init_of("moco") is None and s.init_of("supervised") is None
    tiny_settings(methods=["supervised", "imagenet"], init={"weights": weights_file},
                  paired={"baseline": "imagenet"})  # a valid paired baseline


@pytest.mark.parametrize("over,message", [
    ({"methods": ["moco", "imagenet"]},
     r"config error at init\.weights: method 'imagenet' starts from ImageNet weights: set "
     r"init\.weights to a local weights file"),
    ({"methods": ["moco", "imagenet"], "init": {"weights": "nowhere/w.pth"}},
     r"config error at init\.weights: nowhere/w\.pth: no such file"),
    ({"methods": ["moco", "v"], "variants": {"v": {"base": "moco", "term": "none",
                                                   "init": {"weights": "x/y.safetensors"}}}},
     r"config error at variants\.v\.init\.weights: x/y\.safetensors: no such file"),
])
def test_init_errors(over, message):
    with pytest.raises(ConfigError, match=message):
        tiny_settings(**over)


def test_variants_pretrain_from_a_weights_file(weights_file, tmp_path):
    own = tmp_path / "mine.safetensors"
    own.write_bytes(b"")  # exists: checked at resolve time; read only by the job
    s = tiny_settings(methods=["moco", "from_in", "from_own"], init={"weights": weights_file},
                      variants={"from_in": {"base": "moco", "term": "mse", "init": "imagenet"},
                                "from_own": {"base": "moco", "term": "none",
                                             "init": {"weights": str(own), "mean": [0.0],
                                                      "std": [1.0]}}})
    assert s.pretrain_run("dr", "from_in").init.weights == weights_file
    mine = s.pretrain_run("dr", "from_own").init
    assert (mine.weights, mine.mean, mine.std) == (str(own), (0.0,), (1.0,))
    assert s.pretrain_run("dr", "moco").init is None
    assert s.method("from_in").display == "MoCo+MSE from ImageNet"
    assert s.method("from_own").display == "MoCo from mine"


def test_pretraining_starts_from_the_weights_in_both_branches(weights_file):
    """The query backbone holds the weights (stem adapted, normalisation folded) before
    MoCo copies it into the key encoder."""
    s = tiny_settings(methods=["moco", "from_in"], init={"weights": weights_file},
                      variants={"from_in": {"base": "moco", "term": "none",
                                            "init": "imagenet"}})
    model = build_model(s.pretrain_run("dr", "from_in"), channels=1)
    want = load_stock_weights(ResNetBackbone("resnet18", 1), weights_file, IMAGENET_NORM)
    for name, sd in (("query", model.encoder_q.backbone.state_dict()),
                     ("key", model.encoder_k.backbone.state_dict())):
        assert all(torch.equal(v, want.state_dict()[k]) for k, v in sd.items()), name
    random = build_model(s.pretrain_run("dr", "moco"), channels=1).backbone.state_dict()
    assert not torch.equal(random["conv1.weight"], want.state_dict()["conv1.weight"])


def test_a_variants_arch_is_its_encoders_everywhere():
    pytest.importorskip("timm")
    s = tiny_settings(methods=["supervised", "moco", "t"],
                      variants={"t": {"base": "moco", "term": "bt", "arch": "timm:resnet18d"}})
    assert s.arch_of("t") == "timm:resnet18d" and s.arch_of("moco") == "resnet18"
    assert s.pretrain_run("dr", "t").settings.arch == "timm:resnet18d"
    assert s.pretrain_run("dr", "t").backbone.builder.startswith("ilmoco.models.timm_backbone")
    assert s.finetune_run("dr", "t").settings.arch == "timm:resnet18d"
    assert s.finetune_run("dr", "supervised").settings.arch == "resnet18"
    assert s.probe_run("dr", "t").arch == "timm:resnet18d"
    assert s.probe_run("dr", "random_init").arch == "resnet18"  # the pretraining's default
    assert s.method("t").display == "MoCo+BT resnet18d"


@pytest.mark.parametrize("over,message", [
    ({"variants": {"t": {"base": "moco", "term": "none", "arch": "timm:resnet_not_a_model"}}},
     r"config error at variants\.t\.arch: 'resnet_not_a_model' is not a timm model"),
    ({"variants": {"t": {"base": "moco", "term": "none", "arch": "timm:efficientnet_b0"}},
      "pretrain": {"moco": {"bn": "split"}}},
     r"config error at pretrain\.moco\.bn: split replaces the BatchNorm2d layers of the "
     r"backbone, but timm:efficientnet_b0 normalises with BatchNormAct2d; use bn: global"),
])
def test_timm_errors(over, message):
    pytest.importorskip("timm")
    with pytest.raises(ConfigError, match=message):
        tiny_settings(methods=["moco", "t"], **over)
    if "efficientnet" in message:  # with bn: global it builds
        ok = tiny_settings(methods=["moco", "t"], **{**over, "pretrain": {"moco": {
            "bn": "global"}}})
        assert ok.arch_of("t") == "timm:efficientnet_b0"


def test_the_init_encoder_stage_writes_an_encoder_of_the_weights(weights_file, tmp_path):
    paths, _ = prepare(tmp_path, n_patients=16, fractions=(100,))
    s = tiny_settings(methods=["supervised", "imagenet"], init={"weights": weights_file},
                      paired={"baseline": "imagenet"})
    out = tmp_path / "encoder.pt"
    init_encoder.run(init_encoder.InitJob(run=s.init_run("dr", "imagenet"),
                                          cache_images=str(paths["images"]),
                                          cache_index=str(paths["index"]),
                                          out_encoder=str(out)))
    ckpt = torch_load(out)
    assert ckpt["meta"]["method"] == "imagenet" and ckpt["meta"]["in_channels"] == 3
    assert ckpt["meta"]["settings"]["init"]["weights"] == weights_file
    want = load_stock_weights(ResNetBackbone("resnet18", 3), weights_file, IMAGENET_NORM)
    assert all(torch.equal(v, want.state_dict()[k]) for k, v in ckpt["backbone"].items())


def test_a_timm_arch_without_timm_names_the_package(monkeypatch):
    from ilmoco.config import backbones

    monkeypatch.setattr(backbones, "installed", lambda package: False)
    with pytest.raises(ConfigError, match=r"config error at pretrain\.arch: 'timm:resnet18d' "
                                          r"needs the timm package: pip install timm==1\.0\.31"):
        tiny_settings(pretrain={"arch": "timm:resnet18d"})


def test_passed_timm_checks_are_remembered(monkeypatch, tmp_path):
    """Resolving a run with a timm arch imports timm and torch once per model and BatchNorm
    (seconds); later resolutions read the cache, keyed by timm's version."""
    pytest.importorskip("timm")
    from ilmoco.config import backbones

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calls = []
    real = backbones.run_timm_check
    monkeypatch.setattr(backbones, "run_timm_check", lambda *a: (calls.append(a), real(*a)))
    for _ in range(2):
        backbones.check_timm("timm:resnet18d", "pretrain.arch", "split")
    backbones.check_timm("timm:resnet18d", "pretrain.arch", "global")
    assert [c[2] for c in calls] == ["split", "global"]
    assert (tmp_path / "ilmoco/timm-checks.json").is_file()
    for _ in range(2):  # failures are not kept
        with pytest.raises(ConfigError, match="is not a timm model"):
            backbones.check_timm("timm:no_such_net", "pretrain.arch", "global")
    assert len(calls) == 4
