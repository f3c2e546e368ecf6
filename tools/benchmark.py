"""Training and inference speed of BAN on synthetic batches.

Default size is the paper's BAN-8 with counter (num_hid 1280, 8 glimpses,
op `c`, 2048-d features, 3,129 answers, 19,901 words, 300-d GloVe, 14-token
questions). A training step is the recipe's: forward, BCE-with-logits loss
(mean x #answers), backward, gradient-norm clip 0.25, Adamax step.

Box counts per image follow BOX_COUNT_DISTRIBUTION unless `--boxes N` fixes
them; each batch pads to its largest image, as the real collate does.

    python3 tools/benchmark.py --device cpu --batch_size 32 --boxes 50
    python3 tools/benchmark.py --device cuda --batch_size 256 --amp bf16 --json out.json
    python3 tools/benchmark.py --epoch_images 20000 --num_hid 128   # bucketing vs random batches

Prints a table; `--json PATH` also writes the figures (atomically).
"""
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import base_model  # noqa: E402
from formats.dictionary import QUESTION_LENGTH  # noqa: E402
from runs import flags  # noqa: E402
from runs.samplers import DEFAULT_BUCKET_SIZE, BucketBatchSampler, padding_waste  # noqa: E402
from runs.tasks import instance_bce_with_logits  # noqa: E402
from tools.bench_timing import (  # noqa: E402
    OtherLoad,
    PeakMemory,
    machine_info,
    matmul_gflops,
    synchronize,
    time_calls,
)
from train import GRAD_CLIP  # noqa: E402
from utils import UserError, run_cli, save_json  # noqa: E402

# Box counts of the adaptive bottom-up features: 10..100 per image, mean 31.9
# (2,643,089 train boxes / 82,783 train2014 images, FORMATS.md §2). Modelled as
# round(exp(N(mu, sigma))) clipped to [10, 100]: median 28, 10th/90th/99th
# percentiles 15/54/90, mean 31.9.
BOX_COUNT_DISTRIBUTION = {'kind': 'clipped log-normal', 'mu': 3.34, 'sigma': 0.5,
                          'min': 10, 'max': 100}
AMP_DTYPES = {'off': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}


def sample_box_counts(num_images, rng):
    """Box counts [num_images] (int64) drawn from BOX_COUNT_DISTRIBUTION."""
    dist = BOX_COUNT_DISTRIBUTION
    draws = np.exp(rng.normal(dist['mu'], dist['sigma'], size=num_images))
    return np.clip(np.rint(draws), dist['min'], dist['max']).astype(np.int64)


def parse_args(argv):
    parser = flags.FlagParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--device', default='cpu', help='cpu or cuda (cuda:N)')
    parser.add_argument('--amp', default='off', choices=sorted(AMP_DTYPES),
                        help='autocast dtype (fp16 uses a GradScaler)')
    parser.add_argument('--compile', action='store_true', help='torch.compile the model')
    parser.add_argument('--tf32', action='store_true', help='allow TF32 matmuls on CUDA')
    parser.add_argument('--threads', type=int, default=0, help='torch CPU threads (0: leave as is)')
    parser.add_argument('--deterministic', action='store_true',
                        help="torch's deterministic algorithms, as main.py trains on CPU (docs/REPRODUCIBILITY.md)")
    parser.add_argument('--batch_size', type=int, default=32)
    parser.add_argument('--boxes', type=int, default=0,
                        help='fixed box count per image (0: draw from the adaptive distribution)')
    parser.add_argument('--steps', type=int, default=5, help='timed steps (the median is reported)')
    parser.add_argument('--warmup', type=int, default=2,
                        help='untimed steps first (the first step always is; its time is reported)')
    parser.add_argument('--num_batches', type=int, default=4,
                        help='distinct synthetic batches the steps cycle through')
    parser.add_argument('--num_hid', type=int, default=1280)
    parser.add_argument('--gamma', type=int, default=8, help='glimpses')
    parser.add_argument('--op', default='c')
    parser.add_argument('--v_dim', type=int, default=2048)
    parser.add_argument('--n_ans', type=int, default=3129)
    parser.add_argument('--ntoken', type=int, default=19901)
    parser.add_argument('--emb_dim', type=int, default=300)
    parser.add_argument('--lr', type=float, default=1e-3)
    parser.add_argument('--no_infer', action='store_true', help='skip the inference timing')
    parser.add_argument('--profile', action='store_true',
                        help='also profile training steps: op table, time and FLOPs in matmuls')
    parser.add_argument('--profile_steps', type=int, default=5,
                        help='steps profiled (one profiler run each; the medians are reported)')
    parser.add_argument('--matmul_size', type=int, default=2048,
                        help='also time an n x n fp32 matmul (GFLOP/s); 0 to skip')
    parser.add_argument('--epoch_images', type=int, default=0,
                        help='instead: time one training epoch over this many synthetic images, '
                             'with random and with bucketed batches')
    parser.add_argument('--bucket_size', type=int, default=DEFAULT_BUCKET_SIZE)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--json', default='', help='also write the results to this JSON file')
    args = parser.parse_args(argv)
    for name in ('batch_size', 'steps', 'num_batches', 'num_hid', 'gamma', 'v_dim', 'n_ans',
                 'ntoken', 'emb_dim', 'bucket_size', 'profile_steps'):
        if getattr(args, name) < 1:
            raise UserError('--%s must be at least 1 (got %d)' % (name, getattr(args, name)))
    for name in ('boxes', 'warmup', 'threads', 'matmul_size', 'epoch_images'):
        if getattr(args, name) < 0:
            raise UserError('--%s must not be negative (got %d)' % (name, getattr(args, name)))
    for name, limit in (('seed', 2 ** 32 - 1), ('num_hid', flags.MAX_NUM_HID), ('gamma', flags.MAX_GLIMPSES)):
        if not 0 <= getattr(args, name) <= limit:
            raise UserError('--%s must be from 0 to %d (got %d)' % (name, limit, getattr(args, name)))
    return args


def resolve_device(name):
    """The torch.device for `--device`, or a UserError saying why it cannot be used."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError('--device %r is not a device name; use cpu or cuda' % name) from None
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise UserError('--device %s: torch %s sees no CUDA device; install a CUDA build of '
                        'torch on a GPU machine or use --device cpu' % (name, torch.__version__))
    if device.type not in ('cpu', 'cuda'):
        raise UserError('--device %s is not supported; use cpu or cuda' % name)
    return device


def configure_backend(args, device):
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(args.deterministic)
    if device.type == 'cuda':
        torch.backends.cuda.matmul.allow_tf32 = args.tf32
        torch.backends.cudnn.allow_tf32 = args.tf32


def build_model(args, device):
    torch.manual_seed(args.seed)
    model = base_model.build_model(base_model.ModelConfig(task='vqa', num_hid=args.num_hid, gamma=args.gamma, op=args.op,
                                                          emb_dim=args.emb_dim, ntoken=args.ntoken, v_dim=args.v_dim,
                                                          num_answers=args.n_ans))
    if 'c' in args.op:
        model.w_emb.set_table_trainable(True)  # the recipe trains the tf-idf table
    return model.to(device)


def synthetic_batch(box_counts, args, device, generator, features=None):
    """(v [B,N,v_dim], b [B,N,6], q [B,14], a [B,n_ans]) with N = max(box_counts).

    Features are uniform in [0,1) (or rows of `features` [*, >=N, v_dim]), boxes
    random rectangles in the unit square, questions 4..14 tokens then padding,
    targets 1..3 answers with soft scores. Padded boxes are all-zero rows.
    """
    batch, num_boxes = len(box_counts), int(max(box_counts))
    v = torch.zeros(batch, num_boxes, args.v_dim)
    corner = torch.rand(batch, num_boxes, 2, generator=generator) * 0.7
    size = 0.05 + torch.rand(batch, num_boxes, 2, generator=generator) * 0.25
    b = torch.cat([corner, corner + size, size], 2)  # [B,N,6] x1,y1,x2,y2,w,h
    for i, count in enumerate(box_counts):
        if features is None:
            v[i, :count] = torch.rand(count, args.v_dim, generator=generator)
        else:
            v[i, :count] = features[i % features.size(0), :count]
        b[i, count:] = 0
    q = torch.randint(0, args.ntoken, (batch, QUESTION_LENGTH), generator=generator)
    q_len = torch.randint(4, QUESTION_LENGTH + 1, (batch, 1), generator=generator)
    q = q.masked_fill(torch.arange(QUESTION_LENGTH)[None, :] >= q_len, args.ntoken)  # [B,14]
    a = torch.zeros(batch, args.n_ans)
    answers = torch.randint(0, args.n_ans, (batch, 3), generator=generator)
    scores = torch.tensor([1.0, 0.6, 0.3]).expand(batch, 3)
    keep = torch.arange(3)[None, :] < torch.randint(1, 4, (batch, 1), generator=generator)
    a.scatter_(1, answers, torch.where(keep, scores, torch.zeros(())))
    return tuple(t.to(device) for t in (v, b, q, a))


class Trainer:
    """One recipe training step (optionally under autocast, fp16 with a GradScaler)."""

    def __init__(self, model, device, amp='off', lr=1e-3, compiled=False):
        self.model = torch.compile(model) if compiled else model
        self.device = device
        self.amp_dtype = AMP_DTYPES[amp]
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adamax(self.params, lr=lr)  # as main.py (see docs/PERFORMANCE.md on foreach)
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp == 'fp16')

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def train_step(self, v, b, q, a):
        """Returns the loss (a 0-d tensor)."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            logits, _ = self.model(v, b, q, None)
        loss = instance_bce_with_logits(logits.float(), a)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.params, GRAD_CLIP)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach()

    @torch.no_grad()
    def predict(self, v, b, q):
        self.model.eval()
        with self.autocast():
            return self.model(v, b, q, None)


def step_benchmark(args, device):
    """Median training-step and inference times on `num_batches` synthetic batches."""
    rng = np.random.default_rng(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    batches, real_boxes, padded_boxes = [], 0, 0
    for _ in range(args.num_batches):
        counts = ([args.boxes] * args.batch_size if args.boxes
                  else sample_box_counts(args.batch_size, rng).tolist())
        batches.append(synthetic_batch(counts, args, device, generator))
        real_boxes += sum(counts)
        padded_boxes += max(counts) * len(counts)
    model = build_model(args, device)
    trainer = Trainer(model, device, args.amp, args.lr, args.compile)
    memory = PeakMemory(device)
    memory.reset()
    first_s, median_ms, timings, other_load = time_calls(trainer.train_step, batches, args.warmup,
                                                         args.steps, device)
    result = {'train': {'median_ms': median_ms, 'step_ms': timings, 'first_step_s': first_s,
                        'samples_per_s': args.batch_size / (median_ms / 1000),
                        'peak_memory_mb': memory.peak_mb(), 'other_cpu_load': other_load},
              'mean_boxes': real_boxes / (args.num_batches * args.batch_size),
              'padded_box_fraction': 1 - real_boxes / padded_boxes,
              'parameters': sum(p.numel() for p in model.parameters()),
              'memory_kind': memory.kind}
    if args.profile:
        result['profile'] = profile_step(trainer, batches, device, args.profile_steps)
    if not args.no_infer:
        memory.reset()
        first_s, median_ms, timings, other_load = time_calls(
            lambda v, b, q, a: trainer.predict(v, b, q), batches, args.warmup, args.steps, device)
        result['infer'] = {'median_ms': median_ms, 'step_ms': timings, 'first_step_s': first_s,
                           'samples_per_s': args.batch_size / (median_ms / 1000),
                           'peak_memory_mb': memory.peak_mb(), 'other_cpu_load': other_load}
    return result


MATMUL_OPS = ('aten::mm', 'aten::addmm', 'aten::bmm', 'aten::baddbmm', 'aten::baddbmm_')
# Where the non-matmul time of a step goes, by op name (the rest is 'other').
OPTIMIZER_OPS = ('aten::lerp_', 'aten::addcdiv_', 'aten::maximum', 'aten::_foreach_lerp_',
                 'aten::_foreach_mul_', 'aten::_foreach_abs', 'aten::_foreach_add_', 'aten::_foreach_maximum_',
                 'aten::_foreach_addcdiv_', 'aten::_foreach_norm', 'aten::linalg_vector_norm')


def profile_step(trainer, batches, device, steps=1):
    """Profile `steps` training steps, one profiler run each (cycling over `batches`).

    Returns the median over the steps of the time in matmuls (mm, addmm, bmm,
    baddbmm), in all ops, and per op name, the matmul FLOPs, and per step its
    times and the CPU share other processes took meanwhile; prints the op
    table of the median step. Times are the ops' own (self) times on the CPU, or
    on the GPU for CUDA. Several steps make the shares robust to other
    processes taking the CPU for a moment (the shares of one step can be far off).
    """
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == 'cuda':
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    time_key = 'self_device_time_total' if device.type == 'cuda' else 'self_cpu_time_total'
    runs = []
    for step in range(steps):
        other_load = OtherLoad()
        with torch.profiler.profile(activities=activities, with_flops=True) as prof:
            trainer.train_step(*batches[step % len(batches)])
            synchronize(device)
        load = other_load.fraction()
        events = prof.key_averages()
        by_op = {event.key: getattr(event, time_key) / 1000 for event in events}
        matmuls = [event for event in events if event.key in MATMUL_OPS]
        runs.append({'events': events, 'by_op': by_op, 'all_ops_ms': sum(by_op.values()),
                     'matmul_ms': sum(by_op[event.key] for event in matmuls),
                     'matmul_gflop': sum(event.flops for event in matmuls) / 1e9, 'other_cpu_load': load})
    ordered = sorted(runs, key=lambda run: run['all_ops_ms'])
    print(ordered[len(ordered) // 2]['events'].table(sort_by=time_key, row_limit=15, max_name_column_width=40))
    names = set().union(*(run['by_op'] for run in runs))
    op_ms = {name: statistics.median(run['by_op'].get(name, 0.0) for run in runs) for name in names}
    shares = [1 - run['matmul_ms'] / run['all_ops_ms'] for run in runs]
    return {'steps': steps,
            'matmul_ms': statistics.median(run['matmul_ms'] for run in runs),
            'all_ops_ms': statistics.median(run['all_ops_ms'] for run in runs),
            'non_matmul_share': statistics.median(shares), 'non_matmul_share_per_step': shares,
            'per_step': [{key: run[key] for key in ('matmul_ms', 'all_ops_ms', 'other_cpu_load')} for run in runs],
            'matmul_gflop': runs[0]['matmul_gflop'],
            'optimizer_ms': sum(op_ms.get(name, 0.0) for name in OPTIMIZER_OPS),
            'top_ops_ms': dict(sorted(op_ms.items(), key=lambda item: -item[1])[:25])}


def epoch_benchmark(args, device):
    """One training epoch over `epoch_images` synthetic images, random vs bucketed batches.

    Features come from a bank of 64 synthetic images (100 boxes each) so the
    dataset need not be held in memory; building each padded batch is timed,
    as a real data loader's collate would be.
    """
    rng = np.random.default_rng(args.seed)
    lengths = sample_box_counts(args.epoch_images, rng)
    if args.boxes:
        lengths[:] = args.boxes
    bank = torch.rand(64, BOX_COUNT_DISTRIBUTION['max'], args.v_dim,
                      generator=torch.Generator().manual_seed(args.seed))
    shuffled = np.random.default_rng(args.seed + 1).permutation(args.epoch_images)
    orders = {
        'random': [shuffled[i:i + args.batch_size]
                   for i in range(0, args.epoch_images, args.batch_size)],
        'bucket': BucketBatchSampler(lengths, args.batch_size, seed=args.seed,
                                     bucket_size=args.bucket_size).epoch_batches(),
    }
    result = {'images': args.epoch_images, 'mean_boxes': float(lengths.mean())}
    for name, batches in orders.items():
        trainer = Trainer(build_model(args, device), device, args.amp, args.lr, args.compile)
        generator = torch.Generator().manual_seed(args.seed)
        padded, real = padding_waste(lengths, batches)
        synchronize(device)
        other_load = OtherLoad()
        start = time.perf_counter()
        for indices in batches:
            batch = synthetic_batch(lengths[indices].tolist(), args, device, generator,
                                    features=bank)
            trainer.train_step(*batch)
        synchronize(device)
        result[name] = {'epoch_s': time.perf_counter() - start, 'batches': len(batches),
                        'padded_box_fraction': padded / (padded + real),
                        'other_cpu_load': other_load.fraction()}
    result['speedup'] = result['random']['epoch_s'] / result['bucket']['epoch_s']
    return result


def print_table(report):
    rows = [('device', report['machine'].get('gpu', report['machine']['cpu'])),
            ('threads', report['machine']['torch_threads'])]
    if 'epoch' in report:
        epoch = report['epoch']
        for name in ('random', 'bucket'):
            rows.append(('epoch s (%s batches)' % name, '%.1f' % epoch[name]['epoch_s']))
            rows.append(('padded boxes (%s)' % name, '%.1f%%' % (100 * epoch[name]['padded_box_fraction'])))
            rows.append(('other processes\' CPU share (%s)' % name,
                         '%.0f%%' % (100 * epoch[name]['other_cpu_load'])))
        rows.append(('bucketing speed-up', '%.2fx' % epoch['speedup']))
    else:
        steps = report['steps']
        rows += [('mean boxes / padded fraction', '%.1f / %.1f%%' % (
            steps['mean_boxes'], 100 * steps['padded_box_fraction'])),
                 ('parameters', '{:,}'.format(steps['parameters']))]
        for phase in ('train', 'infer'):
            if phase in steps:
                figures = steps[phase]
                rows += [('%s ms/step (median)' % phase, '%.1f' % figures['median_ms']),
                         ('%s samples/s' % phase, '%.1f' % figures['samples_per_s']),
                         ('%s first step s' % phase, '%.2f' % figures['first_step_s']),
                         ('%s peak memory MB (%s)' % (phase, steps['memory_kind']),
                          '%.0f' % figures['peak_memory_mb']),
                         ('%s other processes\' CPU share' % phase,
                          '%.0f%%' % (100 * figures['other_cpu_load']))]
    if 'profile' in report.get('steps', {}):
        profiled = report['steps']['profile']
        rows.append(('profiled steps (median of %d): matmul ms / all ops ms / matmul GFLOP' % profiled['steps'],
                     '%.0f / %.0f / %.1f' % (profiled['matmul_ms'], profiled['all_ops_ms'], profiled['matmul_gflop'])))
        rows.append(('outside matmuls: median share (per step, @ others\' CPU share) / optimizer ms',
                     '%.1f%% (%s) / %.0f' % (100 * profiled['non_matmul_share'], ' '.join(
                         '%.0f%%@%.0f%%' % (100 * share, 100 * step['other_cpu_load'])
                         for share, step in zip(profiled['non_matmul_share_per_step'], profiled['per_step'])),
                         profiled['optimizer_ms'])))
    if 'matmul_gflops' in report:
        rows.append(('fp32 matmul GFLOP/s', '%.1f' % report['matmul_gflops']))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print('%-*s  %s' % (width, name, value))


def main(argv=None):
    args = parse_args(argv)
    device = resolve_device(args.device)
    configure_backend(args, device)
    report = {'config': vars(args), 'box_distribution': BOX_COUNT_DISTRIBUTION,
              'machine': machine_info(device)}
    if args.epoch_images:
        report['epoch'] = epoch_benchmark(args, device)
    else:
        report['steps'] = step_benchmark(args, device)
    if args.matmul_size:
        report['matmul_gflops'] = matmul_gflops(args.matmul_size, device)
    report['machine']['loadavg_1min_at_end'] = os.getloadavg()[0]
    print_table(report)
    if args.json:
        save_json(report, args.json)
    return report


if __name__ == '__main__':
    run_cli(main)
