"""Model core: parity with the original implementation's golden values,
released-checkpoint layout, training on current PyTorch, and invariants."""
import re
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import base_model
from counting import Counter
from formats.flickr_files import pad_entity_positions


def sizes(ntoken, v_dim, n_ans=100):
    """What the original's build_ban reads from its dataset argument: the
    vocabulary, the feature width and the answers."""
    return SimpleNamespace(dictionary=SimpleNamespace(ntoken=ntoken), v_dim=v_dim, num_ans_candidates=n_ans)


def rel_err(actual, expected):
    return ((actual - expected).abs().max() / expected.abs().max()).item()


def vqa_bce(logits, targets):
    """The recipe's loss: BCE with logits, mean over elements, times #answers."""
    return F.binary_cross_entropy_with_logits(logits, targets) * targets.size(1)


@pytest.fixture()
def reference_vqa(reference_dir, reference_config):
    cfg = reference_config['vqa']
    model = base_model.build_ban(sizes(cfg['ntoken'], cfg['v_dim'], cfg['n_ans']),
                                 cfg['num_hid'], cfg['op'], cfg['gamma'])
    ckpt = torch.load(reference_dir / 'vqa_checkpoint.pth', weights_only=True)
    model.load_state_dict(ckpt['model_state'])  # strict, `module.` keys
    case = torch.load(reference_dir / 'vqa_case.pt', weights_only=True)
    return model.eval(), case, ckpt


@pytest.fixture()
def reference_flickr(reference_dir, reference_config):
    cfg = reference_config['flickr']
    model = base_model.build_ban(sizes(cfg['ntoken'], cfg['v_dim']), cfg['num_hid'],
                                 cfg['op'], cfg['gamma'], task='flickr')
    ckpt = torch.load(reference_dir / 'flickr_checkpoint.pth', weights_only=True)
    model.load_state_dict(ckpt['model_state'])
    case = torch.load(reference_dir / 'flickr_case.pt', weights_only=True)
    return model.eval(), case


def test_vqa_outputs_match_reference(reference_vqa):
    model, case, _ = reference_vqa
    logits, att = model(case['v'], case['b'], case['q'], None)
    assert logits.shape == case['logits'].shape and att.shape == case['att'].shape
    assert rel_err(logits, case['logits']) < 1e-5
    assert rel_err(att, case['att']) < 1e-5
    loss = vqa_bce(logits, case['a'])
    assert abs(loss.item() - case['loss'].item()) / abs(case['loss'].item()) < 1e-5
    picked = case['a'].gather(1, logits.argmax(1, keepdim=True)).sum()
    assert picked.item() == pytest.approx(case['batch_score'].item(), abs=1e-6)


def test_vqa_gradients_match_reference(reference_vqa):
    model, case, _ = reference_vqa
    logits, _ = model(case['v'], case['b'], case['q'], None)
    vqa_bce(logits, case['a']).backward()
    grads = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    assert set(grads) == set(case['grads'])  # f[8..15] of the counter and emb_ (frozen: no tf-idf) get none
    for name, expected in case['grads'].items():
        assert rel_err(grads[name], expected) < 1e-4, name


def test_flickr_logits_match_reference(reference_flickr):
    model, case = reference_flickr
    none, att_logits = model(case['v'], case['b'], case['q'], case['e'], None)
    assert none is None
    assert rel_err(att_logits, case['att_logits']) < 1e-5
    expected_masked = case['att_logits'] == -99
    assert torch.equal(att_logits == -99, expected_masked)  # exactly -99, same places


def test_flickr_gradients_match_reference(reference_flickr):
    model, case = reference_flickr
    _, att_logits = model(case['v'], case['b'], case['q'], case['e'], None)
    num_boxes = att_logits.size(2)
    # the recipe's loss: summed BCE over the valid entities' box logits / batch
    merged_logits = torch.cat([att_logits[j, 0, :, :n] for j, n in enumerate(case['e_num'][:, 0])], 1).t()
    merged_targets = torch.cat([case['target'][j, :n, :num_boxes]
                                for j, n in enumerate(case['e_num'][:, 0])], 0)
    loss = F.binary_cross_entropy_with_logits(merged_logits, merged_targets, reduction='sum')
    loss = loss / case['v'].size(0)
    assert abs(loss.item() - case['loss'].item()) / case['loss'].item() < 1e-5
    loss.backward()
    for name, p in model.named_parameters():
        assert rel_err(p.grad, case['grads'][name]) < 1e-4, name


def test_counter_matches_reference(reference_dir):
    case = torch.load(reference_dir / 'counter_case.pt', weights_only=True)
    counter = Counter(10)
    assert len(counter.f) == 16 and all(f.weight.numel() == 17 for f in counter.f)
    with torch.no_grad():
        for f, weight in zip(counter.f, case['weights']):
            f.weight.copy_(weight)
    out = counter(case['boxes'], case['attention'])
    assert torch.isinf(case['attention']).any()  # the case covers -inf attention
    assert rel_err(out, case['out']) < 1e-5


def parse_layout(path):
    layout = {}
    for line in path.read_text().splitlines():
        if line.startswith('#') or not line.strip():
            continue
        name, shape = line.split('\t')
        layout[name] = () if shape == 'scalar' else tuple(int(d) for d in shape.split('x'))
    return layout


@pytest.mark.parametrize('task,layout_file,op,gamma', [
    ('vqa', 'pretrained_vqa_layout.txt', 'c', 8),
    ('flickr', 'pretrained_flickr_layout.txt', '', 1),
])
def test_released_layout_loads_strictly(reference_dir, task, layout_file, op, gamma):
    layout = parse_layout(reference_dir / layout_file)
    with torch.device('meta'):
        model = base_model.build_ban(sizes(19901, 2048, 3129), 1280, op, gamma, task=task)
    ours = {name: tuple(t.shape) for name, t in base_model.checkpoint_state(model).items()}
    assert ours == layout
    assert list(ours) == list(layout)  # same order, hence same optimizer-state indices
    fake_release = {name: torch.empty(shape, device='meta') for name, shape in layout.items()}
    result = model.load_state_dict(fake_release, strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys


def test_reference_optimizer_state_fits_our_parameters(reference_vqa):
    model, case, ckpt = reference_vqa
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(ckpt['optimizer_state']['param_groups'][0]['params']) == len(trainable)
    optimizer = torch.optim.Adamax(trainable)
    optimizer.load_state_dict(ckpt['optimizer_state'])  # raises on a size mismatch
    vqa_bce(model(case['v'], case['b'], case['q'], None)[0], case['a']).backward()
    optimizer.step()
    resumed = torch.optim.Adamax(trainable)
    resumed.load_state_dict(optimizer.state_dict())
    stepped = [param for param in trainable if param.grad is not None]
    assert len(resumed.state) == len(stepped)
    for param in stepped:
        assert resumed.state[param]['exp_avg'].shape == param.shape


def test_saved_checkpoint_round_trip(reference_vqa, tmp_path):
    model, case, _ = reference_vqa
    path = tmp_path / 'model_epoch0.pth'
    torch.save({'epoch': 0, 'model_state': base_model.checkpoint_state(model)}, path)
    saved = torch.load(path, weights_only=True)
    assert all(key.startswith('module.') for key in saved['model_state'])
    fresh = base_model.build_ban(sizes(50, 32, 20), 24, 'c', 2).eval()
    fresh.load_state_dict(saved['model_state'])
    fresh_plain = base_model.build_ban(sizes(50, 32, 20), 24, 'c', 2).eval()
    fresh_plain.load_state_dict(base_model.unwrap(model).state_dict())  # keys without prefix too
    for candidate in (fresh, fresh_plain):
        logits, _ = candidate(case['v'], case['b'], case['q'], None)
        assert torch.equal(logits, model(case['v'], case['b'], case['q'], None)[0])


def test_training_step_with_dropout_runs_and_updates(reference_vqa):
    model, case, _ = reference_vqa
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adamax(trainable, lr=1e-3)
    frozen_before = model.w_emb.emb_.weight.detach().clone()
    before = [p.detach().clone() for p in trainable]
    torch.manual_seed(0)
    logits, _ = model(case['v'], case['b'], case['q'], None)
    loss = vqa_bce(logits, case['a'])
    loss.backward()  # the original's in-place dropout made this fail
    norm = torch.nn.utils.clip_grad_norm_(trainable, 0.25)
    optimizer.step()
    assert torch.isfinite(loss) and torch.isfinite(norm)
    changed = sum(not torch.equal(b, p) for b, p in zip(before, trainable))
    assert changed >= len(trainable) - 8  # all but the unused counter functions move
    assert torch.equal(model.w_emb.emb_.weight, frozen_before)
    assert not model.w_emb.emb_.weight.requires_grad


def tiny_c_model(tmp_path, tfidf):
    """A BAN with op 'c' (5 words, 4-d embeddings) after init_embedding, with
    a uniform tf-idf matrix over the 5 words and one new word, or without."""
    import numpy as np
    model = base_model.build_ban(sizes(5, 8, 3), 8, 'c', 1, emb_dim=4)
    np.save(tmp_path / 'glove.npy', np.arange(20, dtype=np.float32).reshape(5, 4))
    extra = np.ones((1, 4), np.float32) if tfidf is not None else None
    model.w_emb.init_embedding(str(tmp_path / 'glove.npy'), tfidf, extra)
    return model


def step_on_random_batch(model):
    """One Adamax step over the trainable parameters, as main.py builds it."""
    optimizer = torch.optim.Adamax([p for p in model.parameters() if p.requires_grad])
    v, b = torch.rand(2, 3, 8), torch.rand(2, 3, 6)
    q = torch.tensor([[0, 1, 2, 3, 4, 5], [4, 3, 5, 5, 5, 5]])  # 5 = padding
    vqa_bce(model(v, b, q, None)[0], torch.rand(2, 3)).backward()
    optimizer.step()
    return optimizer


def test_tfidf_init_makes_emb_trainable_as_in_the_original(tmp_path):
    tfidf = torch.full((5, 6), 1 / 6)
    model = tiny_c_model(tmp_path, tfidf)
    table = model.w_emb.emb_.weight
    assert table.requires_grad
    expected = tfidf @ torch.cat([torch.arange(20.).view(5, 4), torch.ones(1, 4)])
    assert torch.allclose(table[:5], expected)
    assert torch.equal(model.w_emb.emb.weight[:5], torch.arange(20.).view(5, 4))
    assert torch.equal(table[5], torch.zeros(4))  # padding row
    before = table.detach().clone()
    optimizer = step_on_random_batch(model)
    assert table.grad is not None and table.grad[:5].abs().sum() > 0
    assert torch.equal(table.grad[5], torch.zeros(4))  # the padding row gets no gradient
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    assert names[:2] == ['w_emb.emb.weight', 'w_emb.emb_.weight']  # the original's optimizer order
    assert optimizer.param_groups[0]['params'][1] is table
    assert not torch.equal(table, before)


def test_without_tfidf_emb_stays_a_frozen_copy_of_glove(tmp_path):
    model = tiny_c_model(tmp_path, None)
    table = model.w_emb.emb_.weight
    assert not table.requires_grad
    assert torch.equal(table[:5], torch.arange(20.).view(5, 4))
    optimizer = step_on_random_batch(model)
    assert table.grad is None and torch.equal(table[:5], torch.arange(20.).view(5, 4))
    assert all(param is not table for param in optimizer.param_groups[0]['params'])
    assert len(optimizer.param_groups[0]['params']) == len(list(model.parameters())) - 1


def random_batch(batch, num_boxes, v_dim, ntoken, n_pad_boxes, q_len=14):
    generator = torch.Generator().manual_seed(num_boxes)
    v = torch.rand(batch, num_boxes, v_dim, generator=generator)
    b = torch.rand(batch, num_boxes, 6, generator=generator)
    v[0, num_boxes - n_pad_boxes:] = 0  # padded boxes of the first image
    b[0, num_boxes - n_pad_boxes:] = 0
    q = torch.randint(0, ntoken, (batch, q_len), generator=generator)
    q[1, 10:] = ntoken  # padding tokens
    return v, b, q


@pytest.mark.parametrize('gamma,num_boxes', [(1, 10), (2, 37), (4, 64), (8, 100)])
def test_shapes_masking_and_normalisation(gamma, num_boxes):
    torch.manual_seed(gamma)
    model = base_model.build_ban(sizes(30, 16, 7), 12, 'c', gamma).eval()
    v, b, q = random_batch(3, num_boxes, 16, 30, n_pad_boxes=4)
    logits, att = model(v, b, q, None)
    assert logits.shape == (3, 7)
    assert att.shape == (3, gamma, num_boxes, 14)
    assert torch.all(att[0, :, num_boxes - 4:] == 0)  # padded boxes get no attention
    assert torch.all(att[0, :, :num_boxes - 4].sum(2) > 0)
    assert torch.allclose(att.sum((2, 3)), torch.ones(3, gamma), atol=1e-5)
    assert torch.isfinite(logits).all()


def test_flickr_entity_slot_0_is_never_masked():
    """A caption whose first phrase is its first word has its first entity at
    position 0: slot 0 keeps that word's logits (the original clears slot 0 of
    the mask); later slots at position 0 and padded boxes read -99."""
    torch.manual_seed(0)
    model = base_model.build_ban(sizes(30, 16), 12, '', 1, task='flickr').eval()
    v, b, q = random_batch(3, 10, 16, 30, n_pad_boxes=4, q_len=82)
    e = torch.tensor([pad_entity_positions(positions) for positions in ([0, 5], [3], [0])])  # [3,16]
    with torch.no_grad():
        _, att_logits = model(v, b, q, e)  # [3,1,10,16]
        q_emb = model.q_emb.forward_all(model.w_emb(q))  # [3,82,12]
        unmasked = model.v_att.masked_logits(v, q_emb, v_mask=False)  # [3,1,10,82]
    expected = torch.empty(3, 1, 10, 16)
    for j in range(3):
        for slot in range(16):
            position = int(e[j, slot])
            expected[j, :, :, slot] = -99.0 if slot > 0 and position == 0 else unmasked[j, :, :, position]
    expected[0, :, 6:] = -99.0  # the 4 padded boxes of the first image
    assert e[1, 1] == 0 and e[2].tolist() == list(range(16))  # the cases are there
    assert (att_logits[:, :, :6, 0] != -99).all()
    assert torch.equal(att_logits, expected)


def test_counter_output_is_soft_one_hot_times_confidence():
    torch.manual_seed(3)
    counter = Counter(10)
    with torch.no_grad():
        for f in counter.f:
            f.weight.uniform_(0.1, 1.0)
    xy = torch.rand(5, 2, 12) * 0.5
    boxes = torch.cat([xy, xy + torch.rand(5, 2, 12) * 0.5], 1)  # [5,4,12]
    boxes[:, :, 1] = boxes[:, :, 0]  # a duplicate box
    attention = torch.randn(5, 12) * 3
    attention[0, 6:] = -float('inf')
    out = counter(boxes, attention)
    assert out.shape == (5, 11)
    assert (out >= 0).all()
    for row in out:
        nonzero = row.nonzero().flatten()
        assert 1 <= len(nonzero) <= 2
        if len(nonzero) == 2:
            assert nonzero[1] - nonzero[0] == 1  # interpolation between neighbouring counts
        assert 0 <= row.sum() <= 1  # one-hot mass 1 times a confidence in [0, 1]


def test_counter_accepts_fewer_boxes_than_objects():
    counter = Counter(10)
    boxes = torch.tensor([[[0.1, 0.5], [0.1, 0.5], [0.4, 0.9], [0.4, 0.9]]])  # [1,4,2]
    few = counter(boxes, torch.tensor([[2.0, 1.0]]))
    padded = counter(torch.cat([boxes, torch.zeros(1, 4, 9)], 2),
                     torch.cat([torch.tensor([[2.0, 1.0]]), torch.full((1, 9), -float('inf'))], 1))
    assert torch.allclose(few, padded)


class LargestTensor(TorchDispatchMode):
    """Records the largest number of elements of any tensor an op produces."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for item in (out if isinstance(out, (tuple, list)) else [out]):
            if isinstance(item, torch.Tensor):
                self.largest = max(self.largest, item.numel())
        return out


def test_no_boxes_by_words_by_hidden_tensor():
    batch, num_boxes, q_len, num_hid = 16, 50, 14, 128
    model = base_model.build_ban(sizes(30, 32, 10), num_hid, '', 2).train()
    v, b, q = random_batch(batch, num_boxes, 32, 30, n_pad_boxes=3)
    with LargestTensor() as tracker:
        logits, _ = model(v, b, q, None)
        logits.sum().backward()
    outer_product = batch * num_boxes * q_len * num_hid
    assert tracker.largest < outer_product / 2, tracker.largest


def test_unknown_task_is_rejected():
    with pytest.raises(ValueError, match='unknown task'):
        base_model.build_ban(sizes(5, 8), 8, '', 1, task='gqa')


def test_layout_names_use_legacy_weight_norm(reference_dir):
    names = [line.split('\t')[0] for line in (reference_dir / 'pretrained_vqa_layout.txt').read_text().splitlines()
             if not line.startswith('#')]
    assert all(not re.search(r'parametrizations', n) for n in names)
