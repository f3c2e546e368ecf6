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


class _GlimpseLogits(torch.autograd.Function):
    """``logits[b,h,i,j] = sum_k v_[b,i,k] * W[h,k] * q_[b,j,k]`` with a hand-written backward.

    Forward scales the (short) word side by each glimpse's weights and folds the
    glimpses into one batched matmul: B*H*L*K floats instead of the B*N*L*K outer
    product. Backward goes glimpse by glimpse, so its temporaries are B*L*K
    floats rather than autograd's B*H*L*K products (strided, and as large as the
    forward's scaled words), and the scaled words are recomputed instead of kept.
    """

    @staticmethod
    def forward(ctx, v_, q_, weight):
        batch, num_boxes, _ = v_.shape
        glimpses, num_words = weight.size(0), q_.size(1)
        q_h = q_.unsqueeze(1) * weight[None, :, None, :]  # [B,H,L,K]
        q_h = q_h.reshape(batch, glimpses * num_words, -1)  # [B,H*L,K]
        logits = torch.bmm(v_, q_h.transpose(1, 2))  # [B,N,H*L]
        ctx.save_for_backward(v_, q_, weight)
        return logits.view(batch, num_boxes, glimpses, num_words).transpose(1, 2)  # [B,H,N,L]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_logits):
        v_, q_, weight = ctx.saved_tensors
        grad_logits = grad_logits.contiguous()  # [B,H,N,L]
        grad_logits_t = grad_logits.transpose(2, 3).contiguous()  # [B,H,L,N] (bmm runs faster on it)
        # Under autocast the forward matmul ran in a reduced dtype; the matmuls here
        # run in that dtype too and the sums over glimpses accumulate in float32.
        work_dtype = grad_logits.dtype
        acc_dtype = torch.promote_types(work_dtype, torch.float32)
        v_work = v_.to(work_dtype)  # [B,N,K]
        grad_v = torch.zeros(v_.shape, dtype=acc_dtype, device=v_.device)  # [B,N,K]
        grad_q = torch.zeros(q_.shape, dtype=acc_dtype, device=q_.device)  # [B,L,K]
        grad_weight = torch.empty_like(weight)  # [H,K]
        for h in range(weight.size(0)):
            grad_h = grad_logits[:, h]  # [B,N,L]
            q_scaled = (q_ * weight[h]).to(work_dtype)  # [B,L,K]
            if acc_dtype == work_dtype:
                grad_v.baddbmm_(grad_h, q_scaled)  # [B,N,K]
            else:
                grad_v.add_(torch.bmm(grad_h, q_scaled))  # [B,N,K]
            grad_q_h = torch.bmm(grad_logits_t[:, h], v_work).to(acc_dtype)  # [B,L,K] dL/dq_scaled
            grad_q.addcmul_(grad_q_h, weight[h])  # [B,L,K]
            grad_weight[h] = (grad_q_h * q_).sum((0, 1))  # [K]
        return grad_v.to(v_.dtype), grad_q.to(q_.dtype), grad_weight


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
        logits = _GlimpseLogits.apply(v_, q_, weight)  # [B,H,N,L]
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
