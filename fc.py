"""Weight-normalised fully connected layers.

The original wraps `nn.Linear` with `torch.nn.utils.weight_norm(..., dim=None)`:
the weight is `g * v / ||v||` with ONE scalar gain `g` for the whole matrix.
That hook-based API is deprecated, so the layer here computes the same weight
directly while keeping the parameter names `weight_g` / `weight_v` (and the
order bias, weight_g, weight_v) of the released checkpoints, so their state
dicts and Adamax states load unchanged.
"""
import math
import os
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn as nn
import torch.nn.functional as F


class _ScalarWeightNorm(torch.autograd.Function):
    """`w = g * v / ||v||` with a hand-written backward.

    Autograd's own graph for this (norm, divide, multiply) spends about five
    passes over v per backward; the closed form below needs a dot product and
    one fused pass. With s = g / ||v||:
        dL/dg = <G, v> / ||v||
        dL/dv = s * (G - (dL/dg / ||v||) * v)
    """

    @staticmethod
    def forward(ctx, v, g):
        norm = v.norm()
        ctx.save_for_backward(v, g, norm)
        return v * (g / norm)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_w):
        v, g, norm = ctx.saved_tensors
        grad_g = torch.dot(grad_w.reshape(-1), v.reshape(-1)) / norm  # 0-d
        grad_v = torch.addcmul(grad_w, v, -grad_g / norm).mul_(g / norm)  # like v
        return grad_v, grad_g


def weight_norm_scale(v, g):
    """`g * v / ||v||` with the Frobenius norm over the whole tensor."""
    return _ScalarWeightNorm.apply(v, g)


RNG_CHUNK = 1 << 18  # elements per separately seeded block of a dropout mask


class _ProcessThreadPool:
    """One thread pool per process, made on first use: a forked DataLoader
    worker must not reuse its parent's threads, which do not exist in it."""

    def __init__(self, name):
        self.name = name
        self.owner_pid = None
        self.pool = None

    def get(self):
        if self.owner_pid != os.getpid():
            self.pool = ThreadPoolExecutor(max(1, torch.get_num_threads()), thread_name_prefix=self.name)
            self.owner_pid = os.getpid()
        return self.pool


_RNG_THREADS = _ProcessThreadPool('dropout-rng')


def cpu_uniform(shape):
    """float32 uniform [0, 1) numbers on CPU, drawn in parallel.

    torch's CPU generator fills a tensor on one thread. Here a large tensor is
    cut into blocks of RNG_CHUNK elements, each filled by its own generator
    seeded from the default one, on up to torch.get_num_threads() threads. The
    blocks (and so the numbers) do not depend on the thread count: one
    `torch.manual_seed` gives the same draws on any machine.
    """
    out = torch.empty(shape, dtype=torch.float32)
    flat = out.view(-1)
    num_chunks = math.ceil(flat.numel() / RNG_CHUNK)
    if num_chunks <= 1:
        return out.uniform_()
    seeds = torch.randint(0, 2 ** 62, (num_chunks,)).tolist()

    def fill(index):
        generator = torch.Generator().manual_seed(seeds[index])
        flat[index * RNG_CHUNK:(index + 1) * RNG_CHUNK].uniform_(generator=generator)

    if torch.get_num_threads() == 1:
        for index in range(num_chunks):
            fill(index)
    else:
        list(_RNG_THREADS.get().map(fill, range(num_chunks)))
    return out


class Dropout(nn.Dropout):
    """nn.Dropout, faster on CPU.

    Same function: each element is kept with probability 1 - p and scaled by
    1 / (1 - p). On CPU the keep mask comes from one float32 uniform draw per
    element compared with p (`cpu_uniform`, drawn on several threads), about
    three times as fast as the stock bernoulli_-based kernel, and drawn the
    same way whatever the input dtype (so float32 and bfloat16-autocast runs
    from one seed drop the same elements). On other devices the stock (fused)
    kernel runs. No parameters, so module indices and state dicts are
    unchanged.
    """

    def forward(self, x):
        if (not self.training or self.inplace or not 0 < self.p < 1
                or x.device.type != 'cpu' or not x.is_floating_point()):
            return super().forward(x)
        keep_scale = cpu_uniform(x.shape).ge_(self.p).mul_(1 / (1 - self.p))
        return x * keep_scale.to(x.dtype)  # 0 or 1/(1-p) per element


class WNLinear(nn.Module):
    """Linear layer with scalar weight normalisation (weight_norm dim=None)."""

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        reference = nn.Linear(in_features, out_features, bias=bias)  # default init, as the original
        # Registration order bias, weight_g, weight_v mirrors the legacy hook (it deleted `weight`
        # and appended g then v), so parameters() order matches released optimizer states.
        self.bias = reference.bias
        self.weight_g = nn.Parameter(reference.weight.detach().norm())  # scalar
        self.weight_v = nn.Parameter(reference.weight.detach().clone())  # [out, in]

    @property
    def weight(self):
        return weight_norm_scale(self.weight_v, self.weight_g)  # [out, in]

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return 'in_features=%d, out_features=%d, bias=%s' % (
            self.in_features, self.out_features, self.bias is not None)


class FCNet(nn.Module):
    """A stack of [Dropout] -> WNLinear -> [activation] blocks.

    `dims` lists the layer widths; with dropout the sub-module indices are
    (0 Dropout, 1 Linear, 2 act) per block, without it (0 Linear, 1 act),
    exactly the original's `main.<i>` names.
    """

    def __init__(self, dims, act='ReLU', dropout=0.0):
        super().__init__()
        layers = []
        for in_dim, out_dim in zip(dims[:-1], dims[1:]):
            if dropout > 0:
                layers.append(Dropout(dropout))
            layers.append(WNLinear(in_dim, out_dim))
            if act:
                layers.append(getattr(nn, act)())
        self.main = nn.Sequential(*layers)

    def forward(self, x):
        return self.main(x)
