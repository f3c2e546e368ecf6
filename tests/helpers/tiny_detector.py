"""Shared by the detector tests: the network's layers as the specification
(docs/FEATURE_EXTRACTION.md §3-§9, §12) describes them, random weights in the
two released layouts (a .caffemodel written byte by byte from the protobuf
wire format, a MILVLG state dict), and a small photo-like test image.

Everything here is derived from the specification, not from
detection/detector.py or detection/weight_files.py, so the tests compare two independent readings."""
import struct

import numpy as np
import torch

from detection import detector

# a narrow network with the full depth and every layer of the released one; pool5 has 16 values
TINY = detector.Architecture(stem=4, widths=(2, 2, 4, 4), rpn=8)
FULL_WIDTHS = dict(stem=64, widths=(64, 128, 256, 512), rpn=512)


def block_suffixes(count):
    """§3: res2 and res5 blocks a, b, c; res3 and res4 a, b1, b2, ..."""
    return ['a', 'b', 'c'] if count == 3 else ['a'] + ['b%d' % k for k in range(1, count)]


def spec_caffe_layers(stem=64, widths=(64, 128, 256, 512), blocks=(3, 4, 23, 3), rpn=512, classes=1601):
    """{Caffe layer: [blob shapes]} of every layer with weights, from §3-§9 and §12."""
    expected = {}

    def conv_bn(conv, bn, scale, out_channels, in_channels, kernel):
        expected[conv] = [(out_channels, in_channels, kernel, kernel)]
        expected[bn] = [(out_channels,), (out_channels,), (1,)]  # mean, variance, factor
        expected[scale] = [(out_channels,), (out_channels,)]  # gamma, beta

    conv_bn('conv1', 'bn_conv1', 'scale_conv1', stem, 3, 7)
    in_channels = stem
    for stage, width, count in zip((2, 3, 4, 5), widths, blocks):
        for index, suffix in enumerate(block_suffixes(count)):
            block_in = in_channels if index == 0 else 4 * width
            branches = [('1', 4 * width, block_in, 1)] if index == 0 else []
            branches += [('2a', width, block_in, 1), ('2b', width, width, 3), ('2c', 4 * width, width, 1)]
            for branch, out_channels, branch_in, kernel in branches:
                name = '%d%s_branch%s' % (stage, suffix, branch)
                conv_bn('res' + name, 'bn' + name, 'scale' + name, out_channels, branch_in, kernel)
        in_channels = 4 * width
        if stage == 4:  # §4: the RPN reads res4b22
            expected['rpn_conv/3x3'] = [(rpn, in_channels, 3, 3), (rpn,)]
            expected['rpn_cls_score'] = [(24, rpn, 1, 1), (24,)]
            expected['rpn_bbox_pred'] = [(48, rpn, 1, 1), (48,)]
    expected['cls_score'] = [(classes, 4 * widths[3]), (classes,)]
    expected['bbox_pred'] = [(4 * classes, 4 * widths[3]), (4 * classes,)]
    return expected


def tiny_caffe_layers():
    return spec_caffe_layers(stem=TINY.stem, widths=TINY.widths, rpn=TINY.rpn)


# ----------------------------------------------------------------- random weights

def random_caffe_blobs(shapes, seed=0):
    """{layer: [float32 arrays]} of plausible scale, so that activations stay
    near unit size through the 101 layers: He-normal convolutions (conv1
    divided by the pixel spread), BatchNorm statistics stored multiplied by a
    factor in [0.5, 2], small Scale on each residual branch's last layer,
    small RPN box deltas."""
    rng = np.random.default_rng(seed)
    blobs = {}
    for name, layer_shapes in shapes.items():
        if name.startswith('bn'):
            channels = layer_shapes[0][0]
            factor = rng.uniform(0.5, 2.0)
            blobs[name] = [rng.normal(0, 0.1, channels) * factor, rng.uniform(0.5, 1.5, channels) * factor,
                           np.array([factor])]
        elif name.startswith('scale'):
            channels = layer_shapes[0][0]
            gain = 0.2 if name.endswith('_branch2c') else 1.0
            blobs[name] = [rng.uniform(0.8, 1.2, channels) * gain, rng.normal(0, 0.05, channels)]
        else:
            weight_shape = layer_shapes[0]
            std = np.sqrt(2.0 / np.prod(weight_shape[1:])) / (60.0 if name == 'conv1' else 1.0)
            if name in ('rpn_bbox_pred', 'bbox_pred'):
                std = 0.01
            blobs[name] = [rng.normal(0, std, weight_shape)] + [rng.normal(0, 0.01, s) for s in layer_shapes[1:]]
    return {name: [np.asarray(blob, dtype=np.float32) for blob in arrays] for name, arrays in blobs.items()}


# ----------------------------------------------------------------- .caffemodel bytes (§12)

def _varint(value):
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number, wire_type, payload):
    key = _varint(number << 3 | wire_type)
    return key + (_varint(len(payload)) + payload if wire_type == 2 else payload)


def encode_blob(array, legacy_shape=False, unpacked=False, double=False, declared_shape=None):
    """BlobProto bytes: shape (7) or the legacy num/channels/height/width
    (1-4), and data (5, packed float32) or double_data (8). `declared_shape`
    overrides the shape written (to make a blob whose data is too short)."""
    declared_shape = tuple(declared_shape or array.shape)
    if legacy_shape:
        dims = (1,) * (4 - len(declared_shape)) + declared_shape
        shape = b''.join(_field(number, 0, _varint(dim)) for number, dim in zip((1, 2, 3, 4), dims))
    else:
        shape = _field(7, 2, _field(1, 2, b''.join(_varint(dim) for dim in declared_shape)))
    flat = array.reshape(-1)
    if double:
        data = _field(8, 2, flat.astype('<f8').tobytes())
    elif unpacked:
        data = b''.join(_field(5, 5, struct.pack('<f', value)) for value in flat.tolist())
    else:
        data = _field(5, 2, flat.astype('<f4').tobytes())
    return shape + data


def encode_caffemodel(blobs, v1=False, blob_options=None, extra_layers=True):
    """NetParameter bytes with one layer per entry of `blobs`.
    v1: the old `layers` field (2) of V1LayerParameter (name 4, blobs 6);
    blob_options: {layer: encode_blob keyword arguments}."""
    blob_options = blob_options or {}
    layers = [(b'data', b'Python', [])]  # layers without weights, as in the real file
    layers += [(name.encode(), b'Weights', arrays) for name, arrays in blobs.items()]
    if extra_layers:  # the attribute head, which the network does not use
        layers.append((b'cls_embedding', b'Embed', [np.zeros((5, 3), np.float32)]))
        layers.append((b'relu_x', b'ReLU', []))
    body = _field(1, 2, b'ResNet-101')
    for name, kind, arrays in layers:
        encoded = [encode_blob(array, **blob_options.get(name.decode(), {})) for array in arrays]
        body += encode_layer(name, kind, encoded, v1)
    return body


def encode_layer(name, kind, encoded_blobs, v1=False):
    """One NetParameter.layer (100) or, v1, NetParameter.layers (2) field;
    appended to a NetParameter's bytes it adds (or replaces) that layer."""
    if v1:
        return _field(2, 2, _field(4, 2, name) + b''.join(_field(6, 2, blob) for blob in encoded_blobs))
    return _field(100, 2, _field(1, 2, name) + _field(2, 2, kind) + b''.join(_field(7, 2, blob)
                                                                            for blob in encoded_blobs))


# ----------------------------------------------------------------- MILVLG state dict (§12)

def milvlg_key(caffe_name):
    """§12's rule: res{S}{B}_branch{X} -> {backbone|roi_heads}.res{S}.{block}.{shortcut|conv1..3}."""
    fixed = {'conv1': 'backbone.stem.conv1', 'rpn_conv/3x3': 'proposal_generator.rpn_head.conv',
             'rpn_cls_score': 'proposal_generator.rpn_head.objectness_logits',
             'rpn_bbox_pred': 'proposal_generator.rpn_head.anchor_deltas',
             'cls_score': 'roi_heads.box_predictor.cls_score', 'bbox_pred': 'roi_heads.box_predictor.bbox_pred'}
    if caffe_name in fixed:
        return fixed[caffe_name]
    block, branch = caffe_name[len('res'):].split('_branch')
    stage, letter = int(block[0]), block[1:]
    index = {'a': 0, 'b': 1, 'c': 2}[letter] if letter in ('a', 'b', 'c') else int(letter[1:])
    module = {'1': 'shortcut', '2a': 'conv1', '2b': 'conv2', '2c': 'conv3'}[branch]
    return '%s.res%d.%d.%s' % ('roi_heads' if stage == 5 else 'backbone', stage, index, module)


def milvlg_state(blobs):
    """The MILVLG state dict of Caffe `blobs`: BatchNorm statistics divided
    by the factor as Caffe's inference does (float32 multiply by 1/f)."""
    state = {}
    for name, arrays in blobs.items():
        if name.startswith(('bn', 'scale')):
            continue
        key = milvlg_key(name)
        state[key + '.weight'] = torch.from_numpy(arrays[0].copy())
        if len(arrays) > 1:
            state[key + '.bias'] = torch.from_numpy(arrays[1].copy())
        else:
            suffix = '_conv1' if name == 'conv1' else name[len('res'):]
            mean, var, factor = blobs['bn' + suffix]
            inverse = np.float32(1) / factor[0]
            gamma, beta = blobs['scale' + suffix]
            state[key + '.norm.weight'] = torch.from_numpy(gamma.copy())
            state[key + '.norm.bias'] = torch.from_numpy(beta.copy())
            state[key + '.norm.running_mean'] = torch.from_numpy((mean * inverse).astype(np.float32))
            state[key + '.norm.running_var'] = torch.from_numpy((var * inverse).astype(np.float32))
            state[key + '.norm.num_batches_tracked'] = torch.tensor(0)  # BN (not frozen) layers carry it
    return state


# ----------------------------------------------------------------- images

def photo(height=240, width=320, seed=0):
    """uint8 RGB [H, W, 3]: a smooth background with a few solid shapes and
    mild noise, so that JPEG encoding and the detector see image-like data."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width]
    image = np.stack([120 + 80 * np.sin(rows / 37.0), 110 + 60 * np.cos(cols / 53.0),
                      90 + 0.3 * rows], axis=-1)
    for _ in range(5):
        y, x = rng.integers(0, height * 3 // 4), rng.integers(0, width * 3 // 4)
        h, w = rng.integers(1, height // 2 + 2), rng.integers(1, width // 2 + 2)
        image[y:y + h, x:x + w] = rng.integers(0, 256, 3)
    image += rng.normal(0, 4, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def write_photo(path, height=240, width=320, seed=0):
    """Save photo() as a JPEG (or any format PIL infers from `path`)."""
    from PIL import Image
    Image.fromarray(photo(height, width, seed)).save(str(path), quality=90)
    return path
