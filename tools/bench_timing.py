"""Measurement helpers of tools/benchmark.py: timed calls, peak memory, the
load of other processes, matmul throughput and a description of the machine."""
import contextlib
import os
import platform
import resource
import statistics
import time
from pathlib import Path

import torch


def synchronize(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


class PeakMemory:
    """Peak memory of one phase: torch.cuda.max_memory_allocated on CUDA; on CPU
    the process's peak RSS (VmHWM, reset through /proc/self/clear_refs where the
    kernel allows it, otherwise the whole run's peak from getrusage)."""

    def __init__(self, device):
        self.device = device
        self.kind = 'cuda_max_memory_allocated' if device.type == 'cuda' else 'peak_rss'

    def reset(self):
        if self.device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        with contextlib.suppress(OSError):
            with open('/proc/self/clear_refs', 'w') as handle:
                handle.write('5')

    def peak_mb(self):
        if self.device.type == 'cuda':
            return torch.cuda.max_memory_allocated(self.device) / 2 ** 20
        with contextlib.suppress(OSError):
            for line in Path('/proc/self/status').read_text().splitlines():
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) / 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class OtherLoad:
    """Share of this machine's CPU time that other processes (and the hypervisor's
    steal) took between construction and `fraction()`: timings taken while
    it is well above 0 are not representative (0 on systems without /proc/stat)."""

    def __init__(self):
        self.start = self._snapshot()

    @staticmethod
    def _snapshot():
        try:
            fields = [int(x) for x in Path('/proc/stat').read_text().split('\n')[0].split()[1:]]
        except (OSError, ValueError):
            return None
        busy = sum(fields[:8]) - fields[3] - fields[4]  # all but idle and iowait
        own = sum(os.times()[:2]) * os.sysconf('SC_CLK_TCK')
        return busy - own, sum(fields[:8])

    def fraction(self):
        end = self._snapshot()
        if self.start is None or end is None or end[1] == self.start[1]:
            return 0.0
        return max(0.0, (end[0] - self.start[0]) / (end[1] - self.start[1]))


def time_calls(function, batches, warmup, steps, device):
    """(first call s, median ms, all timed ms) of `function(*batch)` cycling over batches."""
    synchronize(device)
    start = time.perf_counter()
    function(*batches[0])
    synchronize(device)
    first_s = time.perf_counter() - start
    for i in range(1, warmup):
        function(*batches[i % len(batches)])
    timings, other_load = [], OtherLoad()
    for i in range(steps):
        synchronize(device)
        start = time.perf_counter()
        function(*batches[(warmup + i) % len(batches)])
        synchronize(device)
        timings.append((time.perf_counter() - start) * 1000)
    return first_s, statistics.median(timings), timings, other_load.fraction()


def matmul_gflops(size, device, repeats=5):
    """Median fp32 throughput of an n x n matmul on `device` (GFLOP/s)."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    a @ b
    _, median_ms, _, _ = time_calls(lambda: a @ b, [()], 1, repeats, device)
    return 2 * size ** 3 / (median_ms / 1000) / 1e9


def machine_info(device):
    info = {'cpu': cpu_model_name(), 'cpu_count': os.cpu_count(),
            'torch_threads': torch.get_num_threads(), 'torch': torch.__version__,
            'python': platform.python_version(), 'loadavg_1min_at_start': os.getloadavg()[0]}
    if device.type == 'cuda':
        info['gpu'] = torch.cuda.get_device_name(device)
    return info


def cpu_model_name():
    with contextlib.suppress(OSError):
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    return platform.processor() or 'unknown'
