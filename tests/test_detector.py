"""detection/detector.py against docs/FEATURE_EXTRACTION.md: each Caffe / py-faster-rcnn
convention the specification flags (§13), and propose / select_regions /
roi_pool against plain transcriptions of §6, §7 and §10 written here."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import tiny_detector
from detection import detector, regions

SPEC_ANCHORS = [  # §5, a = 0..11
    (-38, -16, 53, 31), (-84, -40, 99, 55), (-176, -88, 191, 103), (-360, -184, 375, 199),
    (-24, -24, 39, 39), (-56, -56, 71, 71), (-120, -120, 135, 135), (-248, -248, 263, 263),
    (-14, -36, 29, 51), (-36, -80, 51, 95), (-80, -168, 95, 183), (-168, -344, 183, 359)]


# ----------------------------------------------------------------- plain transcriptions of the spec

def reference_nms(boxes, threshold):
    """Greedy NMS (§13) over boxes sorted by descending score: kept positions
    (IoU with +1 widths, in float64)."""
    x1, y1, x2, y2 = boxes.astype(np.float64).T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    keep, removed = [], np.zeros(len(boxes), bool)
    for i in range(len(boxes)):
        if removed[i]:
            continue
        keep.append(i)
        inter = (np.clip(np.minimum(x2[i], x2) - np.maximum(x1[i], x1) + 1, 0, None)
                 * np.clip(np.minimum(y2[i], y2) - np.maximum(y1[i], y1) + 1, 0, None))
        later = np.arange(len(boxes)) > i
        removed |= later & (inter / (areas[i] + areas - inter) >= threshold)
    return keep


def reference_propose(prob, deltas, im_info, pre=6000, post=300):
    """§6 step by step, one anchor at a time; float32 box arithmetic."""
    prob, deltas, im_info = prob.numpy(), deltas.numpy(), im_info.numpy()
    _, _, height, width = prob.shape
    f32 = np.float32
    boxes, scores = [], []
    for y in range(height):
        for x in range(width):
            for a in range(12):
                ax1, ay1, ax2, ay2 = (f32(v) for v in np.add(SPEC_ANCHORS[a], [16 * x, 16 * y, 16 * x, 16 * y]))
                dx, dy, dw, dh = deltas[0, 4 * a:4 * a + 4, y, x]
                w, h = ax2 - ax1 + f32(1), ay2 - ay1 + f32(1)
                cx, cy = ax1 + f32(0.5) * w, ay1 + f32(0.5) * h
                pcx, pcy = dx * w + cx, dy * h + cy
                pw, ph = f32(np.exp(dw)) * w, f32(np.exp(dh)) * h
                box = [pcx - f32(0.5) * pw, pcy - f32(0.5) * ph, pcx + f32(0.5) * pw, pcy + f32(0.5) * ph]
                box = [min(max(box[0], 0), im_info[0, 1] - 1), min(max(box[1], 0), im_info[0, 0] - 1),
                       min(max(box[2], 0), im_info[0, 1] - 1), min(max(box[3], 0), im_info[0, 0] - 1)]
                min_size = f32(16 * im_info[0, 2])
                if box[2] - box[0] + 1 >= min_size and box[3] - box[1] + 1 >= min_size:
                    boxes.append(box)
                    scores.append(prob[0, 12 + a, y, x])
    boxes = np.array(boxes, np.float32)
    order = np.argsort(-np.array(scores), kind='stable')[:pre]
    boxes = boxes[order]
    return boxes[reference_nms(boxes, 0.7)[:post]]


def reference_select(boxes, cls_prob, conf_thresh=0.2, min_boxes=10, max_boxes=100):
    """§10 as generate_tsv runs it: one NMS per foreground class."""
    boxes, cls_prob = boxes.numpy(), cls_prob.numpy()
    max_conf = np.zeros(len(boxes))
    for j in range(1, cls_prob.shape[1]):
        order = np.argsort(-cls_prob[:, j], kind='stable')
        for position in reference_nms(boxes[order], 0.3):
            row = order[position]
            max_conf[row] = max(max_conf[row], cls_prob[row, j])
    keep = np.where(max_conf >= conf_thresh)[0]
    if len(keep) < min_boxes:
        keep = np.argsort(-max_conf, kind='stable')[:min_boxes]
    elif len(keep) > max_boxes:
        keep = np.argsort(-max_conf, kind='stable')[:max_boxes]
    return keep, int((max_conf >= conf_thresh).sum())


def reference_roi_pool(features, rois, pooled=14):
    """§7 (Caffe ROIPoolingLayer), one bin at a time, float32 bin sizes."""
    f32 = np.float32
    _, channels, height, width = features.shape
    output = torch.zeros(len(rois), channels, pooled, pooled)
    for r, roi in enumerate(rois.tolist()):
        x1, y1, x2, y2 = (int(math.copysign(math.floor(abs(float(f32(v) * f32(0.0625))) + 0.5), v)) for v in roi)
        bin_h, bin_w = f32(max(y2 - y1 + 1, 1)) / f32(pooled), f32(max(x2 - x1 + 1, 1)) / f32(pooled)
        for i in range(pooled):
            for j in range(pooled):
                top = min(max(math.floor(f32(i) * bin_h) + y1, 0), height)
                bottom = min(max(math.ceil(f32(i + 1) * bin_h) + y1, 0), height)
                left = min(max(math.floor(f32(j) * bin_w) + x1, 0), width)
                right = min(max(math.ceil(f32(j + 1) * bin_w) + x1, 0), width)
                if bottom > top and right > left:
                    output[r, :, i, j] = features[0, :, top:bottom, left:right].amax(dim=(1, 2))
    return output


# ----------------------------------------------------------------- image (§2)

@pytest.mark.parametrize('height, width, expected', [
    (480, 640, 600 / 480),  # short side to 600
    (500, 1000, 1000 / 1000),  # long side would be 1200: long side to 1000
    (1199, 1999, 600 / 1199),  # long side 1000.33 rounds to 1000: the 600-based scale stays
    (1199, 2001, 1000 / 2001),  # long side 1001.3 rounds to 1001
    (600, 1000, 1.0)])
def test_image_scale_rule(height, width, expected):
    assert detector.image_scale(height, width) == expected


def test_preprocess_subtracts_bgr_means_and_resizes_like_opencv():
    image = tiny_detector.photo(333, 500)[:, :, ::-1].copy()  # BGR
    blob, im_info, scale = detector.preprocess(image)
    assert scale == 600 / 333
    assert blob.shape == (1, 3, 600, 901)  # round(500 * 600 / 333) = round(900.9)
    assert im_info.dtype == torch.float32 and im_info.tolist() == [[600.0, 901.0, np.float32(scale)]]
    centred = torch.from_numpy(image.astype(np.float64) - np.array(detector.PIXEL_MEANS_BGR)).float()
    # §2.4: OpenCV's bilinear resize maps output pixel d to (d + 0.5) / s - 0.5 with s itself (OpenCV
    # computes the source coordinates in float32: ~1e-5 relative differences)
    expected = torch.ops.aten.upsample_bilinear2d(centred.permute(2, 0, 1)[None], [600, 901], False, scale, scale)
    assert torch.allclose(blob, expected, atol=1e-2)
    in_over_out = F.interpolate(centred.permute(2, 0, 1)[None], size=[600, 901], mode='bilinear', align_corners=False)
    assert not torch.allclose(blob, in_over_out, atol=1)
    assert not torch.allclose(blob[:, [2, 1, 0]], expected, atol=1)  # channel order is B, G, R


def test_decode_keeps_bgr_replicates_grey_and_drops_alpha(tmp_path):
    from PIL import Image
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 200, 100, 10, 7
    Image.fromarray(rgba, 'RGBA').save(tmp_path / 'rgba.png')
    Image.fromarray(np.full((4, 6), 55, np.uint8), 'L').save(tmp_path / 'grey.png')
    assert detector.load_image(str(tmp_path / 'rgba.png'))[0, 0].tolist() == [10, 100, 200]
    grey = detector.load_image(str(tmp_path / 'grey.png'))
    assert grey.shape == (4, 6, 3) and (grey == 55).all()


def test_unreadable_image_is_named(tmp_path):
    broken = tmp_path / 'broken.jpg'
    broken.write_bytes(b'not a jpeg at all')
    with pytest.raises(detector.ImageError, match='broken.jpg: not a readable image'):
        detector.load_image(str(broken))
    with pytest.raises(detector.ImageError, match='missing.jpg: cannot read'):
        detector.load_image(str(tmp_path / 'missing.jpg'))


# ----------------------------------------------------------------- backbone (§3, §8)

def test_pool1_is_pad0_ceil_not_torchvision_pad1_floor():
    x = torch.arange(36.0).reshape(1, 1, 6, 6)
    pooled = detector.pool1(x)
    assert pooled.shape == (1, 1, 3, 3)  # ceil((6 - 3) / 2) + 1
    # windows start at 0, 2, 4; the last one is cut at the edge: rows/cols 4..5
    assert pooled[0, 0].tolist() == [[14, 16, 17], [26, 28, 29], [32, 34, 35]]
    assert not torch.equal(pooled, F.max_pool2d(x, 3, 2, 1))


@pytest.fixture(scope='module')
def full_size():
    """The released architecture on the meta device: shapes without memory."""
    with torch.device('meta'):
        return detector.Detector()


@pytest.mark.parametrize('side, expected', [(600, 38), (800, 50), (1000, 63), (901, 57), (250, 16),
                                            (100, 7), (16, 1)])
def test_feature_map_size(full_size, side, expected):
    features = full_size.backbone(torch.empty(1, 3, side, side, device='meta'))
    assert features.shape == (1, 1024, expected, expected)


def test_stride_in_the_first_1x1_and_dilated_res5(full_size):
    model = full_size
    for stage in (model.res3, model.res4):
        assert stage[0].branch2a.conv.stride == (2, 2) and stage[0].branch1.conv.stride == (2, 2)
        assert stage[0].branch2b.conv.stride == (1, 1)
    for block in model.res5:
        assert block.branch2b.conv.dilation == (2, 2) and block.branch2b.conv.padding == (2, 2)
        assert all(conv.stride == (1, 1) for conv in (block.branch2a.conv, block.branch2b.conv))
    assert all(module.conv.bias is None for module in model.modules() if isinstance(module, detector.ConvBN))


def test_bottleneck_computes_stride_in_1x1():
    torch.manual_seed(0)
    block = detector.Bottleneck(4, 2, stride=2, projection=True)
    for norm in (m for m in block.modules() if isinstance(m, detector.FrozenBatchNorm)):
        norm.weight.fill_(1.0)
        norm.running_var.fill_(1.0 - detector.BN_EPS)
    x = torch.randn(1, 4, 9, 9)
    a = F.relu(F.conv2d(x, block.branch2a.conv.weight, stride=2))  # stride on the 1x1
    b = F.relu(F.conv2d(a, block.branch2b.conv.weight, padding=1))
    c = F.conv2d(b, block.branch2c.conv.weight)
    expected = F.relu(c + F.conv2d(x, block.branch1.conv.weight, stride=2))
    assert torch.allclose(block(x), expected, atol=1e-5)


# ----------------------------------------------------------------- boxes (§5, §6, §13)

def test_anchor_table():
    assert regions.generate_anchors().tolist() == [list(map(float, row)) for row in SPEC_ANCHORS]


def test_shifted_anchors_are_y_x_a_ordered():
    anchors = regions.shifted_anchors(2, 3)  # [2*3*12, 4]
    assert anchors.shape == (72, 4)
    y, x, a = 1, 2, 5
    assert anchors[(y * 3 + x) * 12 + a].tolist() == [v + s for v, s in zip(SPEC_ANCHORS[a], (32, 16, 32, 16))]


def test_decode_uses_plus_one_widths_without_minus_one_or_clamp():
    anchors = torch.tensor([[0.0, 0.0, 15.0, 15.0]] * 3)
    deltas = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.5, -0.25, 0.0, 0.0], [0.0, 0.0, 10.0, 0.0]])
    boxes = regions.decode_boxes(anchors, deltas)
    assert boxes[0].tolist() == [0.0, 0.0, 16.0, 16.0]  # width 16 (+1), x2 = cx + w/2 (no -1)
    assert boxes[1].tolist() == [8.0, -4.0, 24.0, 12.0]
    assert boxes[2, 2] - boxes[2, 0] == pytest.approx(16 * math.exp(10.0), rel=1e-5)  # dw not clamped


def test_clip_to_width_and_height_minus_one():
    boxes = torch.tensor([[-5.0, -3.0, 1000.0, 700.0], [10.0, 20.0, 30.0, 40.0]])
    assert regions.clip_boxes(boxes, 600.0, 800.0).tolist() == [[0, 0, 799, 599], [10, 20, 30, 40]]


def test_nms_iou_has_plus_one_and_honours_the_tie_convention(monkeypatch):
    # inclusive pixels: inter 5x10 = 50, union 150, IoU 1/3 (without +1: 36 / 126 = 0.286)
    pair = torch.tensor([[0.0, 0.0, 9.0, 9.0], [5.0, 0.0, 14.0, 9.0]])
    assert regions.greedy_nms(pair, 0.3).tolist() == [0]
    assert regions.greedy_nms(pair, 0.34).tolist() == [0, 1]
    nested = torch.tensor([[0.0, 0.0, 9.0, 9.0], [0.0, 0.0, 9.0, 4.0]])  # IoU exactly 0.5
    assert regions.greedy_nms(nested, 0.5).tolist() == [0]  # Cython CPU NMS: suppress at IoU >= t
    monkeypatch.setattr(regions, 'NMS_SUPPRESS_AT_THRESHOLD', False)
    assert regions.greedy_nms(nested, 0.5).tolist() == [0, 1]


def rpn_outputs(height, width, seed):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(1, 2, 12, height, width, generator=generator) * 2
    prob = F.softmax(logits, dim=1).reshape(1, 24, height, width)
    deltas = torch.randn(1, 48, height, width, generator=generator) * 0.3
    return prob, deltas


def test_score_and_delta_channel_layout():
    prob = torch.zeros(1, 24, 2, 3)
    prob[:, :12] = 1.0  # background everywhere
    y, x, a = 1, 2, 7
    prob[0, 12 + a, y, x], prob[0, a, y, x] = 0.9, 0.1  # foreground of anchor a is channel 12 + a
    prob[0, 2 * a + 1, 0, 0] = 0.8  # an interleaved (2a, 2a+1) reading would pick this cell
    deltas = torch.zeros(1, 48, 2, 3)
    deltas[0, 4 * a:4 * a + 4, y, x] = torch.tensor([0.1, -0.2, 0.3, -0.1])  # (dx, dy, dw, dh) of anchor a
    im_info = torch.tensor([[1000.0, 1000.0, 1.0]])
    rois = regions.propose(prob, deltas, im_info)
    anchor = torch.tensor(SPEC_ANCHORS[a], dtype=torch.float32) + torch.tensor([16.0 * x, 16 * y, 16 * x, 16 * y])
    expected = regions.clip_boxes(regions.decode_boxes(anchor[None], deltas[0, 4 * a:4 * a + 4, y, x][None]),
                                   1000.0, 1000.0)
    assert torch.equal(rois[0], expected[0])


@pytest.mark.parametrize('height, width, scale, pre, post', [
    (9, 13, 1.6, 6000, 300), (10, 12, 1.0, 400, 300), (12, 12, 2.0, 6000, 40)])
def test_propose_matches_the_spec(height, width, scale, pre, post):
    prob, deltas = rpn_outputs(height, width, seed=height)
    im_info = torch.tensor([[16.0 * height, 16.0 * width, scale]])
    inputs = (prob.clone(), deltas.clone(), im_info.clone())
    rois = regions.propose(prob, deltas, im_info, pre_nms_top_n=pre, post_nms_top_n=post)
    expected = reference_propose(prob, deltas, im_info, pre, post)
    assert rois.dtype == torch.float32 and rois.shape == expected.shape and len(rois) > 10
    assert np.allclose(rois.numpy(), expected, atol=1e-3)
    assert all(torch.equal(a, b) for a, b in zip(inputs, (prob, deltas, im_info)))  # inputs not modified


def test_propose_cuts_to_6000_before_nms_and_300_after():
    prob, deltas = rpn_outputs(26, 26, seed=3)  # 8112 anchors
    im_info = torch.tensor([[416.0, 416.0, 0.5]])
    rois = regions.propose(prob, deltas, im_info)
    assert np.allclose(rois.numpy(), reference_propose(prob, deltas, im_info), atol=1e-3)
    assert len(rois) == 300


# ----------------------------------------------------------------- ROI pooling (§7)

def test_roi_pool_matches_caffe():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(1, 6, 20, 64, generator=generator)
    corners = torch.rand(40, 2, generator=generator) * torch.tensor([1000.0, 320.0])
    sizes = torch.rand(40, 2, generator=generator) * 300
    rois = torch.cat([corners, corners + sizes], dim=1)
    rois[0] = torch.tensor([0.0, 0.0, 1023.0, 319.0])  # the whole map
    rois[1] = torch.tensor([8.0, 8.0, 8.0, 8.0])  # one cell, rounding 0.5 away from zero
    rois[2] = torch.tensor([-100.0, -50.0, 30.0, 700.0])  # past the edges: empty bins
    rois[3] = torch.tensor([0.0, 0.0, 896.0, 40.0])  # 57 columns: 14 * fl(57/14) > 57, the last bin reaches column 57
    rois[4] = torch.tensor([0.0, 0.0, 976.0, 40.0])  # 62 columns: 7 * fl(62/14) < 31, bin 7 starts at column 30
    pooled = regions.roi_pool(features, rois)
    assert torch.equal(pooled, reference_roi_pool(features, rois))
    exact_bins = F.adaptive_max_pool2d(features[:, :, 0:4, 0:57], (14, 14))  # integer bin edges instead of float32
    assert not torch.equal(pooled[3], exact_bins[0])


def test_roi_pool_matches_torchvision_when_available():
    torchvision = pytest.importorskip('torchvision', exc_type=ImportError)
    features = torch.randn(1, 3, 12, 16)
    rois = torch.tensor([[3.0, 5.0, 200.0, 150.0], [0.0, 0.0, 255.0, 191.0]])
    with_batch = torch.cat([torch.zeros(2, 1), rois], dim=1)
    expected = torchvision.ops.roi_pool(features, with_batch, (14, 14), 1 / 16)
    assert torch.equal(regions.roi_pool(features, rois), expected)


# ----------------------------------------------------------------- selection (§10)

def class_probabilities(rows, classes, sharpness, seed):
    generator = torch.Generator().manual_seed(seed)
    return F.softmax(torch.randn(rows, classes, generator=generator) * sharpness, dim=1)


def random_boxes(rows, seed):
    generator = torch.Generator().manual_seed(seed)
    corners = torch.rand(rows, 2, generator=generator) * 400
    return torch.cat([corners, corners + 20 + torch.rand(rows, 2, generator=generator) * 200], dim=1)


@pytest.mark.parametrize('rows, classes, sharpness, limits, branch', [
    (150, 41, 3.0, (10, 100), 'many'),  # > 100 candidates: the 100 best
    (150, 41, 1.2, (10, 100), 'middle'),  # 10..100: row order
    (150, 41, 0.3, (10, 100), 'few'),  # < 10: the 10 best
    (60, 1601, 2.0, (10, 100), 'few'),  # the real class count
    (120, 41, 2.0, (36, 36), None)])  # the fixed-36 variant
def test_select_regions_matches_the_spec(rows, classes, sharpness, limits, branch):
    boxes, cls_prob = random_boxes(rows, seed=rows), class_probabilities(rows, classes, sharpness, seed=classes)
    inputs = (boxes.clone(), cls_prob.clone())
    keep = regions.select_regions(boxes, cls_prob, 0.2, *limits)
    expected, candidates = reference_select(boxes, cls_prob, 0.2, *limits)
    if branch:
        assert branch == ('few' if candidates < limits[0] else 'many' if candidates > limits[1] else 'middle')
    assert keep.dtype == torch.int64 and keep.tolist() == expected.tolist()
    assert len(keep) == (limits[0] if branch == 'few' else limits[1] if branch == 'many' else len(keep))
    assert all(torch.equal(a, b) for a, b in zip(inputs, (boxes, cls_prob)))


def test_selection_branches_on_designed_scores():
    # four far-apart boxes: no NMS interaction, max_conf = the best foreground score
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [100.0, 0.0, 110.0, 10.0],
                          [200.0, 0.0, 210.0, 10.0], [300.0, 0.0, 310.0, 10.0]])
    foreground = torch.tensor([0.25, 0.9, 0.1, 0.5])
    cls_prob = torch.stack([1 - foreground, foreground], dim=1)
    assert regions.select_regions(boxes, cls_prob, 0.2, 2, 3).tolist() == [0, 1, 3]  # row order
    assert regions.select_regions(boxes, cls_prob, 0.2, 1, 2).tolist() == [1, 3]  # best first
    assert regions.select_regions(boxes, cls_prob, 0.6, 2, 3).tolist() == [1, 3]  # too few: best first
    assert regions.select_regions(boxes, cls_prob, 0.2, 10, 100).tolist() == [1, 3, 0, 2]  # R < 10: all


def test_selection_runs_nms_in_original_pixels_with_plus_one():
    # IoU 1/3 with +1 (suppressed at 0.3): the second box keeps max_conf 0 and is not a candidate
    boxes = torch.tensor([[0.0, 0.0, 9.0, 9.0], [5.0, 0.0, 14.0, 9.0]])
    cls_prob = torch.tensor([[0.1, 0.9], [0.2, 0.8]])
    max_conf = regions.class_max_conf(boxes, cls_prob[:, 1:])
    assert max_conf.dtype == torch.float64 and max_conf.tolist() == [np.float32(0.9), 0.0]
