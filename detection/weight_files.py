"""Load the released bottom-up-attention detector weights into detector.Detector
(docs/FEATURE_EXTRACTION.md §12), in either published form:

- the original Caffe model `resnet101_faster_rcnn_final.caffemodel`, a
  serialized caffe.NetParameter, decoded by the protobuf library from a
  descriptor built here for the few fields that hold weights (no Caffe, no
  protoc);
- MILVLG's detectron2 conversion `bua-caffe-frcn-r101-k10-100.pth`, a state
  dict loaded with weights_only=True.

A file that does not fit the network is a UserError naming the first missing
or mis-shaped layer and where the right file is published.
"""
import os
from dataclasses import dataclass

import numpy as np
import torch

from detection import detector
from utils import UserError, require_file

CAFFEMODEL_SOURCE = ('resnet101_faster_rcnn_final.caffemodel (github.com/peteanderson80/bottom-up-attention, '
                     'README, "Demo": pretrained model)')
PTH_SOURCE = ('bua-caffe-frcn-r101-k10-100.pth (github.com/MILVLG/bottom-up-attention.pytorch, README, '
              '"Pre-trained models": Caffe, K=[10,100], ResNet-101)')
DOWNLOAD_HINT = 'download %s or %s' % (CAFFEMODEL_SOURCE, PTH_SOURCE)
NOT_THE_DETECTOR = 'this is not the Visual Genome Faster R-CNN ResNet-101 of bottom-up-attention; ' + DOWNLOAD_HINT
CAFFE_EXTENSIONS = ('.caffemodel',)
TORCH_EXTENSIONS = ('.pth', '.pt')


# ----------------------------------------------------------------- the layers of the network

@dataclass(frozen=True)
class Layer:
    """One parameterised layer: its Caffe name, its MILVLG state-dict prefix,
    the module holding it and its kind ('conv_bn': Convolution without bias
    + BatchNorm + Scale; 'conv': Convolution with bias; 'fc': InnerProduct)."""
    caffe: str
    milvlg: str
    module: torch.nn.Module
    kind: str


def layers(model):
    """The parameterised layers of `model`, in network order."""
    found = [Layer('conv1', 'backbone.stem.conv1', model.conv1, 'conv_bn')]
    for stage in (2, 3, 4, 5):
        prefix = 'roi_heads' if stage == 5 else 'backbone'
        blocks = getattr(model, 'res%d' % stage)
        for index, (suffix, block) in enumerate(zip(detector.block_names(len(blocks)), blocks)):
            branches = [('1', 'shortcut', block.branch1)] if block.branch1 is not None else []
            branches += [('2a', 'conv1', block.branch2a), ('2b', 'conv2', block.branch2b),
                         ('2c', 'conv3', block.branch2c)]
            for branch, milvlg_name, module in branches:
                found.append(Layer('res%d%s_branch%s' % (stage, suffix, branch),
                                   '%s.res%d.%d.%s' % (prefix, stage, index, milvlg_name), module, 'conv_bn'))
        if stage == 4:
            rpn = 'proposal_generator.rpn_head.'
            found += [Layer('rpn_conv/3x3', rpn + 'conv', model.rpn_conv, 'conv'),
                      Layer('rpn_cls_score', rpn + 'objectness_logits', model.rpn_cls_score, 'conv'),
                      Layer('rpn_bbox_pred', rpn + 'anchor_deltas', model.rpn_bbox_pred, 'conv')]
    found += [Layer('cls_score', 'roi_heads.box_predictor.cls_score', model.cls_score, 'fc'),
              Layer('bbox_pred', 'roi_heads.box_predictor.bbox_pred', model.bbox_pred, 'fc')]
    return found


def norm_names(conv_name):
    """Caffe names of the BatchNorm and Scale layers after convolution `conv_name`."""
    suffix = '_conv1' if conv_name == 'conv1' else conv_name[len('res'):]
    return 'bn' + suffix, 'scale' + suffix


def caffe_blob_shapes(model):
    """{Caffe layer name: [blob shapes]} of every Caffe layer with weights."""
    shapes = {}
    for layer in layers(model):
        if layer.kind == 'conv_bn':
            weight = tuple(layer.module.conv.weight.shape)
            bn_name, scale_name = norm_names(layer.caffe)
            shapes[layer.caffe] = [weight]
            shapes[bn_name] = [weight[:1], weight[:1], (1,)]
            shapes[scale_name] = [weight[:1], weight[:1]]
        else:
            shapes[layer.caffe] = [tuple(layer.module.weight.shape), tuple(layer.module.bias.shape)]
    return shapes


def milvlg_tensors(layer):
    """[(MILVLG state-dict key, destination tensor)] of one layer; for a
    conv_bn layer: weight, then the folded norm's weight (γ), bias (β),
    running_mean and running_var."""
    if layer.kind == 'conv_bn':
        norm = layer.module.norm
        return [(layer.milvlg + '.weight', layer.module.conv.weight)] + [
            ('%s.norm.%s' % (layer.milvlg, name), getattr(norm, name))
            for name in ('weight', 'bias', 'running_mean', 'running_var')]
    return [(layer.milvlg + '.weight', layer.module.weight), (layer.milvlg + '.bias', layer.module.bias)]


def milvlg_shapes(model):
    """{MILVLG state-dict key: shape} of every tensor the network needs."""
    return {key: tuple(tensor.shape) for layer in layers(model) for key, tensor in milvlg_tensors(layer)}


def _assign(destination, array):
    with torch.no_grad():
        destination.copy_(torch.from_numpy(np.array(array, dtype=np.float32)).reshape(destination.shape))


# ----------------------------------------------------------------- .caffemodel (protobuf)

_MESSAGE_CLASSES = {}


def _net_classes(raw):
    """(NetParameter, BlobProto) message classes for the weight fields of
    caffe.proto. raw=True declares the packed float/double arrays as bytes:
    a packed repeated float is one length-delimited run of little-endian
    float32, so numpy reads it without a Python float per value."""
    if raw in _MESSAGE_CLASSES:
        return _MESSAGE_CLASSES[raw]
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    field = descriptor_pb2.FieldDescriptorProto
    package = 'bua_caffe_raw' if raw else 'bua_caffe'
    proto = descriptor_pb2.FileDescriptorProto(name=package + '.proto', package=package, syntax='proto2')

    def message(name, fields):
        described = proto.message_type.add(name=name)
        for field_name, number, kind, repeated, type_name in fields:
            added = described.field.add(name=field_name, number=number, type=kind,
                                        label=field.LABEL_REPEATED if repeated else field.LABEL_OPTIONAL)
            if type_name:
                added.type_name = '.%s.%s' % (package, type_name)
            if repeated and kind not in (field.TYPE_BYTES, field.TYPE_MESSAGE):
                added.options.packed = True

    floats = (field.TYPE_BYTES, field.TYPE_BYTES) if raw else (field.TYPE_FLOAT, field.TYPE_DOUBLE)
    message('BlobShape', [('dim', 1, field.TYPE_INT64, True, None)])
    message('BlobProto', [('num', 1, field.TYPE_INT32, False, None), ('channels', 2, field.TYPE_INT32, False, None),
                          ('height', 3, field.TYPE_INT32, False, None), ('width', 4, field.TYPE_INT32, False, None),
                          ('data', 5, floats[0], True, None), ('shape', 7, field.TYPE_MESSAGE, False, 'BlobShape'),
                          ('double_data', 8, floats[1], True, None)])
    message('LayerParameter', [('name', 1, field.TYPE_BYTES, False, None), ('type', 2, field.TYPE_BYTES, False, None),
                               ('blobs', 7, field.TYPE_MESSAGE, True, 'BlobProto')])
    message('V1LayerParameter', [('name', 4, field.TYPE_BYTES, False, None),
                                 ('blobs', 6, field.TYPE_MESSAGE, True, 'BlobProto')])
    message('NetParameter', [('name', 1, field.TYPE_BYTES, False, None),
                             ('layers', 2, field.TYPE_MESSAGE, True, 'V1LayerParameter'),
                             ('layer', 100, field.TYPE_MESSAGE, True, 'LayerParameter')])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    _MESSAGE_CLASSES[raw] = tuple(message_factory.GetMessageClass(pool.FindMessageTypeByName('%s.%s' % (package, name)))
                                  for name in ('NetParameter', 'BlobProto'))
    return _MESSAGE_CLASSES[raw]


def _blob_shape(blob):
    """The blob's shape: BlobShape dims, else the legacy (num, channels, height, width)."""
    if blob.HasField('shape'):
        return tuple(int(dim) for dim in blob.shape.dim)
    return tuple(int(getattr(blob, name)) for name in ('num', 'channels', 'height', 'width'))


def _blob_values(blob):
    """float32 [n] of a raw-decoded BlobProto (float data, else double data;
    an unpacked encoding, legal but not what Caffe writes, is decoded again
    with the typed descriptor)."""
    if blob.data:
        return np.frombuffer(b''.join(blob.data), dtype='<f4')
    if blob.double_data:
        return np.frombuffer(b''.join(blob.double_data), dtype='<f8').astype(np.float32)
    typed = _net_classes(raw=False)[1].FromString(blob.SerializeToString())
    values = typed.data if len(typed.data) else typed.double_data
    return np.array(values, dtype=np.float32)


def _same_shape(found, expected):
    """Equal shapes, allowing the legacy 4-D form padded with leading 1s."""
    trimmed = tuple(found)
    while len(trimmed) > len(expected) and trimmed[0] == 1:
        trimmed = trimmed[1:]
    return trimmed == tuple(expected)


def read_caffemodel(path):
    """{layer name: [BlobProto]} of the layers with blobs of a .caffemodel."""
    require_file(path, DOWNLOAD_HINT)
    from google.protobuf.message import DecodeError
    with open(path, 'rb') as handle:
        data = handle.read()
    try:
        net = _net_classes(raw=True)[0].FromString(data)
    except DecodeError as err:
        raise UserError('%s: not a Caffe model (protobuf cannot decode it: %s); %s'
                        % (path, err, DOWNLOAD_HINT)) from None
    found = {}
    for layer in list(net.layers) + list(net.layer):
        if len(layer.blobs):
            found[layer.name.decode('utf-8', 'replace')] = list(layer.blobs)
    return found


def _caffe_arrays(path, found, name, expected_shapes, kind):
    """The float32 arrays of layer `name`, checked against `expected_shapes`."""
    if name not in found:
        raise UserError('%s: layer %s (%s %s) is missing; %s'
                        % (path, name, kind, ' + '.join(str(list(s)) for s in expected_shapes), NOT_THE_DETECTOR))
    blobs = found[name]
    shapes = [_blob_shape(blob) for blob in blobs]
    if len(blobs) != len(expected_shapes) or not all(map(_same_shape, shapes, expected_shapes)):
        raise UserError('%s: layer %s has blobs %s, the network needs %s (%s); %s'
                        % (path, name, [list(s) for s in shapes], [list(s) for s in expected_shapes], kind,
                           NOT_THE_DETECTOR))
    arrays = []
    for blob, shape in zip(blobs, expected_shapes):
        values = _blob_values(blob)
        if values.size != int(np.prod(shape)):
            raise UserError('%s: layer %s holds %d values in a blob of shape %s: the file is truncated or corrupt; %s'
                            % (path, name, values.size, list(shape), DOWNLOAD_HINT))
        arrays.append(values.reshape(shape))
    return arrays


def fold_batch_norm(mean, var, factor):
    """Caffe BatchNorm statistics divided by the moving-average factor, in
    float32 as Caffe does (a zero factor gives zeros)."""
    factor = np.float32(np.asarray(factor, dtype=np.float32).reshape(-1)[0])
    inverse = np.float32(0) if factor == 0 else np.float32(1) / factor
    return tuple((np.asarray(stat, np.float32) * inverse).astype(np.float32) for stat in (mean, var))


def load_caffemodel(model, path):
    """Copy the weights of the .caffemodel at `path` into `model`."""
    found = read_caffemodel(path)
    expected = caffe_blob_shapes(model)
    kinds = {'conv_bn': 'Convolution', 'conv': 'Convolution', 'fc': 'InnerProduct'}
    for layer in layers(model):
        arrays = _caffe_arrays(path, found, layer.caffe, expected[layer.caffe], kinds[layer.kind])
        if layer.kind == 'conv_bn':
            bn_name, scale_name = norm_names(layer.caffe)
            mean, var, factor = _caffe_arrays(path, found, bn_name, expected[bn_name], 'BatchNorm')
            gamma, beta = _caffe_arrays(path, found, scale_name, expected[scale_name], 'Scale')
            arrays += [gamma, beta, *fold_batch_norm(mean, var, factor)]
        for (_, destination), array in zip(milvlg_tensors(layer), arrays):
            _assign(destination, array)


# ----------------------------------------------------------------- MILVLG .pth

def read_state_dict(path):
    """The tensors of a torch checkpoint (a state dict, or detectron2's
    {'model': state dict}), loaded with weights_only=True."""
    require_file(path, DOWNLOAD_HINT)
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err:  # torch raises many types for foreign, truncated or unsafe files
        first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError('%s: cannot read it as a weights-only torch checkpoint (%s); %s'
                        % (path, first_line, DOWNLOAD_HINT)) from None
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get('model'), dict):
        checkpoint = checkpoint['model']
    if not isinstance(checkpoint, dict):
        raise UserError('%s: holds a %s, not a state dict; %s' % (path, type(checkpoint).__name__, DOWNLOAD_HINT))
    state = {key[len('module.'):] if key.startswith('module.') else key: value for key, value in checkpoint.items()}
    return {key: value for key, value in state.items() if torch.is_tensor(value)}


def load_milvlg(model, path):
    """Copy the weights of MILVLG's .pth at `path` into `model`."""
    state = read_state_dict(path)
    for layer in layers(model):
        for key, destination in milvlg_tensors(layer):
            if key not in state:
                raise UserError('%s: key %s (Caffe layer %s, shape %s) is missing; %s'
                                % (path, key, layer.caffe, list(destination.shape), NOT_THE_DETECTOR))
            if state[key].shape != destination.shape:
                raise UserError('%s: key %s (Caffe layer %s) has shape %s, the network needs %s; %s'
                                % (path, key, layer.caffe, list(state[key].shape), list(destination.shape),
                                   NOT_THE_DETECTOR))
            with torch.no_grad():
                destination.copy_(state[key].float())


# ----------------------------------------------------------------- entry point

def weights_format(path):
    """'caffe' or 'torch', from the extension, else from the first bytes
    (a torch file is a zip archive or a pickle)."""
    extension = os.path.splitext(path)[1].lower()
    if extension in CAFFE_EXTENSIONS:
        return 'caffe'
    if extension in TORCH_EXTENSIONS:
        return 'torch'
    require_file(path, DOWNLOAD_HINT)
    with open(path, 'rb') as handle:
        head = handle.read(4)
    return 'torch' if head.startswith(b'PK\x03\x04') or head[:1] == b'\x80' else 'caffe'


def load_detector(path, device='cpu', arch=None):
    """A Detector in eval mode on `device` with the weights of `path`
    (.caffemodel or MILVLG .pth)."""
    with torch.device('meta'):
        model = detector.Detector(arch)
    model = model.to_empty(device='cpu')  # every tensor is overwritten below: skip the random init
    if weights_format(path) == 'caffe':
        load_caffemodel(model, path)
    else:
        load_milvlg(model, path)
    return model.to(device, memory_format=torch.channels_last).eval()
