"""Bilinear attention maps over (boxes x words)."""
import torch.nn as nn
import torch.nn.functional as F

from bc import BCNet


def padded_box_mask(v):
    """True where a box row is all zeros, i.e. padding: v [B,N,D] -> [B,N]."""
    return v.abs().sum(2) == 0


class BiAttention(nn.Module):
    """`glimpse` bilinear attention maps, each a softmax over the whole N x L grid."""

    def __init__(self, x_dim, y_dim, z_dim, glimpse, dropout=(.2, .5)):
        super().__init__()
        self.glimpse = glimpse
        self.logits = BCNet(x_dim, y_dim, z_dim, glimpse, dropout=dropout, k=3)

    def forward(self, v, q, v_mask=True):
        """Returns (attention p [B,G,N,L], masked logits [B,G,N,L])."""
        return self.forward_all(v, q, v_mask)

    def masked_logits(self, v, q, v_mask=True, mask_with=-float('inf')):
        """Attention logits [B,G,N,L], padded boxes set to `mask_with` when `v_mask`.

        The original fills the mask in place through `.data`; filling out of place
        gives the same values, and the same gradients wherever the softmax output
        is used (its gradient at a zero probability is zero).
        """
        logits = self.logits(v, q)  # [B,G,N,L]
        if v_mask:
            mask = padded_box_mask(v)[:, None, :, None]  # [B,1,N,1]
            logits = logits.masked_fill(mask, mask_with)  # [B,G,N,L]
        return logits

    def forward_all(self, v, q, v_mask=True):
        """(attention p [B,G,N,L], masked logits [B,G,N,L]): p is a softmax over the whole N x L grid."""
        logits = self.masked_logits(v, q, v_mask)  # [B,G,N,L]
        batch, glimpse, num_boxes, num_words = logits.shape
        flat = logits.reshape(batch, glimpse, num_boxes * num_words)  # [B,G,N*L]
        p = F.softmax(flat, dim=2).view(batch, glimpse, num_boxes, num_words)  # [B,G,N,L]
        return p, logits
