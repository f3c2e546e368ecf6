"""The box arithmetic of the bottom-up-attention detector (detection/detector.py):
anchors, box decoding and clipping, NMS, the proposal layer, Caffe ROI max
pooling and the region selection of generate_tsv.py (docs/FEATURE_EXTRACTION.md,
sections cited as §N)."""
import numpy as np
import torch

# §4-§6: RPN and proposal layer (test-time settings)
FEAT_STRIDE = 16
ANCHOR_RATIOS = (0.5, 1.0, 2.0)
ANCHOR_SCALES = (4, 8, 16, 32)
NUM_ANCHORS = len(ANCHOR_RATIOS) * len(ANCHOR_SCALES)
RPN_PRE_NMS_TOP_N = 6000
RPN_POST_NMS_TOP_N = 300
RPN_NMS_THRESH = 0.7
RPN_MIN_SIZE = 16
# [U] §14, §16.1: the resnet cfg selects the CPU Cython NMS, which suppresses at IoU >= threshold
# (py_cpu_nms and the GPU kernel use >). Most plausible reading: >=.
NMS_SUPPRESS_AT_THRESHOLD = True

# §7-§10: ROI pooling, heads and region selection
POOLED_SIZE = 14
SPATIAL_SCALE = 1.0 / FEAT_STRIDE
CLASS_NMS_THRESH = 0.3
CONF_THRESH = 0.2
MIN_BOXES = 10
MAX_BOXES = 100


# ----------------------------------------------------------------- boxes (§5, §6, §13)

def generate_anchors(base_size=16, ratios=ANCHOR_RATIOS, scales=ANCHOR_SCALES):
    """[A, 4] float32 anchors (x1, y1, x2, y2) of cell (0, 0), ratio-major (§5)."""
    centre = (base_size - 1) / 2.0
    area = float(base_size * base_size)
    rows = []
    for ratio in ratios:
        ratio_w = np.round(np.sqrt(area / ratio))  # numpy rounding: half to even
        ratio_h = np.round(ratio_w * ratio)
        for scale in scales:
            half_w, half_h = (ratio_w * scale - 1) / 2.0, (ratio_h * scale - 1) / 2.0
            rows.append([centre - half_w, centre - half_h, centre + half_w, centre + half_h])
    return torch.tensor(rows, dtype=torch.float32)


def shifted_anchors(height, width, device=None):
    """[H * W * A, 4] anchors of a feature map, in (y, x, a) order."""
    anchors = generate_anchors().to(device)  # [A, 4]
    shift_x = torch.arange(width, device=device, dtype=torch.float32) * FEAT_STRIDE  # [W]
    shift_y = torch.arange(height, device=device, dtype=torch.float32) * FEAT_STRIDE  # [H]
    grid_y, grid_x = torch.meshgrid(shift_y, shift_x, indexing='ij')  # [H, W] each
    shifts = torch.stack([grid_x, grid_y, grid_x, grid_y], dim=-1)  # [H, W, 4]
    return (shifts[:, :, None, :] + anchors).reshape(-1, 4)  # [H*W*A, 4]


def decode_boxes(anchors, deltas):
    """py-faster-rcnn's bbox_transform_inv in float32: +1 widths, x2 = cx +
    w/2 (no -1), dw and dh not clamped. anchors, deltas [N, 4] -> [N, 4]."""
    widths = anchors[:, 2] - anchors[:, 0] + 1.0
    heights = anchors[:, 3] - anchors[:, 1] + 1.0
    centre_x = anchors[:, 0] + 0.5 * widths
    centre_y = anchors[:, 1] + 0.5 * heights
    new_cx = deltas[:, 0] * widths + centre_x
    new_cy = deltas[:, 1] * heights + centre_y
    new_w = torch.exp(deltas[:, 2]) * widths
    new_h = torch.exp(deltas[:, 3]) * heights
    return torch.stack([new_cx - 0.5 * new_w, new_cy - 0.5 * new_h,
                        new_cx + 0.5 * new_w, new_cy + 0.5 * new_h], dim=1)  # [N, 4]


def clip_boxes(boxes, height, width):
    """Clip x to [0, width - 1] and y to [0, height - 1]. boxes [N, 4]."""
    x = boxes[:, 0::2].clamp(min=0.0, max=width - 1.0)
    y = boxes[:, 1::2].clamp(min=0.0, max=height - 1.0)
    return torch.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], dim=1)  # [N, 4]


def _suppresses(iou, threshold):
    """IoU compared in float64, as the Cython NMS compares its float32 IoU to a C double."""
    iou = iou.astype(np.float64)
    return iou >= threshold if NMS_SUPPRESS_AT_THRESHOLD else iou > threshold


def greedy_nms(boxes, threshold, max_keep=None):
    """py-faster-rcnn's greedy NMS of `boxes` [N, 4] already sorted by
    descending score: IoU with +1 widths in float32. Returns the kept
    positions (int64 tensor, in order), at most `max_keep` of them."""
    coords = boxes.detach().to('cpu', torch.float32).numpy()
    x1, y1, x2, y2 = (np.ascontiguousarray(coords[:, k]) for k in range(4))
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)  # [N]
    suppressed = np.zeros(len(coords), dtype=bool)
    keep = []
    for i in range(len(coords)):
        if suppressed[i]:
            continue
        keep.append(i)
        if max_keep is not None and len(keep) >= max_keep:
            break
        rest = slice(i + 1, None)
        inter_w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)  # float32
        inter_h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = inter_w * inter_h
        suppressed[rest] |= _suppresses(inter / (areas[i] + areas[rest] - inter), threshold)
    return torch.tensor(keep, dtype=torch.int64)


def propose(rpn_cls_prob, rpn_bbox_pred, im_info, pre_nms_top_n=RPN_PRE_NMS_TOP_N,
            post_nms_top_n=RPN_POST_NMS_TOP_N, nms_thresh=RPN_NMS_THRESH, min_size=RPN_MIN_SIZE):
    """The test-time proposal layer (§6): [R, 4] float32 boxes (x1, y1, x2, y2)
    in scaled-image pixels, in descending objectness after NMS, R <= 300.

    rpn_cls_prob [1, 2A, H, W] (channels 0..A-1 background, A..2A-1
    foreground), rpn_bbox_pred [1, 4A, H, W] ((dx, dy, dw, dh) of anchor a in
    channels 4a..4a+3), im_info [1, 3] = (scaled h, scaled w, scale)."""
    num_anchors = rpn_cls_prob.shape[1] // 2
    height, width = rpn_cls_prob.shape[2:]
    scores = rpn_cls_prob[0, num_anchors:].permute(1, 2, 0).reshape(-1).float()  # [H*W*A]
    deltas = rpn_bbox_pred[0].reshape(num_anchors, 4, height, width).permute(2, 3, 0, 1).reshape(-1, 4)  # [H*W*A, 4]
    boxes = decode_boxes(shifted_anchors(height, width, scores.device), deltas.float())  # [H*W*A, 4]
    scaled_h, scaled_w, scale = (float(value) for value in im_info[0].float())
    boxes = clip_boxes(boxes, scaled_h, scaled_w)
    min_side = min_size * scale  # compared in float32, as numpy compared the float32 widths
    wide = (boxes[:, 2] - boxes[:, 0] + 1 >= min_side) & (boxes[:, 3] - boxes[:, 1] + 1 >= min_side)
    boxes, scores = boxes[wide], scores[wide]  # [M, 4], [M]
    order = torch.sort(scores, descending=True, stable=True).indices[:pre_nms_top_n]  # [<=6000]
    boxes = boxes[order]
    return boxes[greedy_nms(boxes, nms_thresh, post_nms_top_n).to(boxes.device)]  # [R, 4]


# ----------------------------------------------------------------- ROI pooling (§7)

def _round_half_away(values):
    """C round(): halves away from zero (torch.round rounds them to even)."""
    whole = torch.trunc(values)
    return whole + torch.where((values - whole).abs() >= 0.5, torch.sign(values), torch.zeros_like(values))


def _bin_edges(low, high, spatial_scale, pooled, size):
    """Caffe's bin ranges along one axis: (start, stop) int64 [R, pooled],
    clipped to [0, size]; a bin with stop <= start is empty."""
    start = _round_half_away(low.float() * spatial_scale)  # [R]
    end = _round_half_away(high.float() * spatial_scale)
    extent = torch.clamp(end - start + 1, min=1)  # float32: exact small integers
    bin_size = extent / float(pooled)  # [R], float32 as Caffe
    steps = torch.arange(pooled, dtype=torch.float32, device=low.device)  # [P]
    first = torch.floor(steps * bin_size[:, None]) + start[:, None]  # [R, P]
    stop = torch.ceil((steps + 1) * bin_size[:, None]) + start[:, None]
    return first.clamp(0, size).long(), stop.clamp(0, size).long()


def _window_max_table(features, max_h, max_w):
    """[C, max_h, max_w, H, W]: entry (a, b, y, x) = max of features [C, H, W]
    over rows y..y+a and columns x..x+b (entries past the map edge unused)."""
    channels, height, width = features.shape
    table = features.new_zeros(channels, max_h, max_w, height, width)
    rows = features
    for a in range(max_h):
        if a:
            rows = torch.maximum(rows[:, :-1], features[:, a:])  # [C, H-a, W]: max over a+1 rows
        window = rows
        table[:, a, 0, :height - a] = window
        for b in range(1, max_w):
            window = torch.maximum(window[:, :, :-1], rows[:, :, b:])  # [C, H-a, W-b]
            table[:, a, b, :height - a, :width - b] = window
    return table


def roi_pool(features, rois, pooled=POOLED_SIZE, spatial_scale=SPATIAL_SCALE, table_floats=2 ** 24):
    """Caffe's ROIPooling (= torchvision.ops.roi_pool): max over each of
    pooled x pooled bins, bin edges as Caffe computes them in float32, empty
    bins 0. features [1, C, H, W], rois [R, 4] (x1, y1, x2, y2) in scaled-image
    pixels -> [R, C, pooled, pooled].

    Every bin is a rectangle of at most max_h x max_w cells, so its maximum is
    one look-up in a table of window maxima, built per chunk of channels
    (`table_floats` bounds the table's size)."""
    _, channels, height, width = features.shape
    if len(rois) == 0:
        return features.new_zeros(0, channels, pooled, pooled)
    row_start, row_stop = _bin_edges(rois[:, 1], rois[:, 3], spatial_scale, pooled, height)  # [R, P] each
    col_start, col_stop = _bin_edges(rois[:, 0], rois[:, 2], spatial_scale, pooled, width)
    rows, cols = row_stop - row_start, col_stop - col_start  # [R, P]: cells per bin, <= 0 when empty
    max_h, max_w = max(int(rows.max()), 1), max(int(cols.max()), 1)
    empty = (rows[:, :, None] <= 0) | (cols[:, None, :] <= 0)  # [R, P, P]
    window = (rows.clamp(min=1)[:, :, None] - 1) * max_w + (cols.clamp(min=1)[:, None, :] - 1)  # [R, P, P]
    index = (window * height + row_start[:, :, None]) * width + col_start[:, None, :]  # [R, P, P]
    index = torch.where(empty, torch.zeros_like(index), index).reshape(-1)  # [R*P*P]
    output = features.new_empty(len(rois), channels, pooled, pooled)
    step = max(1, table_floats // (max_h * max_w * height * width))
    for first in range(0, channels, step):
        table = _window_max_table(features[0, first:first + step].contiguous(), max_h, max_w)  # [c, max_h, max_w, H, W]
        picked = table.reshape(table.shape[0], -1).index_select(1, index)  # [c, R*P*P]
        output[:, first:first + step] = picked.reshape(-1, len(rois), pooled, pooled).transpose(0, 1)
    return output.masked_fill_(empty[:, None], 0.0)


# ----------------------------------------------------------------- region selection (§10)

def pairwise_suppression(boxes, threshold):
    """[R, R] bool: box i suppresses box j in NMS (IoU with +1 widths, float32)."""
    coords = boxes.detach().to('cpu', torch.float32).numpy()
    x1, y1, x2, y2 = (coords[:, k] for k in range(4))
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)  # [R]
    inter_w = np.maximum(0.0, np.minimum(x2[:, None], x2) - np.maximum(x1[:, None], x1) + 1)  # [R, R]
    inter_h = np.maximum(0.0, np.minimum(y2[:, None], y2) - np.maximum(y1[:, None], y1) + 1)
    inter = inter_w * inter_h
    return torch.from_numpy(_suppresses(inter / (areas[:, None] + areas - inter), threshold))


def _pack_bits(mask):
    """bool [N, M] -> int64 [N, ceil(M / 64)]: bit b of word w is mask[:, 64w + b]."""
    rows, columns = mask.shape
    words = (columns + 63) // 64
    padded = torch.zeros(rows, words * 64, dtype=torch.int64)
    padded[:, :columns] = mask
    weights = torch.ones(64, dtype=torch.int64) << torch.arange(64)  # 2^0 .. 2^63 (the last one wraps negative)
    return (padded.view(rows, words, 64) * weights).sum(dim=2)  # distinct bits: the sum is their OR


def class_max_conf(boxes, scores, threshold=CLASS_NMS_THRESH):
    """[R] float64: for each row, the largest of its class scores among the
    classes in which it survives that class's greedy NMS (0 if none).
    boxes [R, 4], scores [R, C] float32 (the background column excluded).

    All classes run their NMS together: at rank k every class looks at its
    k-th best row, keeps it unless suppressed, and suppresses its overlaps;
    each class's suppressed rows are a bit set (int64 words)."""
    num_rows, num_classes = scores.shape
    scores = scores.detach().to('cpu', torch.float32)
    overlaps = _pack_bits(pairwise_suppression(boxes, threshold))  # [R, words]
    order = torch.sort(scores, dim=0, descending=True, stable=True).indices  # [R, C]
    classes = torch.arange(num_classes)
    suppressed = torch.zeros(num_classes, overlaps.shape[1], dtype=torch.int64)  # [C, words]
    kept = torch.zeros(num_classes, num_rows, dtype=torch.bool)  # [C, R]
    for rank in range(num_rows):
        rows = order[rank]  # [C]
        word = suppressed.gather(1, (rows // 64)[:, None])[:, 0]  # [C]
        alive = ((word >> (rows % 64)) & 1) == 0  # [C]
        kept[classes, rows] = alive
        suppressed |= overlaps.index_select(0, rows) * alive[:, None]  # [C, words] (plain [rows] is slow)
    kept_scores = torch.where(kept.t(), scores, torch.zeros(()))  # [R, C]
    return kept_scores.max(dim=1).values.double()


def select_regions(boxes, cls_prob, conf_thresh=CONF_THRESH, min_boxes=MIN_BOXES, max_boxes=MAX_BOXES):
    """Rows kept by generate_tsv (§10): int64 [N] indices into `boxes`.

    boxes [R, 4] float32 in original-image pixels (rois / s), cls_prob [R,
    1601]. Rows whose max_conf (class_max_conf, NMS 0.3) is >= conf_thresh,
    in row order; if fewer than min_boxes, the min_boxes best, if more than
    max_boxes the max_boxes best, by descending max_conf."""
    max_conf = class_max_conf(boxes, cls_prob[:, 1:])  # [R] float64
    candidates = torch.nonzero(max_conf >= conf_thresh).reshape(-1)
    best = torch.sort(max_conf, descending=True, stable=True).indices  # [R]
    if len(candidates) < min_boxes:
        return best[:min_boxes]
    if len(candidates) > max_boxes:
        return best[:max_boxes]
    return candidates
