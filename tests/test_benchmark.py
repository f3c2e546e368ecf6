"""tools/benchmark.py: bf16 autocast training tracks float32, masking under
autocast, the box-count distribution, and a smoke run of the CLI."""
import json

import numpy as np
import pytest
import torch

from tools import benchmark
from utils import UserError

TINY = ['--num_hid', '32', '--gamma', '2', '--v_dim', '64', '--n_ans', '30', '--ntoken', '50',
        '--emb_dim', '16']


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest (and immune to busy neighbours) on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_batches(args, num_batches=4, batch=16, seed=0):
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    return [benchmark.synthetic_batch(rng.integers(10, 31, batch).tolist(), args,
                                      torch.device('cpu'), generator) for _ in range(num_batches)]


def loss_curve(args, batches, amp, steps=30):
    trainer = benchmark.Trainer(benchmark.build_model(args, torch.device('cpu')),
                                torch.device('cpu'), amp, lr=2e-3)
    torch.manual_seed(1)  # the same dropout masks for both runs
    return [trainer.train_step(*batches[i % len(batches)]).item() for i in range(steps)]


def test_bf16_autocast_training_tracks_float32():
    args = benchmark.parse_args(TINY)
    batches = tiny_batches(args)
    fp32 = loss_curve(args, batches, 'off')
    bf16 = loss_curve(args, batches, 'bf16')
    for curve in (fp32, bf16):
        assert np.mean(curve[-4:]) < 0.5 * np.mean(curve[:4])  # both learn
    assert bf16 != fp32  # autocast did change the arithmetic
    assert abs(bf16[-1] - fp32[-1]) / fp32[-1] < 0.10
    assert max(abs(b - f) / f for b, f in zip(bf16, fp32)) < 0.15


@pytest.mark.parametrize('train', [False, True])
def test_masking_is_exact_under_bf16_autocast(train):
    args = benchmark.parse_args(TINY)
    model = benchmark.build_model(args, torch.device('cpu')).train(train)
    counts = [10, 25, 17, 25]
    v, b, q, _ = benchmark.synthetic_batch(counts, args, torch.device('cpu'),
                                           torch.Generator().manual_seed(2))
    with torch.autocast('cpu', dtype=torch.bfloat16):
        logits, att = model(v, b, q, None)
    assert torch.isfinite(logits).all()
    for i, count in enumerate(counts):
        assert torch.all(att[i, :, count:] == 0)  # padded boxes: exactly no attention
        assert torch.all(att[i, :, :count].sum(2) > 0)
    assert torch.allclose(att.float().sum((2, 3)), torch.ones(4, 2), atol=2e-2)


def test_box_count_distribution_matches_the_adaptive_features():
    counts = benchmark.sample_box_counts(200000, np.random.default_rng(0))
    assert counts.min() == 10 and counts.max() == 100
    assert abs(counts.mean() - 2643089 / 82783) < 0.5  # train boxes / train images
    assert 20 < np.median(counts) < 35


def test_cli_writes_json_with_positive_figures(tmp_path, capsys):
    out = tmp_path / 'bench.json'
    benchmark.main(TINY + ['--batch_size', '4', '--steps', '2', '--warmup', '1',
                           '--matmul_size', '64', '--json', str(out)])
    report = json.loads(out.read_text())
    steps = report['steps']
    for phase in ('train', 'infer'):
        assert steps[phase]['median_ms'] > 0 and steps[phase]['samples_per_s'] > 0
        assert steps[phase]['peak_memory_mb'] > 0 and len(steps[phase]['step_ms']) == 2
    assert 0 <= steps['padded_box_fraction'] < 1 and 10 <= steps['mean_boxes'] <= 100
    assert report['matmul_gflops'] > 0 and report['machine']['torch_threads'] == 1
    assert report['config']['amp'] == 'off'
    assert 'train ms/step (median)' in capsys.readouterr().out


def test_cli_fixed_boxes_amp_modes_and_profile():
    for amp in ('bf16', 'fp16'):
        report = benchmark.main(TINY + ['--batch_size', '2', '--boxes', '12', '--steps', '1',
                                        '--warmup', '0', '--amp', amp, '--no_infer',
                                        '--matmul_size', '0', '--profile'])
        steps = report['steps']
        assert steps['mean_boxes'] == 12 and steps['padded_box_fraction'] == 0
        assert steps['train']['median_ms'] > 0 and 'infer' not in steps
        assert 0 < steps['profile']['matmul_ms'] < steps['profile']['all_ops_ms']
        assert steps['profile']['matmul_gflop'] > 0


def test_epoch_mode_compares_random_and_bucketed_batches(tmp_path):
    out = tmp_path / 'epoch.json'
    report = benchmark.main(TINY + ['--epoch_images', '96', '--batch_size', '16', '--bucket_size', '3',
                                    '--matmul_size', '0', '--json', str(out)])
    epoch = json.loads(out.read_text())['epoch']
    assert epoch == report['epoch']
    assert epoch['random']['batches'] == epoch['bucket']['batches'] == 6
    assert epoch['bucket']['padded_box_fraction'] < epoch['random']['padded_box_fraction']
    assert epoch['random']['epoch_s'] > 0 and epoch['speedup'] > 0


@pytest.mark.parametrize('argv,message', [
    (['--device', 'cuda:0'] if not torch.cuda.is_available() else ['--device', 'tpu'], '--device'),
    (['--batch_size', '0'], '--batch_size'),
    (['--boxes', '-1'], '--boxes'),
])
def test_cli_rejects_bad_options(argv, message):
    with pytest.raises(UserError, match=message):
        benchmark.main(argv)
