"""timm backbones (``arch: timm:<name>``) on two families, ConvNeXt (LayerNorm, no
BatchNorm) and ResNet-D (a deep stem, BatchNorm): the four stages as blocks 1-4, the
1-channel stem, zero-init of residual branches, MoCo's SplitBatchNorm, a pretraining step
with the MSE and the Barlow Twins term on all four blocks, and the stages end to end
(pretraining, then fine-tuning from the encoder)."""

import pandas as pd
import pytest
import torch
from stagedata import base_model, prepare, term, tiny_settings

from ilmoco.config.bases import MoCoSettings
from ilmoco.models.norm import SplitBatchNorm
from ilmoco.models.timm_backbone import TimmBackbone
from ilmoco.stages import finetune, pretrain

timm = pytest.importorskip("timm")

ARCHS = ["timm:convnext_atto", "timm:resnet18d"]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("channels", [1, 3])
def test_the_four_last_stages_are_the_blocks(arch, channels):
    """Block i is timm's feature stage i of the last four, with its channels and stride;
    the embedding is the global average of block 4."""
    torch.manual_seed(0)
    b = TimmBackbone(arch, channels).eval()
    name = arch.removeprefix("timm:")
    info = timm.create_model(name, pretrained=False, features_only=True).feature_info
    dims, strides = info.channels()[-4:], info.reduction()[-4:]
    assert b.block_dims == tuple(dims) and b.out_dim == dims[-1]
    x = torch.rand(2, channels, 64, 64)
    with torch.no_grad():
        emb, blocks = b(x)
    assert [tuple(t.shape) for t in blocks] == [(2, c, 64 // s, 64 // s)
                                                for c, s in zip(dims, strides)]
    # the embedding is this very mean of block 4: the same operation, so equal
    torch.testing.assert_close(emb, blocks[3].mean(dim=(2, 3)), rtol=0, atol=0)
    stem = next(m for m in b.modules() if isinstance(m, torch.nn.Conv2d))
    assert stem.in_channels == channels


def test_zero_init_residual_is_timms_zero_init_last():
    """ResNet-D's last BatchNorm of each residual branch starts at zero when asked (timm's
    zero_init_last), at one otherwise; ConvNeXt, which has no such option, builds either
    way."""
    for zero, value in ((True, 0.0), (False, 1.0)):
        b = TimmBackbone("timm:resnet18d", 3, zero_init_residual=zero)
        last = [m.bn2.weight for m in b.modules() if type(m).__name__ == "BasicBlock"]
        assert len(last) == 8 and all(torch.all(w == value) for w in last)
    a = TimmBackbone("timm:convnext_atto", 3, zero_init_residual=True)
    assert a.block_dims == TimmBackbone("timm:convnext_atto", 3, False).block_dims


def test_split_batchnorm_replaces_every_batchnorm_with_its_state():
    b = TimmBackbone("timm:resnet18d", 3, True, norm_layer=lambda c: SplitBatchNorm(c, 2))
    norms = [m for m in b.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(isinstance(m, SplitBatchNorm) and m.num_splits == 2 for m in norms)
    last = [m.bn2.weight for m in b.modules() if type(m).__name__ == "BasicBlock"]
    assert all(torch.all(w == 0) for w in last)  # the zero-init survived the replacement
    plain = TimmBackbone("timm:resnet18d", 3, True)
    assert set(b.state_dict()) == set(plain.state_dict())  # the same keys as timm's
    with pytest.raises(ValueError, match="normalises with BatchNormAct2d.*use bn: global"):
        TimmBackbone("timm:efficientnet_b0", 3, norm_layer=lambda c: SplitBatchNorm(c, 2))


MOCO = MoCoSettings(dim=16, queue_size=32, momentum=0.99, momentum_schedule="constant",
                    temperature=0.2, head="mlp_bn", bn="split", bn_splits=2)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("kind", ["mse", "bt"])
def test_a_pretraining_step_with_a_term_on_all_four_blocks(arch, kind):
    """MoCo with the term on every block: each block's term is logged and positive, and its
    gradient reaches the backbone's stem (the first stage's output is compared)."""
    torch.manual_seed(0)
    model = base_model("moco", MOCO, term(kind, weights=(1.0,) * 4), in_channels=3,
                       arch=arch)
    x1, x2 = torch.rand(8, 3, 32, 32), torch.rand(8, 3, 32, 32)
    loss, logs = model(x1, x2, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)
    assert all(float(logs[f"{kind}_block{i}"]) > 0 for i in range(1, 5)), logs
    stem = next(p for n, p in model.backbone.named_parameters() if "weight" in n)
    grads = []
    for i in range(1, 5):  # each block's term alone reaches the stem
        model.zero_grad()
        _, blocks_q = model.encoder_q(x1)
        _, blocks_k = model.encoder_k(x2)
        terms = model.term(blocks_q, blocks_k, training=True)
        terms[f"{kind}_block{i}"].backward()
        grads.append(float(stem.grad.abs().sum()))
    assert all(g > 0 for g in grads), grads


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return prepare(tmp_path_factory.mktemp("dr32"), n_patients=24, size=32)


@pytest.mark.parametrize("arch,kind", [("timm:convnext_atto", "bt"),
                                       ("timm:resnet18d", "mse")])
def test_pretraining_then_fine_tuning_with_a_timm_backbone(data, tmp_path, arch, kind):
    """A variant's own ``arch`` through the pretraining stage (the term logged on all four
    blocks) and the fine-tuning stage, which builds the encoder's arch."""
    paths, meta = data
    s = tiny_settings(variants={"v": {"base": "moco", "term": kind, "arch": arch}},
                      methods=["supervised", "v"], paired={"baseline": "supervised"},
                      pretrain={"epochs": 1}, finetune={"epochs": 1})
    assert s.finetune_run("dr", "v").settings.arch == arch
    assert s.finetune_run("dr", "supervised").settings.arch == "resnet18"
    common = dict(split_csv=str(paths["split"]), meta=meta, cache_images=str(paths["images"]),
                  cache_index=str(paths["index"]))
    pretrain.run(pretrain.PretrainJob(
        run=s.pretrain_run("dr", "v"), out_encoder=str(tmp_path / "encoder.pt"),
        out_metrics=str(tmp_path / "metrics.csv"), resume_path=str(tmp_path / "r.pt"),
        **common))
    curve = pd.read_csv(tmp_path / "metrics.csv")
    for i in range(1, 5):
        assert (curve[f"{kind}_block{i}"].dropna() > 0).all()
    selection = finetune.run(finetune.FinetuneJob(
        run=s.finetune_run("dr", "v"), pct=100, seed=0, encoder=str(tmp_path / "encoder.pt"),
        out_predictions=str(tmp_path / "p.csv"), out_predictions_last=str(tmp_path / "l.csv"),
        out_selection=str(tmp_path / "s.json"), out_model=str(tmp_path / "model.pt"),
        out_history=str(tmp_path / "h.csv"), resume_path=str(tmp_path / "fr.pt"), **common))
    assert selection["settings"]["settings"]["arch"] == arch
    predictions = pd.read_csv(tmp_path / "p.csv")
    assert predictions["p_referable"].between(0, 1).all() and len(predictions) > 0
