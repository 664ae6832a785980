"""Backbone, MoCo mechanics (EMA, queue, SplitBN, side-effect-free validation)."""

import copy

import pytest
import tolerances as tol
import torch
import torch.nn.functional as F
from stagedata import base_model, term

from ilmoco.config.bases import MoCoSettings
from ilmoco.models.momentum import momentum_at
from ilmoco.models.norm import SplitBatchNorm, SplitBatchNorm1d
from ilmoco.models.resnet import ResNetBackbone as Backbone

TERMS = {"moco": "none", "moco_mse": "mse", "moco_bt": "bt"}


def tiny(method="moco", in_channels=1, **kw):
    moco = dict(dim=16, queue_size=10, momentum=0.9, momentum_schedule="constant",
                temperature=0.2, head="mlp", bn="global", bn_splits=8)
    moco.update(kw)
    torch.manual_seed(0)
    return base_model("moco", MoCoSettings(**moco), term(TERMS[method]), in_channels)


@pytest.mark.parametrize("arch,dims", [("resnet18", (64, 128, 256, 512)),
                                       ("resnet50", (256, 512, 1024, 2048))])
def test_backbone_blocks(arch, dims):
    b = Backbone(arch, in_channels=1)
    emb, blocks = b(torch.randn(2, 1, 64, 64))
    assert b.block_dims == dims and emb.shape == (2, dims[3])
    assert [t.shape[1] for t in blocks] == list(dims)
    assert [t.shape[-1] for t in blocks] == [16, 8, 4, 2]
    # block outputs are >= 0 (ReLU): two orders of a mean of 2 x 2 values agree to 2 gamma_4
    assert torch.allclose(emb, blocks[3].mean((2, 3)), rtol=tol.sum_rtol(4, torch.float32), atol=0)
    assert not any(m._forward_hooks for m in b.modules())
    sd = b.state_dict()
    assert "fc.weight" not in sd and "layer4.1.conv1.weight" in sd
    assert ("layer4.2.conv1.weight" in sd) == (arch == "resnet50")  # 3 blocks in a R50 stage


def test_backbone_traces_without_graph_breaks():
    b = Backbone("resnet18", in_channels=3).eval()
    explanation = torch._dynamo.explain(b)(torch.randn(2, 3, 32, 32))
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1


def test_zero_init_residual():
    b = Backbone("resnet18", zero_init_residual=True)
    assert torch.count_nonzero(b.layer1[0].bn2.weight) == 0


def test_ema_update_matches_formula():
    model = tiny()
    with torch.no_grad():
        for p in model.encoder_q.parameters():
            p.add_(torch.randn_like(p))
    q = {n: p.clone() for n, p in model.encoder_q.named_parameters()}
    k = {n: p.clone() for n, p in model.encoder_k.named_parameters()}
    model.momentum_update(0.9)
    for n, p in model.encoder_k.named_parameters():
        # each side rounds two products and a sum (or fuses them): <= 3 u of the terms' size
        scale = 0.9 * k[n].abs() + 0.1 * q[n].abs()
        err = (p - (0.9 * k[n] + 0.1 * q[n])).abs()
        assert (err <= tol.ops_rtol(3, torch.float32) * scale).all(), n
    assert not any(p.requires_grad for p in model.encoder_k.parameters())


def test_queue_wraps_for_batch_not_dividing_k():
    model = tiny()
    batches = [F.normalize(torch.randn(4, 16), dim=1) for _ in range(3)]
    for b in batches:
        model.enqueue(b)
    assert model.queue_ptr == 2  # 12 mod 10
    assert torch.equal(model.queue[8:10], batches[2][:2])
    assert torch.equal(model.queue[0:2], batches[2][2:])
    assert torch.equal(model.queue[4:8], batches[1])
    sd = model.state_dict()
    assert "queue" in sd and sd["_extra_state"] == {"queue_ptr": 2}
    other = tiny()
    other.load_state_dict(sd)
    assert other.queue_ptr == 2 and torch.equal(other.queue, model.queue)


def test_momentum_schedule():
    # a float64 formula of ~5 roundings of values <= 1
    for step, want in ((0, 0.99), (100, 1.0)):
        assert momentum_at(step, 100, 0.99, "cosine") == pytest.approx(
            want, rel=tol.ops_rtol(5, "float64"))
    assert momentum_at(50, 100, 0.99, "constant") == 0.99


def test_split_batchnorm_uses_interleaved_subbatches():
    torch.manual_seed(0)
    x = torch.randn(8, 3, 4, 4) * 3 + 1
    sbn = SplitBatchNorm(3, num_splits=2).train()
    y = sbn(x)
    for s in range(2):
        xs = x[s::2]
        ref = F.batch_norm(xs, None, None, training=True, eps=sbn.eps)
        # 64 values a channel from N(1, 9), summed in another layout: the mean moves y by
        # <= 2 gamma_64 * E|x| / sigma ~ 2 gamma_64, the variance by 2 gamma_64 relative to |y|
        assert torch.allclose(y[s::2], ref, rtol=tol.sum_rtol(64, torch.float32),
                              atol=tol.sum_rtol(64, torch.float32))
    sbn.eval()  # eval is BatchNorm2d's own F.batch_norm call on the same arguments: exact
    assert torch.equal(sbn(x), F.batch_norm(x, sbn.running_mean, sbn.running_var,
                                            sbn.weight, sbn.bias, False, 0.0, sbn.eps))


@pytest.mark.parametrize("bn,norm", [("split", SplitBatchNorm1d), ("global", torch.nn.BatchNorm1d)])
def test_mlp_bn_head_normalises_the_hidden_layer_like_the_backbone(bn, norm):
    model = tiny(head="mlp_bn", bn=bn, bn_splits=2)
    lin, bn_layer, _, out = model.encoder_q.head
    assert type(bn_layer) is norm and lin.bias is None and out.out_features == 16
    h = torch.randn(8, 512) * 2 + 3
    y = bn_layer.train()(h)
    groups = [slice(s, None, 2) for s in range(2)] if bn == "split" else [slice(None)]
    for g in groups:  # each (sub-)batch is normalised on its own statistics
        assert torch.allclose(y[g], F.batch_norm(h[g], None, None, training=True), atol=1e-4)
    loss, _ = model(torch.randn(4, 1, 32, 32), torch.randn(4, 1, 32, 32))
    assert torch.isfinite(loss)
    assert isinstance(model.encoder_k.head[1], norm)  # the key encoder is a copy


@pytest.mark.parametrize("method", ["moco", "moco_mse", "moco_bt"])
def test_forward_terms_and_validation_has_no_side_effects(method):
    model = tiny(method, bn="split", bn_splits=2)
    x1, x2 = torch.randn(4, 1, 32, 32), torch.randn(4, 1, 32, 32)
    g = torch.Generator().manual_seed(0)
    loss, logs = model(x1, x2, g)
    expected = {"moco": [], "moco_mse": [f"mse_block{i}" for i in range(1, 5)],
                "moco_bt": [f"bt_block{i}" for i in range(1, 5)]}[method]
    assert set(logs) == {"infonce", "loss", *expected}
    total = logs["infonce"] + sum(logs[k] for k in expected)
    # the same <= 5 positive float32 terms added in another order: 2 gamma_5 relative
    assert torch.allclose(loss.detach(), total, rtol=tol.sum_rtol(5, torch.float32), atol=0)
    assert model.queue_ptr == 4
    model.eval()
    before = copy.deepcopy(model.state_dict())
    with torch.no_grad():
        model(x1, x2, g, update=False)
    after = model.state_dict()
    assert after["_extra_state"] == before["_extra_state"]
    for k, v in before.items():
        if isinstance(v, torch.Tensor):
            assert torch.equal(v, after[k]), k


def test_only_query_side_learns():
    model = tiny("moco_bt")
    loss, _ = model(torch.randn(4, 1, 32, 32), torch.randn(4, 1, 32, 32))
    loss.backward()
    assert all(p.grad is None for p in model.encoder_k.parameters())
    assert any(p.grad is not None for p in model.encoder_q.parameters())
    assert all(p.grad is not None for p in model.term.projectors.parameters())


def held_out_loss_ratio(model, steps: int = 20) -> float:
    """Train ``model`` ``steps`` times on two augmented views of one tiny batch; the loss on
    those views afterwards over before (MoCo's queue restored, so only the encoders count)."""
    from ilmoco.data.augment import BatchAugment, preset

    opt = torch.optim.SGD(model.trainable_modules().parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (8, 1, 32, 32), generator=g, dtype=torch.uint8)
    aug = BatchAugment(preset("histo", "ssl"), 32)
    x1, x2 = aug(x, g), aug(x, g)
    queue = model.queue.clone() if hasattr(model, "queue") else None

    def held_out():
        with torch.no_grad():
            if queue is not None:
                saved = model.queue.clone()
                model.queue.copy_(queue)
            loss, _ = model(x1, x2, update=False)
            if queue is not None:
                model.queue.copy_(saved)
        return float(loss)

    before = held_out()
    for _ in range(steps):
        loss, _ = model(x1, x2)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return held_out() / before


@pytest.mark.parametrize("method,head", [("moco", "mlp"), ("moco_mse", "mlp"), ("moco_bt", "mlp"),
                                         ("moco", "mlp_bn")])
def test_moco_training_lowers_loss_on_a_tiny_batch(method, head):
    """20 steps on two augmented views of one tiny batch lower its total loss."""
    assert held_out_loss_ratio(tiny(method, queue_size=32, momentum=0.99, head=head)) < 0.5


def test_a_term_on_some_blocks_computes_and_owns_only_those():
    torch.manual_seed(0)
    moco = MoCoSettings(dim=16, queue_size=10, momentum=0.9, momentum_schedule="constant",
                        temperature=0.2, head="mlp", bn="global", bn_splits=8)
    bt = term("bt", (0.0, 0.0, 1.0, 0.0), projector=(8, 8))
    model = base_model("moco", moco, bt)
    assert list(model.term.projectors) == ["block3"]
    _, logs = model(torch.randn(4, 1, 32, 32), torch.randn(4, 1, 32, 32))
    assert set(logs) == {"infonce", "bt_block3", "loss"}
    mse = term("mse", (0.0, 0.5, 0.0, 2.0), pool=(2, 2, 1, 1))
    model = base_model("moco", moco, mse)
    q = [torch.randn(2, c, s, s) for c, s in ((64, 8), (128, 4), (256, 2), (512, 1))]
    k = [torch.randn_like(t) for t in q]
    terms = model.term(q, k)
    assert set(terms) == {"mse_block2", "mse_block4"}
    assert float(terms["mse_block4"]) == pytest.approx(  # float32 mean of 2 * 512 squares
        2.0 * float(((q[3] - k[3]) ** 2).mean()), rel=tol.random_sum_rtol(2 * 512, torch.float32))
