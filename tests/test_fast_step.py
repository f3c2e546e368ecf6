"""The optimizer paths of the training step (docs/PERFORMANCE.md, "CPU
training step"). main.py builds Adamax with torch's default, which takes the
multi-tensor (foreach) path on CUDA and the per-parameter loop on CPU, where
foreach was measured slower; both do the same arithmetic, so seeded steps
give the same bits either way (gradient clipping likewise)."""
from types import SimpleNamespace

import torch
import torch.nn.functional as F

import base_model


def small_model():
    sizes = SimpleNamespace(dictionary=SimpleNamespace(ntoken=30), v_dim=12, num_ans_candidates=9)
    torch.manual_seed(3)
    model = base_model.build_ban(sizes, 16, 'c', 2)
    model.w_emb.set_table_trainable(True)
    return model


def batch(seed):
    generator = torch.Generator().manual_seed(seed)
    v = torch.rand(5, 11, 12, generator=generator)
    corner = torch.rand(5, 11, 2, generator=generator) * 0.6
    b = torch.cat([corner, corner + 0.3, torch.full((5, 11, 2), 0.3)], 2)
    q = torch.randint(0, 31, (5, 14), generator=generator)
    a = torch.rand(5, 9, generator=generator)
    return v, b, q, a


def train(foreach, steps=4):
    """Parameters after `steps` seeded recipe steps (dropout on, clip 0.25)."""
    model = small_model().train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adamax(params, lr=2e-3, foreach=foreach)
    torch.manual_seed(7)
    for step in range(steps):
        v, b, q, a = batch(step)
        logits, _ = model(v, b, q, None)
        loss = F.binary_cross_entropy_with_logits(logits, a) * a.size(1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 0.25, foreach=foreach)
        optimizer.step()
    return model.state_dict(), optimizer.state_dict()['state']


def test_multi_tensor_adamax_and_clipping_give_the_loops_bits():
    looped, looped_state = train(foreach=False)
    grouped, grouped_state = train(foreach=True)
    assert [key for key in looped if not torch.equal(looped[key], grouped[key])] == []
    for index, state in looped_state.items():
        for key in ('step', 'exp_avg', 'exp_inf'):
            assert torch.equal(state[key], grouped_state[index][key]), (index, key)
    other, _ = train(foreach=True, steps=3)  # the comparison can fail: one step fewer differs
    assert not torch.equal(other['classifier.main.3.weight_v'], grouped['classifier.main.3.weight_v'])
