"""Seconds per image of the bottom-up-attention detector (detection/detector.py) at the
specification's single 600/1000 scale, and where the time goes.

Each image runs the whole extraction of tools/extract_features.py (decode,
preprocess, backbone, RPN, proposals, ROI pooling, res5, heads, region
selection), timed stage by stage; the figure is the median over the images.
On a shared machine the wall time depends on the neighbours: the report also
gives this process's CPU seconds per image and the CPU share other processes
took while it was timing.
Without --detector_weights the full-size network gets random weights of a
plausible scale (the time does not depend on the values, except through the
number of proposals, which is printed: the released model gives 300 on
ordinary photos). Without --images, photo-like 640x480 JPEGs (COCO's usual
size, scaled to 800x600) are generated.

    python3 tools/bench_detector.py --device cpu --num_images 5
    python3 tools/bench_detector.py --device cuda --detector_weights resnet101_faster_rcnn_final.caffemodel \\
        --images photos/ --json results/bench_detector.json
"""
import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from detection import (
    detector,  # noqa: E402
    regions,  # noqa: E402
    weight_files,  # noqa: E402
)
from runs import runtime  # noqa: E402
from runs.flags import FlagParser  # noqa: E402
from tools.benchmark import OtherLoad, machine_info  # noqa: E402
from utils import UserError, run_cli, save_json  # noqa: E402

STAGES = ('decode', 'preprocess', 'backbone', 'rpn', 'propose', 'roi_pool', 'res5_pool5', 'heads', 'select')


def randomize(model, seed=0):
    """Random weights keeping activations near unit size through the depth:
    He-normal convolutions (conv1 scaled down by the pixel spread), unit
    BatchNorm statistics, a small gain on each residual branch's last
    layer, small RPN box deltas."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Conv2d):
                fan_in = module.weight[0].numel()
                std = (2.0 / fan_in) ** 0.5 / (60.0 if name == 'conv1.conv' else 1.0)
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * std)
            elif isinstance(module, detector.FrozenBatchNorm):
                module.running_mean.zero_()
                module.running_var.fill_(1.0)
                module.weight.fill_(0.2 if name.endswith('branch2c.norm') else 1.0)
                module.bias.zero_()
            elif isinstance(module, torch.nn.Linear):
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * 0.01)
            if getattr(module, 'bias', None) is not None and not isinstance(module, detector.FrozenBatchNorm):
                module.bias.zero_()
        model.rpn_bbox_pred.weight.mul_(0.01 / model.rpn_bbox_pred.weight.std())
    return model


def synthetic_photos(folder, count, height=480, width=640, seed=0):
    """Photo-like JPEGs (smooth gradients, solid shapes, noise) written to `folder`."""
    import cv2
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width]
    paths = []
    for index in range(count):
        image = np.stack([120 + 80 * np.sin(rows / (30.0 + index)), 110 + 60 * np.cos(cols / 50.0),
                          90 + 0.3 * rows], axis=-1)
        for _ in range(8):
            y, x = rng.integers(0, height * 3 // 4), rng.integers(0, width * 3 // 4)
            image[y:y + rng.integers(20, height // 2), x:x + rng.integers(20, width // 2)] = rng.integers(0, 256, 3)
        image = np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)
        paths.append(os.path.join(folder, '%d.jpg' % index))
        cv2.imwrite(paths[-1], image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return paths


class StageClock:
    """Wall time per stage; waits for the GPU before each reading."""

    def __init__(self, device):
        self.device = device
        self.times = {}
        self.last = self._now()

    def _now(self):
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def lap(self, stage):
        now = self._now()
        self.times[stage] = now - self.last
        self.last = now


@torch.inference_mode()
def timed_extraction(model, path, device):
    """The stages of detector.extract_regions on one image file, timed:
    ({stage: seconds}, proposals, kept regions)."""
    clock = StageClock(device)
    image = detector.load_image(path)
    clock.lap('decode')
    blob, im_info, scale = detector.preprocess(image)
    blob, im_info = blob.to(device), im_info.to(device)
    clock.lap('preprocess')
    features = model.backbone(blob)
    clock.lap('backbone')
    rpn_cls_prob, rpn_bbox_pred = model.rpn(features)
    clock.lap('rpn')
    rois = regions.propose(rpn_cls_prob, rpn_bbox_pred, im_info)
    clock.lap('propose')
    pooled = regions.roi_pool(features, rois)
    clock.lap('roi_pool')
    pool5 = model.head(pooled)
    clock.lap('res5_pool5')
    cls_prob = F.softmax(model.cls_score(pool5), dim=1)
    clock.lap('heads')
    boxes = rois.float().cpu() / torch.tensor(scale, dtype=torch.float32)
    keep = regions.select_regions(boxes, cls_prob.float().cpu())
    pool5[keep.to(device)].float().cpu()
    clock.lap('select')
    return clock.times, len(rois), len(keep)


def image_paths(inputs):
    paths = []
    for item in inputs:
        if os.path.isdir(item):
            paths += sorted(os.path.join(item, name) for name in os.listdir(item)
                            if name.lower().endswith(('.jpg', '.jpeg', '.png')))
        elif os.path.isfile(item):
            paths.append(item)
        else:
            raise UserError('--images %s: no such file or folder' % item)
    if not paths:
        raise UserError('--images: no image found')
    return paths


def run(args):
    device = runtime.resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.detector_weights:
        model = weight_files.load_detector(args.detector_weights, device)
    else:
        model = randomize(detector.Detector()).to(device, memory_format=torch.channels_last).eval()
    with tempfile.TemporaryDirectory() as folder:
        paths = image_paths(args.images) if args.images else synthetic_photos(folder, args.num_images)
        timed_extraction(model, paths[0], device)  # warm-up: allocator, kernels, lazy imports
        load = OtherLoad()
        runs, cpu_seconds = [], []
        for path in paths[:args.num_images]:
            started = time.process_time()
            runs.append(timed_extraction(model, path, device))
            cpu_seconds.append(time.process_time() - started)
        other_load = load.fraction()
    per_image = [sum(times.values()) for times, _, _ in runs]
    return {'machine': machine_info(device), 'device': str(device),
            'weights': args.detector_weights or 'random (full-size network)',
            'images': len(runs), 'seconds_per_image_median': statistics.median(per_image),
            'seconds_per_image': per_image, 'cpu_seconds_per_image_median': statistics.median(cpu_seconds),
            'stage_seconds_median': {stage: statistics.median(times[stage] for times, _, _ in runs)
                                     for stage in STAGES},
            'proposals': [count for _, count, _ in runs], 'regions': [kept for _, _, kept in runs],
            'other_cpu_load': other_load}


def print_report(report):
    machine = report['machine']
    print('device %s (%s), %d torch threads, torch %s' % (report['device'], machine.get('gpu', machine['cpu']),
                                                           machine['torch_threads'], machine['torch']))
    print('weights: %s; %d images; proposals %s; regions kept %s'
          % (report['weights'], report['images'], report['proposals'], report['regions']))
    total = report['seconds_per_image_median']
    print('seconds per image: median %.2f (%s)' % (total, ', '.join('%.2f' % t for t in report['seconds_per_image'])))
    for stage, seconds in report['stage_seconds_median'].items():
        print('  %-11s %7.3f s  %5.1f%%' % (stage, seconds, 100 * seconds / total))
    print('this process\'s CPU seconds per image: median %.1f; other processes\' CPU share while timing: %.0f%%'
          % (report['cpu_seconds_per_image_median'], 100 * report['other_cpu_load']))


def main(argv=None):
    parser = FlagParser(description=__doc__.split('\n\n')[0],
                        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument('--device', default='cpu', help='cpu, cuda or cuda:N')
    parser.add_argument('--detector_weights', default=None, help='.caffemodel or .pth (default: random weights)')
    parser.add_argument('--images', nargs='+', default=None, help='image files or folders (default: synthetic)')
    parser.add_argument('--num_images', type=int, default=5, help='images timed after one warm-up (default 5)')
    parser.add_argument('--threads', type=int, default=0, help='torch CPU threads (default: torch\'s choice)')
    parser.add_argument('--json', default=None, help='also write the figures to this JSON file')
    args = parser.parse_args(argv)
    if args.num_images < 1:
        raise UserError('--num_images must be at least 1')
    report = run(args)
    print_report(report)
    if args.json:
        save_json(report, args.json)
    return report


if __name__ == '__main__':
    run_cli(main)
