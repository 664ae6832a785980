"""bf16 autocast (used on GPUs) against fp32 on a fixed batch: the losses agree, and they are
computed in fp32 inside the autocast region."""

import pytest
import torch
from test_moco import TERMS, term

from ilmoco.moco import MoCo
from ilmoco.settings import MoCoSettings


@pytest.mark.parametrize("method", ["moco", "moco_mse", "moco_bt"])
def test_bf16_and_fp32_losses_agree_on_a_fixed_batch(method):
    torch.manual_seed(0)
    moco = MoCoSettings(dim=32, queue_size=64, momentum=0.999, momentum_schedule="constant",
                        temperature=0.2, head="mlp", bn="global", bn_splits=8)
    model = MoCo("resnet18", 3, True, moco,
                 term(TERMS[method], pool=(4, 4, 2, 1), projector=(64, 64, 64)))
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
        assert float(logs16[k]) == pytest.approx(float(logs32[k]), rel=0.03, abs=1e-4), k
