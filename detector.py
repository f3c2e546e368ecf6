"""The bottom-up-attention detector (Anderson et al. 2018) in plain PyTorch:
the Visual Genome Faster R-CNN ResNet-101 whose 10-100 region features BAN
consumes, and the region selection of the original's generate_tsv.py.

The specification is docs/FEATURE_EXTRACTION.md (its sections are cited as
§N). The network follows Caffe's conventions, not torchvision's: ResNet-101
"v1" with the stride in the first 1x1 convolution, frozen BatchNorm+Scale, a
pad-0 ceil-mode pool1, an RPN with 12 ratio-major anchors and a bg/fg channel
split, py-faster-rcnn's +1 box arithmetic, Caffe ROI max pooling 14x14, res5
at stride 1 with dilation 2, average pool5 and the 1601-class head. The
attribute head is omitted (its output is not part of the features).

Weights: detector_weights.py reads the original .caffemodel or MILVLG's .pth.
Images are decoded and resized with OpenCV, as the original did.
"""
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from utils import UserError

# §2: image preprocessing
PIXEL_MEANS_BGR = (102.9801, 115.9465, 122.7717)
TEST_SCALE = 600
TEST_MAX_SIZE = 1000
# [U] §2.1, §16.2: the 2017 run used Caffe's default OpenCV 2.4 build, whose imread did not
# apply EXIF orientation (OpenCV >= 3.1 does). Most plausible reading: orientation ignored.
APPLY_EXIF_ORIENTATION = False

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
NUM_CLASSES = 1601
BN_EPS = 1e-5
CLASS_NMS_THRESH = 0.3
CONF_THRESH = 0.2
MIN_BOXES = 10
MAX_BOXES = 100
ROI_CHUNK = 50  # regions pushed through res5 at once (bounds memory, not results)


class ImageError(UserError):
    """An image that cannot be read or yields no region."""


# ----------------------------------------------------------------- images (§2)

def decode_image(data, name, apply_exif_orientation=APPLY_EXIF_ORIENTATION):
    """uint8 BGR [H, W, 3] from the bytes of a JPEG/PNG/... file, as OpenCV's
    colour read (grey replicated, alpha dropped)."""
    import cv2
    flags = cv2.IMREAD_COLOR if apply_exif_orientation else cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags) if len(data) else None
    if image is None:
        raise ImageError('%s: not a readable image (OpenCV cannot decode it)' % name)
    return image


def load_image(path, apply_exif_orientation=APPLY_EXIF_ORIENTATION):
    """uint8 BGR [H, W, 3] of the image file `path`."""
    try:
        with open(path, 'rb') as handle:
            data = handle.read()
    except OSError as err:
        raise ImageError('%s: cannot read the image (%s)' % (path, err.strerror or err)) from None
    return decode_image(data, path, apply_exif_orientation)


def image_scale(height, width, target=TEST_SCALE, max_size=TEST_MAX_SIZE):
    """The single test scale s: target / short side, unless the rounded long
    side would exceed max_size, then max_size / long side (§2.3)."""
    scale = float(target) / float(min(height, width))
    if np.round(scale * max(height, width)) > max_size:  # numpy rounding: half to even
        scale = float(max_size) / float(max(height, width))
    return scale


def preprocess(image):
    """(blob [1, 3, h, w] float32 BGR minus the means, im_info [1, 3] =
    (h, w, s) float32, s) of a uint8 BGR image (§2.2-§2.5)."""
    import cv2
    height, width = image.shape[:2]
    # the original subtracts the float64 means in place from a float32 copy: float64 maths, one rounding
    centred = np.empty(image.shape, dtype=np.float32)  # [H, W, 3]
    for channel, mean in enumerate(PIXEL_MEANS_BGR):
        np.subtract(image[..., channel], mean, out=centred[..., channel], dtype=np.float64, casting='same_kind')
    scale = image_scale(height, width)
    resized = cv2.resize(centred, None, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)  # [h, w, 3]
    blob = torch.from_numpy(np.ascontiguousarray(resized.transpose(2, 0, 1)))[None]  # [1, 3, h, w]
    im_info = torch.tensor([[resized.shape[0], resized.shape[1], scale]], dtype=torch.float32)  # [1, 3]
    return blob, im_info, scale


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


# ----------------------------------------------------------------- network (§3, §4, §8, §9)

@dataclass(frozen=True)
class Architecture:
    """Channel widths and depths; the default is the released network.
    Smaller ones exist for tests (same layers, fewer channels)."""
    stem: int = 64
    widths: tuple = (64, 128, 256, 512)  # bottleneck width of res2..res5; a block outputs 4x
    blocks: tuple = (3, 4, 23, 3)
    rpn: int = 512
    num_classes: int = NUM_CLASSES

    @property
    def feature_dim(self):
        return 4 * self.widths[-1]


ARCHITECTURE = Architecture()


class FrozenBatchNorm(nn.Module):
    """Caffe BatchNorm (global statistics) followed by Scale, with the
    statistics already divided by the moving-average factor."""

    def __init__(self, channels):
        super().__init__()
        for name in ('weight', 'bias', 'running_mean', 'running_var'):
            self.register_buffer(name, torch.zeros(channels))

    def forward(self, x):
        scale = self.weight * torch.rsqrt(self.running_var + BN_EPS)  # [C]
        shift = self.bias - self.running_mean * scale
        return torch.addcmul(shift[:, None, None], x, scale[:, None, None])


class ConvBN(nn.Module):
    """Convolution without bias, then BatchNorm+Scale; `relu` optional."""

    def __init__(self, in_channels, out_channels, kernel, stride=1, padding=0, dilation=1, relu=True):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride, padding, dilation, bias=False)
        self.norm = FrozenBatchNorm(out_channels)
        self.relu = relu

    def forward(self, x):
        x = self.norm(self.conv(x))
        return F.relu_(x) if self.relu else x


class Bottleneck(nn.Module):
    """Caffe ResNet v1 block: 1x1 (carries the stride) -> 3x3 -> 1x1, plus the
    identity or a projection (branch1), then ReLU."""

    def __init__(self, in_channels, width, stride=1, dilation=1, projection=False):
        super().__init__()
        out_channels = 4 * width
        self.branch1 = ConvBN(in_channels, out_channels, 1, stride, relu=False) if projection else None
        self.branch2a = ConvBN(in_channels, width, 1, stride)
        self.branch2b = ConvBN(width, width, 3, 1, dilation, dilation)
        self.branch2c = ConvBN(width, out_channels, 1, relu=False)

    def forward(self, x):
        shortcut = x if self.branch1 is None else self.branch1(x)
        return F.relu_(self.branch2c(self.branch2b(self.branch2a(x))) + shortcut)


def pool1(x):
    """Caffe's pool1: max 3x3, stride 2, pad 0, ceil rounding (§3)."""
    return F.max_pool2d(x, 3, 2, 0, ceil_mode=True)


def block_names(count):
    """Caffe's block suffixes: a, b, c for three blocks; else a, b1, b2, ..."""
    return list('abc'[:count]) if count <= 3 else ['a'] + ['b%d' % k for k in range(1, count)]


def _stage(in_channels, width, count, stride, dilation=1):
    """Caffe's stage: the first block projects (branch1) and carries the stride."""
    return nn.Sequential(*[Bottleneck(in_channels if k == 0 else 4 * width, width, stride if k == 0 else 1,
                                      dilation, projection=k == 0) for k in range(count)])


class Detector(nn.Module):
    """Faster R-CNN ResNet-101 of bottom-up-attention, inference only.

    forward(blob, im_info) -> (rois [R, 4] in scaled-image pixels,
    cls_prob [R, num_classes], pool5 [R, feature_dim])."""

    def __init__(self, arch=None):
        super().__init__()
        arch = arch or ARCHITECTURE
        self.arch = arch
        self.conv1 = ConvBN(3, arch.stem, 7, 2, 3)
        widths, blocks = arch.widths, arch.blocks
        self.res2 = _stage(arch.stem, widths[0], blocks[0], 1)
        self.res3 = _stage(4 * widths[0], widths[1], blocks[1], 2)
        self.res4 = _stage(4 * widths[1], widths[2], blocks[2], 2)
        self.rpn_conv = nn.Conv2d(4 * widths[2], arch.rpn, 3, 1, 1)
        self.rpn_cls_score = nn.Conv2d(arch.rpn, 2 * NUM_ANCHORS, 1)
        self.rpn_bbox_pred = nn.Conv2d(arch.rpn, 4 * NUM_ANCHORS, 1)
        self.res5 = _stage(4 * widths[2], widths[3], blocks[3], 1, dilation=2)
        self.cls_score = nn.Linear(arch.feature_dim, arch.num_classes)
        # class-specific box regression (§9): part of the released network, unused by the features
        self.bbox_pred = nn.Linear(arch.feature_dim, 4 * arch.num_classes)
        self.requires_grad_(False)

    def backbone(self, blob):
        """res4b22 after its ReLU: [1, 4 * widths[2], H/16, W/16]. The
        convolutions run channels-last (faster on CPU and GPU; same maths)."""
        x = pool1(self.conv1(blob.contiguous(memory_format=torch.channels_last)))
        return self.res4(self.res3(self.res2(x)))

    def rpn(self, features):
        """(rpn_cls_prob [1, 2A, H, W], rpn_bbox_pred [1, 4A, H, W]) in Caffe's layout."""
        hidden = F.relu(self.rpn_conv(features))
        logits = self.rpn_cls_score(hidden)  # [1, 2A, H, W]
        _, _, height, width = logits.shape
        # Caffe reshapes to [1, 2, A*H, W] and soft-maxes over the 2: channel a pairs with a + A
        probs = F.softmax(logits.reshape(1, 2, NUM_ANCHORS, height, width), dim=1)
        return probs.reshape(1, 2 * NUM_ANCHORS, height, width), self.rpn_bbox_pred(hidden)

    def head(self, pooled):
        """pool5_flat [R, feature_dim] of ROI-pooled regions [R, C4, 14, 14]:
        res5 (in chunks of ROI_CHUNK regions) and the 14x14 average."""
        outputs = [self.res5(pooled[first:first + ROI_CHUNK].contiguous(memory_format=torch.channels_last))
                   .mean(dim=(2, 3)) for first in range(0, len(pooled), ROI_CHUNK)]
        return torch.cat(outputs) if outputs else pooled.new_zeros(0, self.arch.feature_dim)

    def forward(self, blob, im_info):
        features = self.backbone(blob)
        rpn_cls_prob, rpn_bbox_pred = self.rpn(features)
        rois = propose(rpn_cls_prob, rpn_bbox_pred, im_info)  # [R, 4]
        pool5 = self.head(roi_pool(features, rois))  # [R, D]
        cls_prob = F.softmax(self.cls_score(pool5), dim=1)  # [R, num_classes]
        return rois, cls_prob, pool5

    def box_deltas(self, pool5):
        """Class-specific box regression deltas [R, 4 * num_classes] (§9)."""
        return self.bbox_pred(pool5)


# ----------------------------------------------------------------- extraction

@dataclass
class Regions:
    """One image's row of the bottom-up-attention TSV (§1)."""
    image_w: int
    image_h: int
    boxes: np.ndarray  # [N, 4] float32, original-image pixels, not regressed
    features: np.ndarray  # [N, D] float32 pool5


@torch.inference_mode()
def extract_regions(detector, image, conf_thresh=CONF_THRESH, min_boxes=MIN_BOXES, max_boxes=MAX_BOXES,
                    name='image'):
    """The selected regions of a uint8 BGR image [H, W, 3] (§1, §10)."""
    device = next(detector.parameters()).device
    blob, im_info, scale = preprocess(image)
    rois, cls_prob, pool5 = detector(blob.to(device), im_info.to(device))
    if len(rois) == 0:
        raise ImageError('%s: the detector proposed no region (is the image blank or tiny?)' % name)
    boxes = rois.float().cpu() / torch.tensor(scale, dtype=torch.float32)  # float32 / float32(s), as numpy 1
    keep = select_regions(boxes, cls_prob.float().cpu(), conf_thresh, min_boxes, max_boxes)
    return Regions(image_w=int(image.shape[1]), image_h=int(image.shape[0]),
                   boxes=boxes[keep].numpy(), features=pool5[keep.to(device)].float().cpu().numpy())
