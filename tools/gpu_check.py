"""Everything a GPU must show, in one command that can be run blind.

    python3 tools/gpu_check.py                 # on a CUDA machine: at most about 7.5 minutes
    python3 tools/gpu_check.py --cpu-dry-run   # every part at tiny size on CPU (what CI runs)

Five parts, each in its own process with a hard time limit (PART_LIMITS_S);
a part that fails, crashes or runs out of time is reported and the next one
runs:
  parity       the golden cases of tests/golden/ (VQA logits, attention and
               gradients, Flickr attention logits and gradients, the counter)
               on the device in fp32 within the CPU test's tolerances
               (tests/test_model.py: outputs 1e-5, gradients 1e-4, relative to
               the largest reference value; TF32 off), and under bf16 / fp16
               autocast within the looser AUTOCAST_BOUNDS;
  determinism  two seeded main.py trainings of a tiny VQA root
               (tools/tiny_vqa.py) give equal weights; if not, the exact
               difference, and whether torch's deterministic algorithms
               (plus CUBLAS_WORKSPACE_CONFIG) make them equal;
  speed        tools/benchmark.py at the paper's size (num_hid 1280, 8 glimpses,
               op c, batch 256, 10-100 boxes per image from the adaptive
               features' distribution) in fp32, bf16 and fp16: training and
               inference samples/s, peak GPU memory; then tools/bench_loader.py
               (DataLoader over an on-demand HDF5 file on local disk) against
               the bf16 training rate. Goals: >= 5,000 bf16 training samples/s
               on one H100, batch 256 under 20 GB;
  ddp          torchrun on one node, one process per GPU: one short epoch of
               main.py runs, and evaluate.py under torchrun gives exactly the
               single-process evaluation;
  detector     seconds per image of detection/detector.py (random weights of
               the real shapes) in fp32, fp16 and bf16, and its pool5 features
               against the CPU's for the same regions (DETECTOR_BOUNDS).

Writes results/gpu_check.json (every figure) and results/gpu_check.md (a
table to paste into docs/PERFORMANCE.md) and prints one line per part. Needs
no network. Without CUDA it says so in one line, runs the CPU dry run and
exits 0. With --cpu-dry-run the exit status is 1 when a part fails.
"""
import argparse
import contextlib
import gc
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import base_model  # noqa: E402
from counting import Counter  # noqa: E402
from detection import detector, regions  # noqa: E402
from runs.flags import FlagParser  # noqa: E402
from tools import bench_detector, bench_loader, benchmark, tiny_vqa  # noqa: E402
from tools.bench_timing import machine_info  # noqa: E402
from utils import save_json  # noqa: E402

GOLDEN = REPO / 'tests' / 'golden'
PARTS = ('parity', 'determinism', 'speed', 'ddp', 'detector')
# Hard wall-clock limit of each part's process: 440 s in all on CUDA, which leaves the
# parent's start and the table inside 8 minutes on one H100.
PART_LIMITS_S = {'cuda': {'parity': 40, 'determinism': 90, 'speed': 170, 'ddp': 70, 'detector': 70},
                 # the dry run's limits only catch a hang: a loaded 2-core CI machine may be 5x slow
                 'dry': {'parity': 120, 'determinism': 240, 'speed': 180, 'ddp': 240, 'detector': 150}}
FP32_TOLERANCES = {'outputs': 1e-5, 'gradients': 1e-4}  # tests/test_model.py on CPU
# Relative error (max |error| / max |reference|) allowed under autocast. bf16 keeps
# 8 mantissa bits (about 4e-3 per rounding), fp16 11; the golden models are small,
# so a few roundings in sequence bound the outputs; gradients pass through more.
AUTOCAST_BOUNDS = {'bf16': {'outputs': 5e-2, 'gradients': 2e-1},
                   'fp16': {'outputs': 1e-2, 'gradients': 5e-2}}
# pool5 features of the same regions, relative to their largest value.
DETECTOR_BOUNDS = {'fp32': 1e-3, 'fp16': 2e-2, 'bf16': 1e-1}
AMP_DTYPES = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}
GOALS = {'bf16_train_samples_per_s': 5000, 'peak_memory_gb': 20}
# tools/tiny_vqa.py's sizes for main.py / evaluate.py
TINY_MODEL_FLAGS = ['--emb_dim', str(tiny_vqa.GLOVE_DIM), '--num_hid', '16', '--gamma', '2']
DRY_SIZE = ['--num_hid', '32', '--gamma', '2', '--v_dim', '64', '--n_ans', '40', '--ntoken', '60',
            '--emb_dim', '16']
TINY_DETECTOR = detector.Architecture(stem=4, widths=(2, 2, 4, 4), rpn=8)


# ----------------------------------------------------------------- helpers

def rel_err(actual, expected):
    """max |actual - expected| / max |expected| (float64, on the CPU)."""
    actual, expected = actual.detach().double().cpu(), expected.detach().double().cpu()
    return ((actual - expected).abs().max() / expected.abs().max()).item()


def autocast(device, precision):
    if AMP_DTYPES[precision] is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=AMP_DTYPES[precision])


def fp32_exact(device):
    """No TF32 anywhere (matmuls and cuDNN, which the GRU and convolutions use)."""
    if device.type == 'cuda':
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


def free_port():
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return str(probe.getsockname()[1])


def run_command(command, env=None, timeout=None):
    """Run a command in the repository; a failure raises with its last output lines."""
    result = subprocess.run(command, cwd=str(REPO), env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr).strip().splitlines()[-8:]
        raise RuntimeError('%s exited with %d: %s' % (' '.join(command[:4]), result.returncode, ' | '.join(tail)))
    return result.stdout


def tiny_root(workdir, images_per_split=(40, 16, 16)):
    """A prepared tiny VQA root under workdir (made once, reused by later parts)."""
    root = Path(workdir) / ('tiny_vqa_%d' % images_per_split[0])
    if not (root / 'done').exists():
        shutil.rmtree(root, ignore_errors=True)
        tiny_vqa.write_raw(root, images_per_split=images_per_split)
        tiny_vqa.prepare(root)
        (root / 'done').write_text('')
    return str(root)


# ----------------------------------------------------------------- 1. parity

def golden_models():
    """(vqa model, vqa case, flickr model, flickr case, counter case) on the CPU, as tests/test_model.py loads them."""
    config = json.loads((GOLDEN / 'config.json').read_text())
    vqa, flickr = config['vqa'], config['flickr']
    vqa_sizes = SimpleNamespace(dictionary=SimpleNamespace(ntoken=vqa['ntoken']), v_dim=vqa['v_dim'],
                                num_ans_candidates=vqa['n_ans'])
    vqa_model = base_model.build_ban(vqa_sizes, vqa['num_hid'], vqa['op'], vqa['gamma'])
    vqa_model.load_state_dict(torch.load(GOLDEN / 'vqa_checkpoint.pth', weights_only=True)['model_state'])
    flickr_sizes = SimpleNamespace(dictionary=SimpleNamespace(ntoken=flickr['ntoken']), v_dim=flickr['v_dim'],
                                   num_ans_candidates=100)
    flickr_model = base_model.build_ban(flickr_sizes, flickr['num_hid'], flickr['op'], flickr['gamma'], task='flickr')
    flickr_model.load_state_dict(torch.load(GOLDEN / 'flickr_checkpoint.pth', weights_only=True)['model_state'])
    return (vqa_model.eval(), torch.load(GOLDEN / 'vqa_case.pt', weights_only=True), flickr_model.eval(),
            torch.load(GOLDEN / 'flickr_case.pt', weights_only=True),
            torch.load(GOLDEN / 'counter_case.pt', weights_only=True))


def vqa_errors(model, case, device, precision):
    """Relative errors of logits, attention, loss and the worst gradient against the golden case."""
    model.zero_grad(set_to_none=True)
    v, b, q, a = (case[key].to(device) for key in ('v', 'b', 'q', 'a'))
    with autocast(device, precision):
        logits, att = model(v, b, q, None)
    logits, att = logits.float(), att.float()
    loss = F.binary_cross_entropy_with_logits(logits, a) * a.size(1)  # the recipe's loss
    loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    missing = set(case['grads']) ^ set(grads)
    return {'logits': rel_err(logits, case['logits']), 'attention': rel_err(att, case['att']),
            'loss': rel_err(loss, case['loss']),
            'gradients': max(rel_err(grads[name], expected) for name, expected in case['grads'].items()
                             if name in grads),
            'gradient_sets_differ': sorted(missing)}


def flickr_errors(model, case, device, precision):
    model.zero_grad(set_to_none=True)
    v, b, q, e = (case[key].to(device) for key in ('v', 'b', 'q', 'e'))
    with autocast(device, precision):
        _, att_logits = model(v, b, q, e, None)
    att_logits = att_logits.float()
    num_boxes = att_logits.size(2)
    counts = case['e_num'][:, 0].tolist()
    merged_logits = torch.cat([att_logits[j, 0, :, :n] for j, n in enumerate(counts)], 1).t()
    merged_targets = torch.cat([case['target'][j, :n, :num_boxes] for j, n in enumerate(counts)], 0).to(device)
    loss = F.binary_cross_entropy_with_logits(merged_logits, merged_targets, reduction='sum') / v.size(0)
    loss.backward()
    masked_same = torch.equal((att_logits == -99).cpu(), case['att_logits'] == -99)
    return {'att_logits': rel_err(att_logits, case['att_logits']), 'loss': rel_err(loss, case['loss']),
            'gradients': max(rel_err(p.grad, case['grads'][name]) for name, p in model.named_parameters()),
            'masked_exactly_-99_same_places': masked_same}


def counter_error(case, device):
    counter = Counter(10)
    with torch.no_grad():
        for function, weight in zip(counter.f, case['weights']):
            function.weight.copy_(weight)
    counter.to(device)
    out = counter(case['boxes'].to(device), case['attention'].to(device))
    return rel_err(out, case['out'])


def part_parity(device, dry):
    fp32_exact(device)
    vqa_model, vqa_case, flickr_model, flickr_case, counter_case = golden_models()
    vqa_model.to(device)
    flickr_model.to(device)
    figures, failures = {}, []
    for precision in ('fp32', 'bf16', 'fp16'):
        bounds = FP32_TOLERANCES if precision == 'fp32' else AUTOCAST_BOUNDS[precision]
        vqa = vqa_errors(vqa_model, vqa_case, device, precision)
        flickr = flickr_errors(flickr_model, flickr_case, device, precision)
        figures[precision] = {'vqa': vqa, 'flickr': flickr, 'bounds': bounds}
        outputs = max(vqa['logits'], vqa['attention'], vqa['loss'], flickr['att_logits'], flickr['loss'])
        gradients = max(vqa['gradients'], flickr['gradients'])
        figures[precision].update(max_output_error=outputs, max_gradient_error=gradients)
        if outputs > bounds['outputs'] or gradients > bounds['gradients']:
            failures.append('%s: outputs %.1e (bound %.0e), gradients %.1e (bound %.0e)'
                            % (precision, outputs, bounds['outputs'], gradients, bounds['gradients']))
        if vqa['gradient_sets_differ']:
            failures.append('%s: gradients present/absent differ for %s' % (precision, vqa['gradient_sets_differ']))
        if not flickr['masked_exactly_-99_same_places']:
            failures.append('%s: Flickr masked logits are not exactly -99 in the same places' % precision)
    figures['counter_fp32'] = counter_error(counter_case, device)
    if figures['counter_fp32'] > FP32_TOLERANCES['outputs']:
        failures.append('counter: %.1e' % figures['counter_fp32'])
    summary = 'fp32 outputs %.1e grads %.1e; bf16 %.1e / %.1e; fp16 %.1e / %.1e; counter %.1e' % tuple(
        [figures[p][k] for p in ('fp32', 'bf16', 'fp16') for k in ('max_output_error', 'max_gradient_error')]
        + [figures['counter_fp32']])
    return {'pass': not failures, 'summary': summary, 'failures': failures, 'figures': figures}


# ----------------------------------------------------------------- 2. determinism

def train_state(root, output, device_flag, batch_size, epochs, deterministic=False):
    """model_last.pth's weights after a seeded main.py run in a fresh process."""
    flags = ['--dataroot', root, '--output', str(output), '--seed', '11', '--epochs', str(epochs), '--workers', '0',
             '--batch_size', str(batch_size), '--device', device_flag] + TINY_MODEL_FLAGS
    env = dict(os.environ)
    if deterministic:
        env['CUBLAS_WORKSPACE_CONFIG'] = ':4096:8'
        # warn_only: an op without a deterministic kernel warns instead of stopping the run
        code = ('import sys, torch; torch.use_deterministic_algorithms(True, warn_only=True); import main; '
                'main.main(sys.argv[1:])')
        run_command([sys.executable, '-c', code] + flags, env=env)
    else:
        run_command([sys.executable, 'main.py'] + flags, env=env)
    return torch.load(Path(output) / 'model_last.pth', weights_only=True, map_location='cpu')['model_state']


def compare_states(first, second):
    differing = {key: (first[key].double() - second[key].double()).abs().max().item()
                 for key in first if not torch.equal(first[key], second[key])}
    return differing


def part_determinism(device, dry, workdir):
    # On CUDA as tests/test_reproducibility.py: 600 questions in batches of 256 (large enough
    # for the counter's indexing backward to be spread over many threads), two epochs
    # (Adamax's first update is lr * sign(gradient): differences in the last bits show later).
    root = tiny_root(workdir, (40, 16, 16) if dry else (200, 16, 16))
    device_flag = 'cpu' if dry else 'cuda'
    batch_size, epochs = (16, 1) if dry else (256, 2)
    first = train_state(root, Path(workdir) / 'det_a', device_flag, batch_size, epochs)
    second = train_state(root, Path(workdir) / 'det_b', device_flag, batch_size, epochs)
    differing = compare_states(first, second)
    figures = {'tensors': len(first), 'differing_tensors': len(differing),
               'max_abs_difference': max(differing.values(), default=0.0),
               'differing': dict(sorted(differing.items(), key=lambda item: -item[1])[:10])}
    if not differing:
        return {'pass': True, 'summary': 'two seeded %s runs: all %d tensors equal' % (device_flag, len(first)),
                'figures': figures}
    # Which flag would fix it: the same pair under torch's deterministic algorithms. What was
    # measured so far is saved first, for the report should the part run out of time.
    save_json({'pass': False, 'summary': 'two seeded runs differ in %d of %d tensors (max |diff| %.2e)' % (
        len(differing), len(first), figures['max_abs_difference']), 'figures': figures},
        Path(workdir) / 'determinism.partial.json')
    try:
        third = train_state(root, Path(workdir) / 'det_c', device_flag, batch_size, epochs, deterministic=True)
        fourth = train_state(root, Path(workdir) / 'det_d', device_flag, batch_size, epochs, deterministic=True)
        fixed = not compare_states(third, fourth)
    except RuntimeError as err:  # keep the difference measured above
        figures['deterministic_rerun_error'] = str(err)[-500:]
        fixed = False
    figures['equal_with_deterministic_algorithms'] = fixed
    figures['fix'] = ('torch.use_deterministic_algorithms(True) with CUBLAS_WORKSPACE_CONFIG=:4096:8 '
                      '(runs/runtime.py turns it on for CPU runs only)')
    summary = ('two seeded runs differ in %d of %d tensors (max |diff| %.2e, largest in %s); deterministic '
               'algorithms %s' % (len(differing), len(first), figures['max_abs_difference'],
                                  next(iter(figures['differing'])), 'make them equal' if fixed else 'do NOT fix it'))
    return {'pass': False, 'summary': summary, 'figures': figures}


# ----------------------------------------------------------------- 3. speed and memory

def part_speed(device, dry, workdir):
    # tools/benchmark.py's defaults are the paper's BAN-8 with counter
    common = ['--device', str(device), '--matmul_size', '0'] + (DRY_SIZE if dry else [])
    if dry:
        common += ['--batch_size', '4', '--steps', '2', '--warmup', '1', '--num_batches', '2']
    else:
        common += ['--batch_size', '256', '--steps', '10', '--warmup', '3', '--num_batches', '4']
    figures = {}
    for precision in ('fp32', 'bf16', 'fp16'):
        amp = 'off' if precision == 'fp32' else precision
        report = benchmark.main(common + ['--amp', amp])['steps']
        figures[precision] = {'train_samples_per_s': report['train']['samples_per_s'],
                              'train_peak_memory_gb': report['train']['peak_memory_mb'] / 1024,
                              'infer_samples_per_s': report['infer']['samples_per_s'],
                              'infer_peak_memory_gb': report['infer']['peak_memory_mb'] / 1024,
                              'train_ms_per_step': report['train']['median_ms'],
                              'mean_boxes': report['mean_boxes'], 'memory_kind': report['memory_kind']}
        gc.collect()
        if device.type == 'cuda':
            torch.cuda.empty_cache()
    step_rate = figures['bf16']['train_samples_per_s']
    cpus = os.cpu_count() or 1
    loader_args = ['--workdir', str(Path(workdir) / 'loader'), '--step_rate', '%.3f' % step_rate]
    if dry:
        loader_args += ['--images', '40', '--questions', '60', '--feature_dim', '64', '--batch_size', '8',
                        '--workers', '0', '--batches', '3', '--warmup', '1', '--repeats', '1']
    else:
        counts = sorted({0, min(4, cpus), min(8, cpus), min(16, cpus)})
        loader_args += ['--images', '4000', '--questions', '12000', '--workers', ','.join(map(str, counts)),
                        '--batches', '20', '--warmup', '2', '--repeats', '1']
    loader = bench_loader.main(loader_args)
    figures['loader'] = {'samples_per_s_by_workers': {str(r['workers']): r['samples_per_s'] for r in loader['results']},
                         'best_samples_per_s': loader['best_samples_per_s'],
                         'best_over_bf16_step_rate': loader['best_samples_per_s'] / step_rate,
                         'note': 'HDF5 file just written: read through the page cache'}
    failures = []
    if not dry:
        figures['goals'] = GOALS
        if step_rate < GOALS['bf16_train_samples_per_s']:
            failures.append('bf16 training %.0f samples/s < %d' % (step_rate, GOALS['bf16_train_samples_per_s']))
        for precision in ('fp32', 'bf16', 'fp16'):
            if figures[precision]['train_peak_memory_gb'] >= GOALS['peak_memory_gb']:
                failures.append('%s peak %.1f GB >= %d GB' % (precision, figures[precision]['train_peak_memory_gb'],
                                                              GOALS['peak_memory_gb']))
        if figures['loader']['best_over_bf16_step_rate'] < 1:
            failures.append('the loader (%.0f samples/s) starves the GPU' % loader['best_samples_per_s'])
    summary = ('train samples/s fp32 %.0f, bf16 %.0f, fp16 %.0f; peak GB %.2f / %.2f / %.2f; infer bf16 %.0f/s; '
               'loader %.0f/s (%.2fx bf16 step rate)' % (
                   figures['fp32']['train_samples_per_s'], step_rate, figures['fp16']['train_samples_per_s'],
                   figures['fp32']['train_peak_memory_gb'], figures['bf16']['train_peak_memory_gb'],
                   figures['fp16']['train_peak_memory_gb'], figures['bf16']['infer_samples_per_s'],
                   loader['best_samples_per_s'], figures['loader']['best_over_bf16_step_rate']))
    return {'pass': not failures, 'summary': summary, 'failures': failures, 'figures': figures}


# ----------------------------------------------------------------- 4. torchrun DDP

def evaluation(root, run_folder, device_flag, processes, output, env):
    flags = ['evaluate.py', '--dataroot', root, '--input', str(run_folder), '--epoch', '0', '--workers', '0',
             '--device', device_flag, '--output', str(output)] + TINY_MODEL_FLAGS[2:]
    if processes > 1:
        run_command([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', str(processes),
                     '--master_port', free_port()] + flags, env=env)
    else:
        run_command([sys.executable] + flags, env=env)
    return json.loads(Path(output).read_text())


def part_ddp(device, dry, workdir):
    root = tiny_root(workdir)
    # CPU: two gloo processes (as tests/test_cli.py); CUDA: one NCCL process per GPU.
    processes = 2 if dry else max(1, torch.cuda.device_count())
    device_flag = 'cpu' if dry else 'auto'
    env = dict(os.environ, OMP_NUM_THREADS='1')
    run_folder = Path(workdir) / 'ddp_run'
    run_command([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', str(processes),
                 '--master_port', free_port(), 'main.py', '--dataroot', root, '--output', str(run_folder),
                 '--epochs', '1', '--batch_size', '16', '--workers', '0', '--device', device_flag]
                + TINY_MODEL_FLAGS, env=env)
    records = [json.loads(line) for line in (run_folder / 'log.jsonl').read_text().splitlines() if line.strip()]
    single = evaluation(root, run_folder, device_flag if dry else 'cuda', 1, Path(workdir) / 'eval_single.json', env)
    together = evaluation(root, run_folder, device_flag, processes, Path(workdir) / 'eval_ddp.json', env)
    keys = ('score', 'upper_bound', 'entropy', 'samples')
    differing = [key for key in keys if single.get(key) != together.get(key)]
    figures = {'processes': processes, 'process_group': processes > 1,
               'train_records': len(records), 'train_samples': records[-1].get('samples') if records else None,
               'single': {key: single.get(key) for key in keys}, 'torchrun': {key: together.get(key) for key in keys}}
    failures = ['evaluation differs in %s' % ', '.join(differing)] if differing else []
    if len(records) != 1:
        failures.append('the epoch logged %d records, not 1' % len(records))
    note = '' if processes > 1 else ' (1 GPU: world size 1, no process group; DDP needs 2+ GPUs)'
    summary = 'torchrun x%d: 1 epoch, evaluation score %.4g %s single-process%s' % (
        processes, together.get('score'), '==' if not differing else '!=', note)
    return {'pass': not failures, 'summary': summary, 'failures': failures, 'figures': figures}


# ----------------------------------------------------------------- 5. detector

def pool5_of(model, blob, rois, device, precision):
    """pool5 features [R, 2048] (float32, CPU) of the given regions, everything on `device`."""
    with torch.inference_mode(), autocast(device, precision):
        features = model.backbone(blob.to(device))
        pooled = regions.roi_pool(features, rois.to(device))
        return model.head(pooled).float().cpu()


@torch.inference_mode()
def blob_seconds(model, blob, im_info, device):
    """Seconds of one extraction from a preprocessed blob (the dry run's timing)."""
    clock = bench_detector.StageClock(device)
    blob, im_info = blob.to(device), im_info.to(device)
    features = model.backbone(blob)
    rois = regions.propose(*model.rpn(features), im_info)
    pool5 = model.head(regions.roi_pool(features, rois))
    cls_prob = F.softmax(model.cls_score(pool5), dim=1)
    regions.select_regions(rois.float().cpu() / im_info[0, 2].item(), cls_prob.float().cpu())
    clock.lap('all')
    return clock.times['all']


def part_detector(device, dry, workdir):
    """On CUDA: the full network on 600x800 photos, tools/bench_detector.py's timed
    extraction (decode included), 1 warm-up + 3 images per precision. Dry run: the
    narrow network on a quarter-size blob, one timed pass per precision."""
    fp32_exact(device)
    architecture = TINY_DETECTOR if dry else detector.Architecture()
    cpu_model = bench_detector.randomize(detector.Detector(architecture)).eval()
    paths = bench_detector.synthetic_photos(workdir, 1 if dry else 4)
    figures = {'network': 'narrow (dry run), quarter-size image' if dry else 'full size, random weights',
               'fp32_tf32': False}
    blob, im_info, _ = detector.preprocess(detector.load_image(paths[0]))
    if dry:
        blob = F.interpolate(blob, scale_factor=0.25, mode='bilinear', align_corners=False)
        im_info = torch.tensor([[blob.size(2), blob.size(3), im_info[0, 2].item() * 0.25]])
    # the regions the CPU proposes, pooled on the CPU (the reference) and on the device
    with torch.inference_mode():
        cpu_features = cpu_model.backbone(blob)
        rois = regions.propose(*cpu_model.rpn(cpu_features), im_info)
        reference = cpu_model.head(regions.roi_pool(cpu_features, rois)).float()
    model = cpu_model.to(device, memory_format=torch.channels_last)
    failures = []
    for precision in ('fp32', 'fp16', 'bf16'):
        with autocast(device, precision):
            if dry:
                seconds = [blob_seconds(model, blob, im_info, device)]
            else:
                bench_detector.timed_extraction(model, paths[0], device)  # warm-up: cuDNN plans, allocator
                seconds = [sum(bench_detector.timed_extraction(model, path, device)[0].values())
                           for path in paths[1:]]
        error = rel_err(pool5_of(model, blob, rois, device, precision), reference)
        figures[precision] = {'seconds_per_image_median': statistics.median(seconds), 'seconds': seconds,
                              'pool5_rel_error_vs_cpu': error, 'bound': DETECTOR_BOUNDS[precision]}
        if not error <= DETECTOR_BOUNDS[precision]:
            failures.append('%s pool5 error %.1e > %.0e' % (precision, error, DETECTOR_BOUNDS[precision]))
    figures['regions_compared'] = len(rois)
    summary = 's/image fp32 (no TF32) %.3f, fp16 %.3f, bf16 %.3f; pool5 vs CPU %.1e / %.1e / %.1e (%d regions)' % (
        figures['fp32']['seconds_per_image_median'], figures['fp16']['seconds_per_image_median'],
        figures['bf16']['seconds_per_image_median'], figures['fp32']['pool5_rel_error_vs_cpu'],
        figures['fp16']['pool5_rel_error_vs_cpu'], figures['bf16']['pool5_rel_error_vs_cpu'], len(rois))
    return {'pass': not failures, 'summary': summary, 'failures': failures, 'figures': figures}


# ----------------------------------------------------------------- driver

def run_part(name, mode, workdir, result_path):
    """In the part's own process: run it and write its result as JSON."""
    dry = mode == 'dry'
    device = torch.device('cpu' if dry else 'cuda')
    started = time.perf_counter()
    if name == 'parity':
        result = part_parity(device, dry)
    else:
        result = globals()['part_' + name](device, dry, workdir)
    result['seconds'] = time.perf_counter() - started
    save_json(result, result_path)


def launch(name, mode, workdir):
    """Run one part in a child process (its own process group, so that torchrun
    and main.py processes it starts stop with it) under its time limit; never raises."""
    limit = PART_LIMITS_S[mode][name]
    result_path = Path(workdir) / ('%s.json' % name)
    command = [sys.executable, str(Path(__file__).resolve()), '--part', name, '--mode', mode,
               '--workdir', str(workdir), '--result', str(result_path)]
    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
    try:
        output, _ = child.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        result = {'pass': False, 'summary': 'stopped at its %g s limit' % limit}
        partial = Path(workdir) / ('%s.partial.json' % name)
        if partial.exists():  # what the part measured before it ran out of time
            result = dict(json.loads(partial.read_text()), **{'pass': False})
            result['summary'] = 'stopped at its %g s limit; so far: %s' % (limit, result['summary'])
        result['seconds'] = time.perf_counter() - started
        return result
    if child.returncode != 0 or not result_path.exists():
        tail = output.strip().splitlines()[-6:]
        return {'pass': False, 'summary': 'crashed (exit %d): %s' % (child.returncode, ' | '.join(tail)),
                'seconds': time.perf_counter() - started}
    return json.loads(result_path.read_text())


def markdown(report):
    machine = report['machine']
    lines = ['GPU check (`%s`), %s, %s, torch %s%s, %s:' % (
        report['command'], report['date'], machine.get('gpu', machine['cpu'] + ' (CPU dry run, tiny sizes)'),
        machine['torch'], ', CUDA %s' % report['cuda'] if report['cuda'] else '', report['total_seconds_text']),
        '', '| part | result | figures | s |', '|---|---|---|---|']
    for name in PARTS:
        part = report['parts'][name]
        lines.append('| %s | %s | %s | %.0f |' % (name, 'pass' if part['pass'] else 'FAIL',
                                                  part['summary'].replace('|', '/'), part.get('seconds', 0)))
    return '\n'.join(lines) + '\n'


def parse_args(argv):
    parser = FlagParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--cpu-dry-run', action='store_true', help='every part at tiny size on the CPU')
    parser.add_argument('--output', default=str(REPO / 'results' / 'gpu_check.json'),
                        help='JSON report (the Markdown table goes beside it, .md)')
    parser.add_argument('--parts', default=','.join(PARTS), help='comma-separated subset of ' + ', '.join(PARTS))
    parser.add_argument('--part', choices=PARTS, help=argparse.SUPPRESS)  # internal: run one part
    parser.add_argument('--mode', choices=('cuda', 'dry'), help=argparse.SUPPRESS)
    parser.add_argument('--workdir', help=argparse.SUPPRESS)
    parser.add_argument('--result', help=argparse.SUPPRESS)
    args = parser.parse(argv)
    unknown = set(args.parts.split(',')) - set(PARTS)
    if unknown:
        parser.error('--parts: unknown %s (choose from %s)' % (', '.join(sorted(unknown)), ', '.join(PARTS)))
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.part:
        run_part(args.part, args.mode, args.workdir, args.result)
        return 0
    dry = args.cpu_dry_run or not torch.cuda.is_available()
    if not torch.cuda.is_available() and not args.cpu_dry_run:
        print('no CUDA device (torch %s): GPU figures need a CUDA machine; running the CPU dry run instead'
              % torch.__version__, flush=True)
    mode = 'dry' if dry else 'cuda'
    device = torch.device('cpu' if dry else 'cuda')
    started = time.perf_counter()
    report = {'command': 'python3 tools/gpu_check.py' + (' --cpu-dry-run' if args.cpu_dry_run else ''),
              'mode': mode, 'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
              'machine': machine_info(device), 'cuda': torch.version.cuda if not dry else None,
              'limits_s': PART_LIMITS_S[mode], 'parts': {}}
    workdir = tempfile.mkdtemp(prefix='gpu_check_')
    try:
        for name in [part for part in PARTS if part in args.parts.split(',')]:
            result = launch(name, mode, workdir)
            report['parts'][name] = result
            print('%-11s %s  %s  (%.0f s)' % (name, 'pass' if result['pass'] else 'FAIL', result['summary'],
                                              result.get('seconds', 0)), flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report['total_seconds'] = time.perf_counter() - started
    report['total_seconds_text'] = '%.0f s in all' % report['total_seconds']
    report['machine']['loadavg_1min_at_end'] = os.getloadavg()[0]
    for name in PARTS:
        report['parts'].setdefault(name, {'pass': False, 'summary': 'not run (--parts)', 'seconds': 0})
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    save_json(report, args.output)
    table = markdown(report)
    Path(args.output).with_suffix('.md').write_text(table)
    print('wrote %s and %s' % (args.output, Path(args.output).with_suffix('.md')))
    if args.cpu_dry_run:
        return 0 if all(part['pass'] for part in report['parts'].values()) else 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
