"""Seeded CPU training repeats bit for bit (docs/REPRODUCIBILITY.md).

Batches of 256 questions make the counter's indexing backward large enough
for torch to spread it over threads, where, outside deterministic mode, its
atomic float adds land in a different order from run to run.
"""
import json
import os

import pytest
import torch

import tiny_vqa

FLAGS = ['--emb_dim', str(tiny_vqa.GLOVE_DIM), '--num_hid', '16', '--gamma', '2', '--batch_size', '256',
         '--device', 'cpu']


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp('repro_vqa')
    tiny_vqa.write_raw(root, images_per_split=(200, 16, 16))  # 600 training questions: 3 batches an epoch
    tiny_vqa.prepare(root)
    return str(root)


def train(root, output, seed, workers, epochs=2):
    """(state dict, train loss per epoch) of a main.py run. Two epochs: Adamax's first
    update is lr * sign(gradient), so gradients that differ in the last bits show later."""
    import main
    main.main(['--dataroot', root, '--output', str(output), '--seed', str(seed), '--workers', str(workers),
               '--epochs', str(epochs)] + FLAGS)
    state = torch.load(os.path.join(output, 'model_last.pth'), weights_only=True)['model_state']
    with open(os.path.join(output, 'log.jsonl')) as handle:
        losses = [json.loads(line)['train_loss'] for line in handle]
    return state, losses


@pytest.mark.parametrize('workers', [0, 2])
def test_same_seed_trains_bit_identical_weights(root, tmp_path, workers):
    first, first_losses = train(root, tmp_path / 'first', 11, workers)
    second, second_losses = train(root, tmp_path / 'second', 11, workers)
    assert first.keys() == second.keys()
    differing = [key for key in first if not torch.equal(first[key], second[key])]
    assert differing == []
    assert first_losses == second_losses


def test_another_seed_trains_other_weights(root, tmp_path):
    """The comparison above can fail: the seed drives dropout and shuffling."""
    first, _ = train(root, tmp_path / 'first', 11, 0, epochs=1)
    other, _ = train(root, tmp_path / 'other', 12, 0, epochs=1)
    assert not torch.equal(first['module.classifier.main.3.weight_v'], other['module.classifier.main.3.weight_v'])


def test_counter_backward_repeats_in_deterministic_mode():
    from counting import Counter
    from runs import runtime
    counter = Counter(10)
    generator = torch.Generator().manual_seed(0)
    corners = torch.rand(256, 2, 30, generator=generator)
    boxes = torch.cat([corners, corners + torch.rand(256, 2, 30, generator=generator)], 1)  # [B,4,N]
    attention = torch.randn(256, 30, generator=generator)  # [B,N]

    def gradients():
        counter.zero_grad()
        counter(boxes, attention).sum().backward()
        return torch.stack([function.weight.grad for function in counter.f[:8]])  # [8,17]

    with runtime.deterministic_on_cpu(torch.device('cpu')):
        first = gradients()
        assert all(torch.equal(first, gradients()) for _ in range(10))


def test_deterministic_mode_is_scoped_and_cpu_only():
    from runs import runtime
    before = torch.are_deterministic_algorithms_enabled()
    with runtime.deterministic_on_cpu(torch.device('cpu')):
        assert torch.are_deterministic_algorithms_enabled()
    assert torch.are_deterministic_algorithms_enabled() == before
    with runtime.deterministic_on_cpu(torch.device('cuda')):  # a GPU run keeps the user's setting
        assert torch.are_deterministic_algorithms_enabled() == before
