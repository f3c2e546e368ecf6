"""Answer classifier: a two-layer weight-normalised MLP."""
import torch.nn as nn

from fc import Dropout, WNLinear


class SimpleClassifier(nn.Module):
    """in_dim -> hid_dim (ReLU, dropout) -> out_dim logits; sub-modules main.0 and main.3
    as in the released checkpoints.

    The original's dropout here was in place, right after the ReLU: on current
    PyTorch that makes backward fail (the ReLU's saved output is modified). An
    out-of-place dropout computes the same function.
    """

    def __init__(self, in_dim, hid_dim, out_dim, dropout):
        super().__init__()
        self.main = nn.Sequential(
            WNLinear(in_dim, hid_dim),
            nn.ReLU(),
            Dropout(dropout),
            WNLinear(hid_dim, out_dim),
        )

    def forward(self, x):
        return self.main(x)
