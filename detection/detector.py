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

Weights: detection/weight_files.py reads the original .caffemodel or MILVLG's .pth.
Images are decoded and resized with OpenCV, as the original did.
"""
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from detection.regions import CONF_THRESH, MAX_BOXES, MIN_BOXES, NUM_ANCHORS, propose, roi_pool, select_regions
from utils import UserError

# §2: image preprocessing
PIXEL_MEANS_BGR = (102.9801, 115.9465, 122.7717)
TEST_SCALE = 600
TEST_MAX_SIZE = 1000
# [U] §2.1, §16.2: the 2017 run used Caffe's default OpenCV 2.4 build, whose imread did not
# apply EXIF orientation (OpenCV >= 3.1 does). Most plausible reading: orientation ignored.
APPLY_EXIF_ORIENTATION = False

# §7-§10: heads
NUM_CLASSES = 1601
BN_EPS = 1e-5
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
