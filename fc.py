"""Weight-normalised fully connected layers.

The original wraps `nn.Linear` with `torch.nn.utils.weight_norm(..., dim=None)`:
the weight is `g * v / ||v||` with ONE scalar gain `g` for the whole matrix.
That hook-based API is deprecated, so the layer here computes the same weight
directly while keeping the parameter names `weight_g` / `weight_v` (and the
order bias, weight_g, weight_v) of the released checkpoints, so their state
dicts and Adamax states load unchanged.
"""
import torch.nn as nn
import torch.nn.functional as F


def weight_norm_scale(v, g):
    """`g * v / ||v||` with the Frobenius norm over the whole tensor."""
    return v * (g / v.norm())


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
                layers.append(nn.Dropout(dropout))
            layers.append(WNLinear(in_dim, out_dim))
            if act:
                layers.append(getattr(nn, act)())
        self.main = nn.Sequential(*layers)

    def forward(self, x):
        return self.main(x)
