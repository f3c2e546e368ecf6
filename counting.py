"""Counting module of Zhang, Hare and Prugel-Bennett (ICLR 2018), as BAN uses it.

From the attention weights of the top `objects` boxes and their pairwise IoU
it builds a graph of relevant, non-duplicate proposals and returns a soft
one-hot count over 0..objects, times a confidence. All learned shapes are
monotone piecewise-linear functions on [0, 1] (`PiecewiseLin`); sixteen are
created as in the original, of which f[0]..f[7] are used.
"""
import torch
import torch.nn as nn


class PiecewiseLin(nn.Module):
    """Monotone increasing map of [0,1] onto [0,1] with n equal linear segments.

    weight[0] is fixed at 0 (it has zero gradient); |weight| normalised to sum
    1 gives the rise of each segment.
    """

    def __init__(self, n):
        super().__init__()
        self.n = n
        self.weight = nn.Parameter(torch.ones(n + 1))
        with torch.no_grad():
            self.weight[0] = 0

    def forward(self, x):
        w = self.weight.abs()
        w = w / w.sum()  # [n+1], sums to 1
        csum = w.cumsum(dim=0)  # [n+1] value at each segment start
        y = self.n * x  # [*x]
        # truncation, as the original; clamped at 0 too, only so that a NaN input
        # (whose long() is hugely negative) gives NaN instead of an IndexError
        segment = y.long().clamp(0, self.n)  # [*x]
        # Indexing the [n+1] tables gives what the original's gather over tables
        # expanded to [n+1, *x] gives, without building (or, in backward,
        # summing) those [n+1, *x] tensors.
        below = csum[segment]  # [*x] rise of whole segments
        within = y.frac() * w[(segment + 1).clamp(max=self.n)]  # [*x]
        return below + within  # [*x]


class Counter(nn.Module):
    """Soft count of the objects attended to.

    forward(boxes [B,4,N] (x1,y1,x2,y2), attention [B,N] logits) -> [B, objects+1].
    """

    def __init__(self, objects, already_sigmoided=False):
        super().__init__()
        self.objects = objects
        self.already_sigmoided = already_sigmoided
        self.f = nn.ModuleList([PiecewiseLin(16) for _ in range(16)])

    def forward(self, boxes, attention):
        boxes, attention = self.filter_most_important(self.objects, boxes, attention)  # [B,4,M], [B,M]
        if not self.already_sigmoided:
            attention = torch.sigmoid(attention)  # [B,M]
        relevancy = self.outer_product(attention)  # [B,M,M]
        distance = 1 - self.iou(boxes, boxes)  # [B,M,M]

        # intra-object dedup
        score = self.f[0](relevancy) * self.f[1](distance)  # [B,M,M]
        # inter-object dedup
        dedup_score = self.f[3](relevancy) * self.f[4](distance)  # [B,M,M]
        dedup_per_entry, dedup_per_row = self.deduplicate(dedup_score, attention)
        score = score / dedup_per_entry  # [B,M,M]

        # self-loops: the diagonal's contribution, computed separately
        correction = self.f[0](attention * attention) / dedup_per_row  # [B,M]
        score = score.sum(dim=2).sum(dim=1, keepdim=True) + correction.sum(dim=1, keepdim=True)  # [B,1]
        score = (score + 1e-20).sqrt()  # [B,1]
        one_hot = self.to_one_hot(score)  # [B,objects+1]

        att_conf = (self.f[5](attention) - 0.5).abs()  # [B,M]
        dist_conf = (self.f[6](distance) - 0.5).abs()  # [B,M,M]
        conf = self.f[7](att_conf.mean(dim=1, keepdim=True)
                         + dist_conf.mean(dim=2).mean(dim=1, keepdim=True))  # [B,1]
        return one_hot * conf  # [B,objects+1]

    def deduplicate(self, dedup_score, att):
        """Similarity of each pair of proposals: (entry sims [B,M,M], row sums [B,M])."""
        att_diff = self.outer_diff(att)  # [B,M,M]
        score_diff = self.outer_diff(dedup_score)  # [B,M,M,M]
        sim = self.f[2](1 - score_diff).prod(dim=1) * self.f[2](1 - att_diff)  # [B,M,M]
        row_sims = sim.sum(dim=2)  # [B,M]
        all_sims = self.outer_product(row_sims)  # [B,M,M]
        return all_sims, row_sims

    def to_one_hot(self, scores):
        """Non-negative scalars [B,1] -> linear interpolation between the one-hots of
        floor and ceil, over objects+1 classes (e.g. 2.75 -> 0.25 at 2, 0.75 at 3)."""
        scores = scores.clamp(min=0, max=self.objects)  # [B,1]
        whole = scores.long().clamp(0, self.objects)  # [B,1] (a NaN score gives NaN, not an IndexError)
        frac = scores.frac()  # [B,1]
        size = (scores.size(0), self.objects + 1)
        target_l = scores.new_zeros(size).scatter_(1, whole, 1)  # [B,O+1]
        target_r = scores.new_zeros(size).scatter_(1, (whole + 1).clamp(max=self.objects), 1)  # [B,O+1]
        return (1 - frac) * target_l + frac * target_r  # [B,O+1]

    def filter_most_important(self, n, boxes, attention):
        """Keep the n boxes of highest attention. With fewer than n boxes, pad with
        empty boxes of attention -inf: exactly what a batch padded with all-zero
        rows feeds the original (the original itself would fail on fewer than n)."""
        num_boxes = attention.size(1)
        if num_boxes < n:
            boxes = torch.cat([boxes, boxes.new_zeros(boxes.size(0), boxes.size(1), n - num_boxes)], 2)
            attention = torch.cat(
                [attention, attention.new_full((attention.size(0), n - num_boxes), -float('inf'))], 1)
        attention, idx = attention.topk(n, dim=1, sorted=False)  # [B,n]
        idx = idx.unsqueeze(1).expand(boxes.size(0), boxes.size(1), n)  # [B,4,n]
        return boxes.gather(2, idx), attention  # [B,4,n], [B,n]

    @staticmethod
    def outer(x):
        size = tuple(x.size()) + (x.size(-1),)
        return x.unsqueeze(-1).expand(*size), x.unsqueeze(-2).expand(*size)

    def outer_product(self, x):
        """Y_ij = x_i * x_j."""
        a, b = self.outer(x)
        return a * b

    def outer_diff(self, x):
        """Y_ij = |x_i - x_j|."""
        a, b = self.outer(x)
        return (a - b).abs()

    def iou(self, a, b):
        """Pairwise IoU of boxes a [B,4,M] and b [B,4,M] -> [B,M,M]."""
        inter = self.intersection(a, b)  # [B,M,M]
        area_a = self.area(a).unsqueeze(2).expand_as(inter)
        area_b = self.area(b).unsqueeze(1).expand_as(inter)
        return inter / (area_a + area_b - inter + 1e-12)

    @staticmethod
    def area(box):
        x = (box[:, 2, :] - box[:, 0, :]).clamp(min=0)  # [B,M]
        y = (box[:, 3, :] - box[:, 1, :]).clamp(min=0)  # [B,M]
        return x * y

    @staticmethod
    def intersection(a, b):
        size = (a.size(0), 2, a.size(2), b.size(2))
        min_point = torch.max(a[:, :2, :].unsqueeze(3).expand(*size),
                              b[:, :2, :].unsqueeze(2).expand(*size))  # [B,2,M,M]
        max_point = torch.min(a[:, 2:, :].unsqueeze(3).expand(*size),
                              b[:, 2:, :].unsqueeze(2).expand(*size))  # [B,2,M,M]
        inter = (max_point - min_point).clamp(min=0)  # [B,2,M,M]
        return inter[:, 0, :, :] * inter[:, 1, :, :]
