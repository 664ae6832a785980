"""bf16 autocast (used on GPUs) against fp32 on a fixed batch: the losses agree, and they are
computed in fp32 inside the autocast region."""

import pytest
import torch
from stagedata import base_model, term
from test_moco import TERMS

from ilmoco.config.bases import MoCoSettings


@pytest.mark.parametrize("method", ["moco", "moco_mse", "moco_bt"])
def test_bf16_and_fp32_losses_agree_on_a_fixed_batch(method):
    torch.manual_seed(0)
    moco = MoCoSettings(dim=32, queue_size=64, momentum=0.999, momentum_schedule="constant",
                        temperature=0.2, head="mlp", bn="global", bn_splits=8)
    model = base_model("moco", moco,
                       term(TERMS[method], pool=(4, 4, 2, 1), projector=(64, 64, 64)), 3)
    model.train()
    g = torch.Generator().manual_seed(1)
    x1 = torch.rand(16, 3, 64, 64, generator=g)
    x2 = (x1 + 0.05 * torch.randn(16, 3, 64, 64, generator=g)).clamp(0, 1)
    state = {k: v.clone() for k, v in model.state_dict().items() if torch.is_tensor(v)}
    with torch.no_grad():
        loss32, logs32 = model(x1, x2, update=False)
        model.load_state_dict({**model.state_dict(), **state})
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss16, logs16 = model(x1, x2, update=False)
    assert loss16.dtype == torch.float32  # losses are computed in fp32
    for k in logs32:
        # bf16 keeps 8 significant bits (u = 2**-8) of each conv/linear input and weight, fp32
        # sums: ~20 layers adding ~sqrt(2) u at random, sqrt(40) u ~ 0.025 (<= 1 u measured)
        assert float(logs16[k]) == pytest.approx(float(logs32[k]), rel=0.03), k


def test_the_losses_leave_autocast_for_full_precision():
    """Inside a bf16 autocast region the losses still compute in fp32: the same bf16 inputs
    give exactly the fp32 result (a matmul under autocast would run in bf16)."""
    from ilmoco.models.losses import barlow_twins_loss, byol_loss, intermediate_mse, moco_logits

    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(8, 16, generator=g).bfloat16(), torch.randn(8, 16, generator=g)
    queue = torch.nn.functional.normalize(torch.randn(40, 16, generator=g), dim=1)
    z1, z2 = torch.randn(8, 24, generator=g), torch.randn(8, 24, generator=g)
    blocks = [torch.randn(2, 4, 8, 8, generator=g).bfloat16()]
    ref = (moco_logits(q, k, queue, 0.07), barlow_twins_loss(z1, z2, 5e-5, 5e-5, 1 / 32),
           byol_loss(z1, z2), intermediate_mse(blocks, [b + 1 for b in blocks], [4], [1.0])[0])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = (moco_logits(q, k, queue, 0.07), barlow_twins_loss(z1, z2, 5e-5, 5e-5, 1 / 32),
               byol_loss(z1, z2),
               intermediate_mse(blocks, [b + 1 for b in blocks], [4], [1.0])[0])
    for a, b in zip(ref, got):
        assert b.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=0, atol=0)
