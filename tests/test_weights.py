"""Weights files in the stock layouts (``init.weights``): saved state dicts of random
weights of torchvision and timm models, as .pth and .safetensors, into 3- and 1-channel
backbones; the classifier dropped, the stem summed over RGB, the input normalisation folded
into the stem; clear errors naming the file and the first mismatched keys."""

import pytest
import tolerances as tol
import torch
import torch.nn.functional as F
import torchvision

from ilmoco.io import InputError
from ilmoco.models import weights
from ilmoco.models.resnet import ResNetBackbone

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def save(sd, path):
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    else:
        torch.save(sd, path)
    return path


@pytest.fixture(scope="module")
def resnet18_sd():
    torch.manual_seed(1)
    net = torchvision.models.resnet18()
    for m in net.modules():  # non-trivial BatchNorm statistics, as trained weights have
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
    return net.state_dict()


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
@pytest.mark.parametrize("channels", [3, 1])
def test_torchvision_layout(resnet18_sd, tmp_path, suffix, channels):
    path = save(resnet18_sd, tmp_path / f"resnet18{suffix}")
    b = weights.load_stock_weights(ResNetBackbone("resnet18", channels), path)
    got = b.state_dict()
    assert set(got) == set(resnet18_sd) - {"fc.weight", "fc.bias"}  # the classifier dropped
    for k, v in got.items():
        want = resnet18_sd[k]
        if k == "conv1.weight" and channels == 1:
            want = want.sum(dim=1, keepdim=True)  # the RGB kernels summed
        assert torch.equal(v, want), k


@pytest.mark.parametrize("name", ["convnext_atto", "resnet18d"])
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
@pytest.mark.parametrize("channels", [3, 1])
def test_timm_layout(tmp_path, name, suffix, channels):
    """A timm model's whole state dict (head included) into the features-only backbone:
    block 4 equals the stock model's forward_features, the stock model holding the same
    weights (stem summed by hand for one channel)."""
    timm = pytest.importorskip("timm")
    from ilmoco.models.timm_backbone import TimmBackbone

    torch.manual_seed(2)
    sd = timm.create_model(name, pretrained=False).state_dict()
    path = save(sd, tmp_path / f"{name}{suffix}")
    b = weights.load_stock_weights(TimmBackbone(f"timm:{name}", channels), path).eval()
    stock = timm.create_model(name, pretrained=False, in_chans=channels).eval()
    first = next(k for k in sd if k.endswith("weight") and sd[k].dim() == 4)
    adapted = {**sd, first: sd[first].sum(dim=1, keepdim=True) if channels == 1 else sd[first]}
    stock.load_state_dict(adapted)
    x = torch.rand(2, channels, 64, 64)
    with torch.no_grad():
        emb, blocks = b(x)
        # the same modules on bitwise-equal weights (adapt_input_conv sums the stem as above)
        # and the same input: the same float32 operations, so equal
        torch.testing.assert_close(blocks[3], stock.forward_features(x), rtol=0, atol=0)


def test_wrapped_and_dataparallel_files(resnet18_sd, tmp_path):
    path = tmp_path / "ckpt.pth"
    torch.save({"epoch": 90, "state_dict": {f"module.{k}": v for k, v in resnet18_sd.items()}},
               path)
    b = weights.load_stock_weights(ResNetBackbone("resnet18", 3), path)
    assert torch.equal(b.state_dict()["layer4.1.bn2.weight"],
                       resnet18_sd["layer4.1.bn2.weight"])


def test_files_of_another_model_are_refused_naming_the_keys(tmp_path):
    torch.manual_seed(0)
    other = save(torchvision.models.resnet50().state_dict(), tmp_path / "r50.pth")
    with pytest.raises(InputError, match=r"r50\.pth: not the weights of torchvision resnet18: "
                                         r"unexpected layer1\.0\.conv3\.weight, "
                                         r"layer1\.0\.bn3\.weight"):
        weights.load_stock_weights(ResNetBackbone("resnet18", 3), other)
    sd = torchvision.models.resnet18().state_dict()
    del sd["layer2.0.bn1.bias"]
    sd["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    with pytest.raises(InputError, match=r"missing layer2\.0\.bn1\.bias"):
        weights.load_stock_weights(ResNetBackbone("resnet18", 3), save(sd, tmp_path / "a.pth"))
    sd["layer2.0.bn1.bias"] = torch.zeros(128)
    with pytest.raises(InputError, match=r"layer1\.0\.conv1\.weight has shape \(64, 64, 1, 1\) "
                                         r"but resnet18 with 3 input channels needs "
                                         r"\(64, 64, 3, 3\)"):
        weights.load_stock_weights(ResNetBackbone("resnet18", 3), save(sd, tmp_path / "b.pth"))
    junk = tmp_path / "list.pt"
    torch.save([1, 2, 3], junk)
    with pytest.raises(InputError, match=r"list\.pt: not a state dict"):
        weights.read_state_dict(junk)
    with pytest.raises(InputError, match=r"nothere\.pth: weights file not found"):
        weights.read_state_dict(tmp_path / "nothere.pth")
    with pytest.raises(InputError, match=r"w\.ckpt: weights must be a .pth"):
        weights.read_state_dict(tmp_path / "w.ckpt")


def stem_out(net, conv, norm, x):
    with torch.no_grad():
        return getattr(net, norm)(getattr(net, conv)(x))


def stem_magnitude(stock, rgb, m, s):
    """Per output of resnet18's conv1 + bn1 (eval): the sum of the magnitudes of the terms
    both sides add: the folded conv on x, the folded mean, the stock conv on (x - m) / s."""
    w, bn = stock.conv1.weight.abs(), stock.bn1
    with torch.no_grad():
        conv = (F.conv2d(rgb.abs() + m, w / s, None, 2, 3)
                + F.conv2d(((rgb - m) / s).abs(), w, None, 2, 3))
        scale = bn.weight.abs() / torch.sqrt(bn.running_var + bn.eps)
        mean, bias = 2 * bn.running_mean.abs(), 2 * bn.bias.abs()
        return (conv + mean[:, None, None]) * scale[:, None, None] + bias[:, None, None]


def test_the_input_normalisation_is_folded_into_the_stem(resnet18_sd, tmp_path):
    """The backbone on raw [0, 1] pixels gives what the stock model gives on normalised ones,
    after the stem's BatchNorm (eval mode), away from the border the zero padding reaches;
    for one channel, on a gray image shown to the stock model as RGB."""
    path = save(resnet18_sd, tmp_path / "w.pth")
    stock = torchvision.models.resnet18()
    stock.load_state_dict(resnet18_sd)
    m, s = torch.tensor(MEAN)[None, :, None, None], torch.tensor(STD)[None, :, None, None]
    gray = torch.rand(4, 1, 48, 48)
    for channels, x in ((3, torch.rand(4, 3, 48, 48)), (1, gray)):
        b = weights.load_stock_weights(ResNetBackbone("resnet18", channels), path, (MEAN, STD))
        rgb = x.expand(-1, 3, -1, -1)
        b.eval(), stock.eval()
        ours = stem_out(b, "conv1", "bn1", x)
        theirs = stem_out(stock, "conv1", "bn1", (rgb - m) / s)
        inner = (..., slice(2, -2), slice(2, -2))
        err = (ours - theirs)[inner].abs()
        # each side a float32 sum of 147 products, BN's ~6 roundings, the fold's of w / s, m
        # and the 1-channel stem sum: gamma_(147+16) of the magnitudes; elementwise, near 0 too
        bound = tol.gamma(147 + 16, torch.float32) * stem_magnitude(stock, rgb, m, s)[inner]
        assert (err <= bound).all(), float((err / bound).max())
        assert not torch.allclose(ours, theirs, atol=1e-4)  # the border does differ


def test_the_fold_into_a_stem_with_a_bias_is_exact(tmp_path):
    """ConvNeXt's stem (a 4x4 stride-4 conv with bias, no padding): exact everywhere."""
    timm = pytest.importorskip("timm")
    from ilmoco.models.timm_backbone import TimmBackbone

    torch.manual_seed(3)
    stock = timm.create_model("convnext_atto", pretrained=False).eval()
    path = save(stock.state_dict(), tmp_path / "c.safetensors")
    b = weights.load_stock_weights(TimmBackbone("timm:convnext_atto", 3), path,
                                   (MEAN, STD)).eval()
    x = torch.rand(2, 3, 64, 64)
    m, s = torch.tensor(MEAN)[None, :, None, None], torch.tensor(STD)[None, :, None, None]
    with torch.no_grad():
        ours, theirs = b(x)[1][3], stock.forward_features((x - m) / s)
    # norm-wise, the rounding of the two stems carried through: the blocks' layer scale of
    # 1e-6 leaves 8 reducing layers (stem conv + norm, 3 x norm + conv) of <= 640 terms
    assert (ours - theirs).norm() <= tol.network_rtol(8, 640, torch.float32) * theirs.norm()
