"""detection/weight_files.py: the network has every layer of the specification
(docs/FEATURE_EXTRACTION.md, sections cited as §N) with Caffe's blob shapes, and the two released layouts (a .caffemodel decoded with
protobuf, MILVLG's .pth) load into identical networks; a file that does not
fit is named with its first bad layer. The files are written here from the
specification with random weights (tests/helpers/tiny_detector.py)."""
import pickle

import numpy as np
import pytest
import torch

import tiny_detector
from detection import detector, weight_files
from tiny_detector import TINY
from utils import UserError


@pytest.fixture(scope='module')
def full_size():
    with torch.device('meta'):
        return detector.Detector()


def test_every_layer_has_the_spec_blob_shapes(full_size):
    shapes = weight_files.caffe_blob_shapes(full_size)
    expected = tiny_detector.spec_caffe_layers()
    assert list(shapes) == list(expected)  # same layers, in network order
    assert shapes == expected
    assert sum(name.startswith('bn') for name in shapes) == 104  # §3: all 104 BatchNorm layers


def test_milvlg_keys_follow_the_spec_rule(full_size):
    keys = set(weight_files.milvlg_shapes(full_size))
    expected = set()
    for name, shapes in tiny_detector.spec_caffe_layers().items():
        if name.startswith(('bn', 'scale')):
            continue
        key = tiny_detector.milvlg_key(name)
        suffixes = ['weight', 'bias'] if len(shapes) == 2 else [
            'weight', 'norm.weight', 'norm.bias', 'norm.running_mean', 'norm.running_var']
        expected |= {'%s.%s' % (key, suffix) for suffix in suffixes}
    assert keys == expected
    for key in ('backbone.res3.2.conv2.weight', 'backbone.res4.22.conv3.weight', 'roi_heads.res5.0.shortcut.weight',
                'roi_heads.res5.2.conv2.weight', 'proposal_generator.rpn_head.objectness_logits.bias'):
        assert key in keys  # §12's table


def test_batchnorm_uses_the_scale_factor_blob():
    mean, var = np.array([2.0, -1.0], np.float32), np.array([8.0, 0.5], np.float32)
    folded_mean, folded_var = weight_files.fold_batch_norm(mean, var, np.array([4.0], np.float32))
    assert folded_mean.tolist() == [0.5, -0.25] and folded_var.tolist() == [2.0, 0.125]
    assert [a.tolist() for a in weight_files.fold_batch_norm(mean, var, np.array([0.0]))] == [[0, 0], [0, 0]]
    norm = detector.FrozenBatchNorm(2)
    norm.running_mean.copy_(torch.from_numpy(folded_mean))
    norm.running_var.copy_(torch.from_numpy(folded_var))
    norm.weight.copy_(torch.tensor([3.0, 1.0]))
    norm.bias.copy_(torch.tensor([0.5, 0.0]))
    x = torch.randn(1, 2, 3, 3)
    column = lambda values: torch.tensor(values)[:, None, None]  # noqa: E731
    expected = (x - column([0.5, -0.25])) / torch.sqrt(column([2.0, 0.125]) + 1e-5) * column([3.0, 1.0]) + \
        column([0.5, 0.0])
    assert torch.allclose(norm(x), expected, atol=1e-5)


# ----------------------------------------------------------------- loading

@pytest.fixture(scope='module')
def blobs():
    return tiny_detector.random_caffe_blobs(tiny_detector.tiny_caffe_layers(), seed=1)


@pytest.fixture(scope='module')
def caffemodel(blobs, tmp_path_factory):
    path = tmp_path_factory.mktemp('weights') / 'tiny.caffemodel'
    path.write_bytes(tiny_detector.encode_caffemodel(blobs))
    return str(path)


@pytest.fixture(scope='module')
def milvlg_pth(blobs, tmp_path_factory):
    path = tmp_path_factory.mktemp('weights') / 'tiny.pth'
    state = tiny_detector.milvlg_state(blobs)
    state['proposal_generator.anchor_generator.cell_anchors.0'] = torch.zeros(12, 4)  # ignored (§12)
    torch.save({'model': state, 'iteration': 320000}, path)  # detectron2's checkpoint layout
    return str(path)


def assert_same_state(model_a, model_b):
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key


def test_caffemodel_weights_land_in_the_right_tensors(blobs, caffemodel):
    model = weight_files.load_detector(caffemodel, arch=TINY)
    assert torch.equal(model.conv1.conv.weight, torch.from_numpy(blobs['conv1'][0]))
    block = model.res4[22]
    assert torch.equal(block.branch2c.conv.weight, torch.from_numpy(blobs['res4b22_branch2c'][0]))
    mean, var, factor = blobs['bn4b22_branch2c']
    assert torch.equal(block.branch2c.norm.running_mean, torch.from_numpy(mean * (np.float32(1) / factor[0])))
    assert torch.equal(block.branch2c.norm.running_var, torch.from_numpy(var * (np.float32(1) / factor[0])))
    assert torch.equal(block.branch2c.norm.weight, torch.from_numpy(blobs['scale4b22_branch2c'][0]))
    assert torch.equal(model.rpn_conv.bias, torch.from_numpy(blobs['rpn_conv/3x3'][1]))
    assert torch.equal(model.cls_score.weight, torch.from_numpy(blobs['cls_score'][0]))
    assert torch.equal(model.bbox_pred.bias, torch.from_numpy(blobs['bbox_pred'][1]))


def test_caffemodel_and_pth_give_identical_networks_and_outputs(caffemodel, milvlg_pth):
    from_caffe = weight_files.load_detector(caffemodel, arch=TINY)
    from_pth = weight_files.load_detector(milvlg_pth, arch=TINY)
    assert_same_state(from_caffe, from_pth)
    image = tiny_detector.photo(120, 160)[:, :, ::-1].copy()
    regions_caffe = detector.extract_regions(from_caffe, image)
    regions_pth = detector.extract_regions(from_pth, image)
    assert 10 <= len(regions_caffe.boxes) <= 100 and regions_caffe.features.shape[1] == TINY.feature_dim
    assert np.array_equal(regions_caffe.boxes, regions_pth.boxes)
    assert np.array_equal(regions_caffe.features, regions_pth.features)


@pytest.mark.parametrize('variant', ['v1_layers', 'legacy_shapes', 'unpacked', 'double'])
def test_older_caffe_encodings_load_the_same(blobs, caffemodel, tmp_path, variant):
    if variant == 'v1_layers':
        data = tiny_detector.encode_caffemodel(blobs, v1=True)
    else:
        option = {'legacy_shapes': {'legacy_shape': True}, 'unpacked': {'unpacked': True},
                  'double': {'double': True}}[variant]
        data = tiny_detector.encode_caffemodel(blobs, blob_options={name: option for name in blobs})
    path = tmp_path / 'variant.caffemodel'
    path.write_bytes(data)
    assert_same_state(weight_files.load_detector(str(path), arch=TINY),
                      weight_files.load_detector(caffemodel, arch=TINY))


def test_plain_state_dict_and_module_prefix_load(blobs, milvlg_pth, tmp_path):
    path = tmp_path / 'plain.pt'
    torch.save({'module.' + key: value for key, value in tiny_detector.milvlg_state(blobs).items()}, path)
    assert_same_state(weight_files.load_detector(str(path), arch=TINY),
                      weight_files.load_detector(milvlg_pth, arch=TINY))


def test_format_is_sniffed_without_a_known_extension(caffemodel, milvlg_pth, tmp_path):
    for source, name in ((caffemodel, 'a.weights'), (milvlg_pth, 'b.weights')):
        path = tmp_path / name
        path.write_bytes(open(source, 'rb').read())
        assert weight_files.weights_format(str(path)) == ('caffe' if source == caffemodel else 'torch')


# ----------------------------------------------------------------- files that do not fit

def write_caffemodel(tmp_path, blobs):
    path = tmp_path / 'bad.caffemodel'
    path.write_bytes(tiny_detector.encode_caffemodel(blobs))
    return str(path)


@pytest.mark.parametrize('edit, message', [
    (lambda b: b.pop('res4b22_branch2c'), r'layer res4b22_branch2c \(Convolution \[16, 4, 1, 1\]\) is missing'),
    (lambda b: b.pop('scale3b1_branch2a'), r'layer scale3b1_branch2a \(Scale \[2\] \+ \[2\]\) is missing'),
    (lambda b: b.__setitem__('bn2a_branch1', b['bn2a_branch1'][:2]),
     r'layer bn2a_branch1 has blobs \[\[8\], \[8\]\], the network needs \[\[8\], \[8\], \[1\]\] \(BatchNorm\)'),
    (lambda b: b.__setitem__('cls_score', [b['cls_score'][0][:, :8], b['cls_score'][1]]),
     r'layer cls_score has blobs \[\[1601, 8\], \[1601\]\], the network needs \[\[1601, 16\], \[1601\]\]')])
def test_caffemodel_that_does_not_fit_names_the_layer(blobs, tmp_path, edit, message):
    edited = dict(blobs)
    edit(edited)
    with pytest.raises(UserError, match=message + '.*peteanderson80/bottom-up-attention.*MILVLG'):
        weight_files.load_detector(write_caffemodel(tmp_path, edited), arch=TINY)


def test_full_size_network_rejects_a_narrow_file(caffemodel):
    with pytest.raises(UserError, match=r'layer conv1 has blobs \[\[4, 3, 7, 7\]\], '
                                        r'the network needs \[\[64, 3, 7, 7\]\]'):
        weight_files.load_detector(caffemodel)


def test_truncated_or_foreign_caffemodel(caffemodel, tmp_path):
    truncated = tmp_path / 'truncated.caffemodel'
    truncated.write_bytes(open(caffemodel, 'rb').read()[:-1000])
    with pytest.raises(UserError, match='truncated.caffemodel: '):
        weight_files.load_detector(str(truncated), arch=TINY)
    foreign = tmp_path / 'photo.caffemodel'
    tiny_detector.write_photo(foreign.with_suffix('.jpg'))
    foreign.write_bytes(foreign.with_suffix('.jpg').read_bytes())
    with pytest.raises(UserError, match='photo.caffemodel: (not a Caffe model|layer conv1 .* is missing)'):
        weight_files.load_detector(str(foreign), arch=TINY)


def test_blob_with_too_few_values_is_named(blobs, tmp_path):
    edited = {name: arrays for name, arrays in blobs.items() if name != 'rpn_bbox_pred'}
    weight, bias = blobs['rpn_bbox_pred']
    short = tiny_detector.encode_blob(weight.reshape(-1)[:-2], declared_shape=weight.shape)
    path = tmp_path / 'short.caffemodel'
    path.write_bytes(tiny_detector.encode_caffemodel(edited) + tiny_detector.encode_layer(
        b'rpn_bbox_pred', b'Convolution', [short, tiny_detector.encode_blob(bias)]))
    with pytest.raises(UserError, match=r'layer rpn_bbox_pred holds 382 values in a blob of shape \[48, 8, 1, 1\]'):
        weight_files.load_detector(str(path), arch=TINY)


@pytest.mark.parametrize('edit, message', [
    (lambda s: s.pop('backbone.res4.22.conv3.norm.running_var'),
     r'key backbone.res4.22.conv3.norm.running_var \(Caffe layer res4b22_branch2c, shape \[16\]\) is missing'),
    (lambda s: s.__setitem__('roi_heads.res5.0.shortcut.weight', torch.zeros(16, 8, 3, 3)),
     r'key roi_heads.res5.0.shortcut.weight \(Caffe layer res5a_branch1\) has shape \[16, 8, 3, 3\], '
     r'the network needs \[16, 16, 1, 1\]')])
def test_pth_that_does_not_fit_names_the_key(blobs, tmp_path, edit, message):
    state = tiny_detector.milvlg_state(blobs)
    edit(state)
    path = tmp_path / 'bad.pth'
    torch.save(state, path)
    with pytest.raises(UserError, match=message + '.*MILVLG/bottom-up-attention.pytorch'):
        weight_files.load_detector(str(path), arch=TINY)


class _Payload:
    """A pickle that would run code when unpickled without weights_only."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, 'w'))


def test_pth_is_never_unpickled_beyond_tensors(tmp_path):
    marker = tmp_path / 'ran'
    path = tmp_path / 'evil.pth'
    with open(path, 'wb') as handle:
        pickle.dump({'model': _Payload(str(marker))}, handle, protocol=2)
    with pytest.raises(UserError, match='evil.pth: cannot read it as a weights-only torch checkpoint'):
        weight_files.load_detector(str(path), arch=TINY)
    assert not marker.exists()


def test_missing_weights_file_says_where_to_download(tmp_path):
    with pytest.raises(UserError, match=r'missing file .*none.caffemodel: download resnet101_faster_rcnn_final'):
        weight_files.load_detector(str(tmp_path / 'none.caffemodel'))
