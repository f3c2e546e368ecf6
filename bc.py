"""Bilinear connect network (BCNet): low-rank bilinear pooling.

Two uses in BAN:
- attention logits (`h_out` glimpses): for each glimpse h,
  ``logit[b,h,i,j] = sum_k P[h,k] * v_[b,i,k] * q_[b,j,k] + bias[h]``
  with `v_ = ReLU(W_v v)`, `q_ = ReLU(W_q q)` of width `h_dim * k` (k=3);
- the attended joint feature (`forward_with_weights`), for one attention map A:
  ``f[b,k] = sum_{i,j} v_[b,i,k] * A[b,i,j] * q_[b,j,k]``.
Both are computed without materialising a batch x boxes x words x hidden tensor.
"""
import torch
import torch.nn as nn

from fc import Dropout, FCNet, WNLinear, weight_norm_scale


class BCNet(nn.Module):
    """Low-rank bilinear pooling of a visual set v [B,N,v_dim] and a word set q [B,L,q_dim].

    `h_out` is the number of glimpses of the attention logits (None when the
    module only pools attended features). As in the original, up to 32 glimpses
    use a weight-normalised tensor `h_mat` (parameters h_mat_g, h_mat_v, and
    h_bias); more use a weight-normalised linear `h_net`.
    """

    max_mat_glimpses = 32  # the original's `self.c`

    def __init__(self, v_dim, q_dim, h_dim, h_out, act='ReLU', dropout=(.2, .5), k=3):
        super().__init__()
        self.k = k
        self.h_dim = h_dim
        self.h_out = h_out
        self.v_net = FCNet([v_dim, h_dim * k], act=act, dropout=dropout[0])
        self.q_net = FCNet([q_dim, h_dim * k], act=act, dropout=dropout[0])
        self.dropout = Dropout(dropout[1])  # on the attention branch's v_
        if h_out is not None and h_out <= self.max_mat_glimpses:
            h_mat = torch.empty(1, h_out, 1, h_dim * k).normal_()
            # own parameters in the released order: h_bias, h_mat_g, h_mat_v
            self.h_bias = nn.Parameter(torch.empty(1, h_out, 1, 1).normal_())  # [1,H,1,1]
            self.h_mat_g = nn.Parameter(h_mat.norm())  # scalar
            self.h_mat_v = nn.Parameter(h_mat)  # [1,H,1,K]
        elif h_out is not None:
            self.h_net = WNLinear(h_dim * k, h_out)

    def _glimpse_weights(self):
        """Weights [H, K] and bias [H] of the bilinear form, whichever variant holds them."""
        if hasattr(self, 'h_mat_v'):
            h_mat = weight_norm_scale(self.h_mat_v, self.h_mat_g)  # [1,H,1,K]
            return h_mat[0, :, 0, :], self.h_bias.view(-1)
        return self.h_net.weight, self.h_net.bias

    def forward(self, v, q):
        """Attention logits [B, h_out, N, L]."""
        v_ = self.dropout(self.v_net(v))  # [B,N,K]
        q_ = self.q_net(q)  # [B,L,K]
        weight, bias = self._glimpse_weights()  # [H,K], [H]
        # Scale the (short) word side by each glimpse's weights and fold the glimpses into one
        # batched matmul: B*H*L*K floats instead of the B*N*L*K outer product, and no
        # broadcast whose backward would expand v_ to B*H*N*K.
        batch, num_words, _ = q_.shape
        q_h = q_.unsqueeze(1) * weight[None, :, None, :]  # [B,H,L,K]
        q_h = q_h.reshape(batch, -1, q_h.size(-1))  # [B,H*L,K]
        logits = torch.bmm(v_, q_h.transpose(1, 2))  # [B,N,H*L]
        logits = logits.view(batch, v_.size(1), -1, num_words).transpose(1, 2)  # [B,H,N,L]
        return logits + bias.view(1, -1, 1, 1)  # [B,H,N,L]

    def forward_with_weights(self, v, q, w):
        """Attended joint feature [B, h_dim] for attention map w [B,N,L]."""
        v_ = self.v_net(v)  # [B,N,K]
        q_ = self.q_net(q)  # [B,L,K]
        # sum_{i,j} v_[b,i,k] w[b,i,j] q_[b,j,k] = sum_j (w^T v_)[b,j,k] q_[b,j,k]
        attended_v = torch.bmm(w.transpose(1, 2), v_)  # [B,L,K]
        pooled = (attended_v * q_).sum(1)  # [B,K]
        if self.k > 1:
            # sum-pooling over groups of k (the original's AvgPool1d(k) * k)
            pooled = pooled.view(pooled.size(0), -1, self.k).sum(2)  # [B,K/k]
        return pooled
