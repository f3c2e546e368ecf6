"""Flickr30k Entities data side: annotation parsing, alignment modes, targets,
padding, batching, the Flickr dictionary, and parity of the grounding loss and
recall with the original's golden values."""
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import dataset
from formats import flickr_files, grounding
from formats.dictionary import PICKLE_PROTOCOL, Dictionary
from runs.collate import flickr_collate
from utils import UserError, safe_pickle_load

REFERENCE = Path(__file__).resolve().parent / 'golden'
V_DIM = 8

# ----------------------------------------------------------------- tiny tree

BOX_A = [10, 10, 50, 50]
BOX_B = [100, 100, 150, 150]
BOX_HAT = [60, 10, 90, 60]
# detected boxes of image 100 and their expected matches:
DETECTED_100 = [
    [10, 10, 50, 50],      # 0: IoU 1 with BOX_A (chain 1)
    [100, 100, 150, 140],  # 1: IoU .8 with BOX_B (chain 1, second box)
    [60, 10, 90, 60],      # 2: IoU 1 with BOX_HAT (chains 2 and 3)
    [0, 0, 200, 200],      # 3: large, matches nothing
    [10, 10, 50, 90],      # 4: IoU exactly .5 with BOX_A -> matches
    [10, 10, 50, 91],      # 5: IoU just below .5 -> no match
]
SENTENCES_100 = [
    '[/EN#1/people Two men] and [/EN#2/clothing/other a hat] near [/EN#4/other a wall] in '
    '[/EN#5/scene a park] .',
    '[/EN#0/notvisual Nobody] is here .',
    '[/EN#1/people a man] talks to [/EN#3/people a man] .',
    "Look , [/EN#1/people the man] , [/EN#3/people his friend's] [/EN#2/clothing hat] .",
    '[/EN#6/animals A dog] runs .',
]
OBJECTS_100 = [
    (['1'], BOX_A), (['1'], BOX_B), (['2', '3'], BOX_HAT), (['4'], 'nobndbox'), (['5'], 'scene'),
]


def write_annotation(path, objects):
    parts = ['<annotation><filename>x.jpg</filename><size><width>500</width><height>400</height>'
             '<depth>3</depth></size>']
    for names, box in objects:
        parts.append('<object>' + ''.join('<name>%s</name>' % name for name in names))
        if box == 'nobndbox':
            parts.append('<nobndbox>1</nobndbox>')
        elif box == 'scene':
            parts.append('<nobndbox>1</nobndbox><scene>1</scene>')
        else:
            parts.append('<bndbox><xmin>%d</xmin><ymin>%d</ymin><xmax>%d</xmax><ymax>%d</ymax></bndbox>'
                         % tuple(box))
        parts.append('</object>')
    parts.append('</annotation>')
    path.write_text('\n'.join(parts), encoding='utf-8')


def write_image(root, image_id, sentences, objects):
    entities = root / 'Flickr30kEntities'
    (entities / 'Sentences').mkdir(parents=True, exist_ok=True)
    (entities / 'Annotations').mkdir(parents=True, exist_ok=True)
    (entities / 'Sentences' / ('%d.txt' % image_id)).write_text(''.join(s + '\n' for s in sentences),
                                                                encoding='utf-8')
    write_annotation(entities / 'Annotations' / ('%d.xml' % image_id), objects)


def write_split(root, split, images):
    """images: list of (image_id, detected boxes [n, 4]); rows are stored in
    reverse order to exercise the id -> row mapping."""
    (root / 'Flickr30kEntities').mkdir(parents=True, exist_ok=True)
    (root / 'Flickr30kEntities' / ('%s.txt' % split)).write_text(
        ''.join('%d\n' % image_id for image_id, _ in images))
    rng = np.random.default_rng(0)
    stored = list(reversed(images))
    counts = [len(boxes) for _, boxes in stored]
    ends = np.cumsum(counts)
    pos_boxes = np.stack([ends - counts, ends], 1).astype(np.int32)
    bb = np.concatenate([np.asarray(boxes, dtype=np.float32) for _, boxes in stored], 0)
    with h5py.File(root / ('%s.hdf5' % split), 'w') as h5:
        h5['image_features'] = rng.random((len(bb), V_DIM), dtype=np.float32) + 0.1
        h5['image_bb'] = bb
        h5['spatial_features'] = np.concatenate([bb / 500, (bb[:, 2:] - bb[:, :2]) / 500], 1)
        h5['pos_boxes'] = pos_boxes
    with open(root / ('%s_imgid2idx.pkl' % split), 'wb') as handle:
        pickle.dump({image_id: row for row, (image_id, _) in enumerate(stored)}, handle)


def many_boxes_image():
    """105 detected boxes; the only ones matching [0, 0, 10, 10] are 3 (kept) and 102 (cut)."""
    boxes = [[50 + i, 50, 60 + i, 60] for i in range(105)]
    boxes[3] = [0, 0, 10, 11]
    boxes[102] = [0, 0, 10, 10]
    return boxes


@pytest.fixture()
def flickr_root(tmp_path):
    root = tmp_path / 'flickr30k'
    write_image(root, 100, SENTENCES_100, OBJECTS_100)
    write_image(root, 200, ['[/EN#1/people A child] .'], [(['1'], [0, 0, 10, 10])])
    write_image(root, 300, ['[/EN#1/vehicles A bus] waits .'], [(['1'], [0, 0, 5, 5])])
    write_image(root, 400, ['[/EN#1/instruments A guitar] ?'], [(['1'], [0, 0, 5, 5])])
    # the split file lists 200 first; the features (and imgid2idx) store 100 first
    write_split(root, 'train', [(200, many_boxes_image()), (100, DETECTED_100)])
    write_split(root, 'val', [(300, [[0, 0, 5, 5]])])
    write_split(root, 'test', [(400, [[0, 0, 5, 5]])])
    return root


def make_dictionary(root):
    dictionary = Dictionary()
    for split in flickr_files.SPLITS:
        for image_id in flickr_files.read_split_ids(str(root), split):
            for line in flickr_files.read_sentence_lines(flickr_files.sentence_path(str(root), image_id)):
                dictionary.tokenize(flickr_files.remove_annotations(line), True)
    return dictionary


def load(root, **kwargs):
    return dataset.Flickr30kFeatureDataset('train', make_dictionary(root), dataroot=str(root), **kwargs)


# ----------------------------------------------------------------- parsing

def test_annotation_chains_multi_box_shared_box_and_boxless_objects(flickr_root):
    boxes = flickr_files.parse_annotation_file(str(flickr_root / 'Flickr30kEntities/Annotations/100.xml'))
    assert boxes == {1: [BOX_A, BOX_B], 2: [BOX_HAT], 3: [BOX_HAT]}


def test_sentence_parsing_and_de_annotation():
    sentence, phrases = flickr_files.parse_sentence_line(SENTENCES_100[0], 'x:1')
    assert sentence == 'Two men and a hat near a wall in a park .'
    assert [(p.chain_id, p.types, p.words) for p in phrases] == [
        (1, ['people'], ['Two', 'men']), (2, ['clothing', 'other'], ['a', 'hat']),
        (4, ['other'], ['a', 'wall']), (5, ['scene'], ['a', 'park'])]


def test_entries_skip_boxless_chains_and_empty_sentences(flickr_root, capsys):
    ds = load(flickr_root)
    assert ("note: train split: phrases skipped for lack of boxes, by first type: "
            "{'other': 1, 'scene': 1, 'notvisual': 1, 'animals': 1}") in capsys.readouterr().out
    first = ds.entries[0]
    assert [e['image_id'] for e in ds.entries] == [100, 100, 100, 200]
    assert first['sentence'] == 'Two men and a hat near a wall in a park .'
    assert first['entity_ids'] == [1, 2]                     # wall (nobndbox), park (scene) skipped
    assert first['entity_positions'] == [1, 4]
    assert first['target_indices'] == [[0, 1, 4], [2]]      # both boxes of chain 1; IoU .5 counts
    assert first['entity_types'] == [[0, -1, -1], [1, 7, -1]]
    assert ds.num_ans_candidates == 100 and ds.v_dim == V_DIM


def test_repeated_phrase_alignment_modes(flickr_root):
    original, fixed = load(flickr_root), load(flickr_root, fix_alignment=True)
    assert original.entries[1]['sentence'] == 'a man talks to a man .'
    assert original.entries[1]['entity_positions'] == [1, 1]   # first occurrence, as the original
    assert fixed.entries[1]['entity_positions'] == [1, 5]
    assert original.entries[1]['target_indices'] == [[0, 1, 4], [2]]


def test_comma_and_possessive_quirk_vs_fixed_alignment(flickr_root):
    original, fixed = load(flickr_root), load(flickr_root, fix_alignment=True)
    dictionary = original.dictionary
    tokens = [dictionary.idx2word[i] for i in original.entries[2]['tokens']]
    assert tokens == ['look', 'the', 'man', 'his', 'friend', "'s", 'hat', '.']
    assert original.entries[2]['entity_positions'] == [3, 6, 7]  # word indices: his, hat, '.'
    assert fixed.entries[2]['entity_positions'] == [2, 5, 6]     # man, 's, hat
    for position, last_word in zip(fixed.entries[2]['entity_positions'], ['man', "'s", 'hat']):
        assert tokens[position] == last_word


def test_item_tensors_and_padding_rule(flickr_root):
    ds = load(flickr_root)
    features, spatials, tokens, positions, count, targets, ids, types = ds[0]
    with h5py.File(flickr_root / 'train.hdf5', 'r') as h5:
        start, end = h5['pos_boxes'][0]                      # image 100 is stored first
        assert torch.equal(features, torch.from_numpy(h5['image_features'][start:end]))
        assert torch.equal(spatials, torch.from_numpy(h5['spatial_features'][start:end]))
    assert tokens.shape == (82,) and tokens.dtype == torch.long
    assert tokens[:12].tolist() == [ds.dictionary.word2idx[w] for w in
                                    'two men and a hat near a wall in a park .'.split()]
    assert (tokens[12:] == ds.dictionary.padding_idx).all()
    assert positions.tolist() == [1, 4, 0, 2, 3] + list(range(5, 16))
    assert count.tolist() == [2]
    assert targets.shape == (16, 100)
    assert targets.nonzero().tolist() == [[0, 0], [0, 1], [0, 4], [1, 2]]
    assert ids.tolist() == [1, 2] + [0] * 14
    assert types.tolist() == [[0, -1, -1], [1, 7, -1]]


def test_padding_rule_matches_reference():
    case = torch.load(REFERENCE / 'flickr_case.pt', weights_only=True)
    for row, count in zip(case['e'], case['e_num'][:, 0]):
        assert flickr_files.pad_entity_positions(row[:count].tolist()) == row.tolist()


def test_items_follow_imgid2idx_order_not_the_split_file(flickr_root):
    """As the original: images in the order of <split>_imgid2idx.pkl (the
    TSV order), then each image's captions in file order."""
    mapping = safe_pickle_load(str(flickr_root / 'train_imgid2idx.pkl'))
    assert list(mapping) == [100, 200] and flickr_files.read_split_ids(str(flickr_root), 'train') == [200, 100]
    ds = load(flickr_root)
    assert [(e['image_id'], e['image']) for e in ds.entries] == [(100, 0)] * 3 + [(200, 1)]
    captions = [flickr_files.remove_annotations(line) for line in SENTENCES_100]
    assert [e['sentence'] for e in ds.entries[:3]] == [captions[0], captions[2], captions[3]]


def test_images_over_100_boxes_are_cut(flickr_root, capsys):
    ds = load(flickr_root)
    assert ds.cut_images == 1
    assert '1 images have more than 100 boxes; only their first 100 boxes are used' in capsys.readouterr().out
    features, spatials, *_, targets, _, _ = ds[3]
    assert features.shape == (100, V_DIM) and spatials.shape == (100, 6)
    assert ds.entries[3]['target_indices'] == [[3]]          # box 102 matched but was cut
    assert targets[0].nonzero().flatten().tolist() == [3]
    counts = ds.box_counts()  # what --bucket groups by: boxes the model sees
    assert counts.tolist() == [ds[i][0].shape[0] for i in range(len(ds))]
    assert counts[3] == 100


def test_load_in_memory_gives_same_items(flickr_root):
    lazy, eager = load(flickr_root), load(flickr_root, load_in_memory=True)
    for index in range(len(lazy)):
        for a, b in zip(lazy[index], eager[index]):
            assert torch.equal(a, b)


def test_batches_with_flickr_collate_and_worker(flickr_root):
    ds = load(flickr_root)
    expected_last = ds[3][0]                  # opens the HDF5 file in this process before forking
    batches = list(DataLoader(ds, batch_size=4, collate_fn=flickr_collate, num_workers=1))
    assert len(batches) == 1
    features, spatials, tokens, positions, counts, targets, ids, types = batches[0]
    assert features.shape == (4, 100, V_DIM) and spatials.shape == (4, 100, 6)
    assert (features[0, 6:] == 0).all() and (features[0, :6] != 0).all()
    assert tokens.shape == (4, 82) and positions.shape == (4, 16)
    assert counts.tolist() == [[2], [2], [3], [1]]
    assert targets.shape == (4, 16, 100) and ids.shape == (4, 16)
    assert [t.shape for t in types] == [(2, 3), (2, 3), (3, 3), (1, 3)]
    assert torch.equal(features[3], expected_last)


# ----------------------------------------------------------------- errors

def test_more_than_16_entities_is_an_error(tmp_path):
    root = tmp_path / 'f'
    line = ' '.join('[/EN#%d/other thing%d]' % (i, i) for i in range(1, 18))
    write_image(root, 7, [line], [([str(i)], [0, 0, 5, 5]) for i in range(1, 18)])
    write_split(root, 'train', [(7, [[0, 0, 5, 5]])])
    with pytest.raises(UserError, match=r'Sentences/7\.txt:1: 17 phrases'):
        dataset.Flickr30kFeatureDataset('train', Dictionary(), dataroot=str(root))


@pytest.mark.parametrize('line, message', [
    ('[/EN#1/people A man . ', r'Sentences/7\.txt:2: "\[" at column 1 is never closed'),
    ('A man] .', r'Sentences/7\.txt:2: "\]" without "\["'),
    ('[/EN#x/people A man] .', r'Sentences/7\.txt:2: bad phrase annotation'),
    ('[/EN#1/robots A man] .', r"Sentences/7\.txt:2: unknown entity type 'robots'"),
])
def test_malformed_sentences_name_file_and_line(tmp_path, line, message):
    root = tmp_path / 'f'
    write_image(root, 7, ['[/EN#1/people A man] .', line], [(['1'], [0, 0, 5, 5])])
    write_split(root, 'train', [(7, [[0, 0, 5, 5]])])
    with pytest.raises(UserError, match=message):
        dataset.Flickr30kFeatureDataset('train', Dictionary(), dataroot=str(root))


def test_malformed_xml_names_the_file(tmp_path):
    root = tmp_path / 'f'
    write_image(root, 7, ['[/EN#1/people A man] .'], [(['1'], [0, 0, 5, 5])])
    (root / 'Flickr30kEntities/Annotations/7.xml').write_text('<annotation><object>')
    write_split(root, 'train', [(7, [[0, 0, 5, 5]])])
    with pytest.raises(UserError, match=r'Annotations/7\.xml: malformed XML'):
        dataset.Flickr30kFeatureDataset('train', Dictionary(), dataroot=str(root))


def test_missing_features_name_the_fix(flickr_root):
    (flickr_root / 'train.hdf5').unlink()
    with pytest.raises(UserError, match=r'train\.hdf5.*process_flickr\.sh'):
        load(flickr_root)


# ----------------------------------------------------------------- dictionary

def original_id_set(names):
    """The set the original's converter builds: the ids of the sorted file
    names, added one by one (FORMATS section 7)."""
    image_ids = set()
    for name in sorted(names):
        image_ids.add(int(name[:-len('.jpg')]))
    return image_ids


def words_of_images(root, image_ids):
    """idx2word of a dictionary fed the captions of `image_ids` in order."""
    dictionary = Dictionary()
    for image_id in image_ids:
        for line in flickr_files.read_sentence_lines(flickr_files.sentence_path(str(root), image_id)):
            dictionary.tokenize(flickr_files.remove_annotations(line), True)
    return dictionary.idx2word


def test_create_flickr_dictionary_writes_pickle_and_glove(flickr_root, capsys):
    glove = flickr_root / 'glove.txt'
    glove.write_text('man 1 2 3\nhat 4 5 6\n. 7 8 9\n')
    dictionary = dataset.create_flickr_dictionary(str(flickr_root), str(glove))
    assert 'note: no %s' % (flickr_root / 'flickr30k_images') in capsys.readouterr().out
    word2idx, idx2word = safe_pickle_load(str(flickr_root / 'dictionary.pkl'))
    image_order = list(pickle.loads(pickle.dumps(original_id_set(['100.jpg', '200.jpg', '300.jpg', '400.jpg']))))
    assert image_order != [200, 100, 300, 400]  # not the split files' order
    assert idx2word == words_of_images(flickr_root, image_order)
    assert word2idx == dictionary.word2idx and idx2word == dictionary.idx2word
    weights = np.load(flickr_root / 'glove6b_init_3d.npy')
    assert weights.shape == (len(idx2word), 3)
    assert weights[word2idx['hat']].tolist() == [4, 5, 6]
    assert weights[word2idx['man']].tolist() == [1, 2, 3]
    assert not weights[word2idx['two']].any()


# ids whose set changes iteration order when pickled and loaded back
ORDER_IDS = (137, 155, 181, 187, 26, 38, 80)
ORDER_SPLITS = {'train': [187, 181, 155, 137, 80], 'val': [38], 'test': [26]}


@pytest.fixture()
def order_root(tmp_path):
    """One word per image (`w<id>`); split files in decreasing id order."""
    root = tmp_path / 'flickr30k'
    for image_id in ORDER_IDS:
        write_image(root, image_id, ['[/EN#1/people W%d] .' % image_id], [(['1'], [0, 0, 5, 5])])
    for split, image_ids in ORDER_SPLITS.items():
        (root / 'Flickr30kEntities' / ('%s.txt' % split)).write_text(''.join('%d\n' % i for i in image_ids))
    return root


def dictionary_words(root):
    return dataset.create_flickr_dictionary(str(root), 'kumo').idx2word


@pytest.fixture()
def no_glove(monkeypatch):
    """create_flickr_dictionary without GloVe: zero rows of width 2."""
    monkeypatch.setattr(dataset, 'create_glove_embedding_init', lambda words, path: (np.zeros((len(words), 2)), {}))


def test_dictionary_follows_the_unpickled_ids_files(order_root, no_glove, capsys):
    sets = {'train': [80, 38, 137, 155, 181, 187, 26], 'val': [38, 26], 'test': [26, 137]}
    expected_ids = []
    for split, insertion in sets.items():  # train, val, test, as the original
        image_ids = set()
        for image_id in insertion:
            image_ids.add(image_id)
        data = pickle.dumps(image_ids, protocol=2)
        (order_root / ('%s_ids.pkl' % split)).write_bytes(data)
        expected_ids += [i for i in pickle.loads(data) if i not in expected_ids]
    split_order = ORDER_SPLITS['train'] + ORDER_SPLITS['val'] + ORDER_SPLITS['test']
    assert expected_ids != split_order and expected_ids != sorted(expected_ids)
    assert dictionary_words(order_root) == words_of_images(order_root, expected_ids)
    assert 'note:' not in capsys.readouterr().out


def test_dictionary_without_ids_files_uses_the_image_names(order_root, no_glove, capsys):
    names = ['%d.jpg' % i for i in ORDER_IDS]
    built = original_id_set(names)
    expected_ids = list(pickle.loads(pickle.dumps(built)))  # the builder reads the pickled set back
    split_order = ORDER_SPLITS['train'] + ORDER_SPLITS['val'] + ORDER_SPLITS['test']
    assert len({tuple(expected_ids), tuple(built), tuple(sorted(built)), tuple(split_order)}) == 4
    without_images = dictionary_words(order_root)
    assert 'note: no %s' % (order_root / 'flickr30k_images') in capsys.readouterr().out
    (order_root / 'flickr30k_images').mkdir()
    for name in names + ['results.csv']:
        (order_root / 'flickr30k_images' / name).write_bytes(b'')
    with_images = dictionary_words(order_root)
    assert 'note:' not in capsys.readouterr().out
    assert with_images == without_images == words_of_images(order_root, expected_ids)
    assert not list(order_root.glob('*_ids.pkl'))  # only the converter writes them


def test_converter_writes_the_missing_ids_files(order_root, no_glove):
    from tools import adaptive_detection_features_converter as converter
    before = dictionary_words(order_root)
    (order_root / 'test_ids.pkl').write_bytes(pickle.dumps({26, 38}))
    converter.write_flickr_id_sets(str(order_root), flickr_files.SPLITS, log=lambda message: None)
    for split in ('train', 'val'):
        data = (order_root / ('%s_ids.pkl' % split)).read_bytes()
        assert data == pickle.dumps(original_id_set(['%d.jpg' % i for i in ORDER_IDS]), protocol=PICKLE_PROTOCOL)
    assert pickle.loads((order_root / 'test_ids.pkl').read_bytes()) == {26, 38}  # kept
    assert dictionary_words(order_root) == before  # train's file holds every image, in the same order


@pytest.mark.parametrize('content, message', [
    ({'26': 1}, 'expected a pickled set of integer image ids, found dict'),
    ({26, '38'}, 'expected a pickled set of integer image ids, found set'),
])
def test_bad_ids_file_is_named(order_root, no_glove, content, message):
    (order_root / 'val_ids.pkl').write_bytes(pickle.dumps(content))
    with pytest.raises(UserError, match=r'val_ids\.pkl: %s; delete it' % message):
        dictionary_words(order_root)


def test_non_id_jpg_name_is_named(order_root, no_glove):
    (order_root / 'flickr30k_images').mkdir()
    (order_root / 'flickr30k_images' / 'cover.jpg').write_bytes(b'')
    with pytest.raises(UserError, match=r'flickr30k_images: cover\.jpg is not named <image id>\.jpg'):
        dictionary_words(order_root)


# ----------------------------------------------------------------- loss and recall

def test_loss_and_recall_match_reference():
    case = torch.load(REFERENCE / 'flickr_case.pt', weights_only=True)
    loss = grounding.grounding_loss(case['att_logits'], case['e_num'], case['target'])
    assert abs(loss.item() - case['loss'].item()) <= 1e-5 * abs(case['loss'].item())
    logits, labels = grounding.merge_entity_logits(case['att_logits'], case['e_num'], case['target'])
    assert logits.shape == (case['entities'], case['att_logits'].size(2))
    hits = grounding.recall_hits(logits, labels, (1, 5, 10))
    assert hits == dict(zip((1, 5, 10), (int(h) for h in case['recall_hits_at_1_5_10'])))
    assert grounding.top_k_hits(logits, labels, 5).sum().item() == hits[5]
    assert grounding.entities_with_target(labels) == int((labels.sum(1) > 0).sum())


def test_merge_order_and_recall_by_type():
    att = torch.full((2, 1, 3, 16), -99.0)
    att[0, 0, :, 0] = torch.tensor([0.9, 0.1, 0.0])    # sample 0, entity 0: top box 0
    att[0, 0, :, 1] = torch.tensor([0.0, 0.2, 0.8])    # sample 0, entity 1: top box 2
    att[1, 0, :, 0] = torch.tensor([0.3, 0.2, 0.1])    # sample 1, entity 0: top box 0
    e_num = torch.tensor([[2], [1]])
    targets = torch.zeros(2, 16, 100)
    targets[0, 0, 0] = 1                                 # hit at 1
    targets[0, 1, 1] = 1                                 # hit at 2 only
    targets[1, 0, 2] = 1                                 # hit at 3 only
    logits, labels = grounding.merge_entity_logits(att, e_num, targets)
    assert torch.equal(logits, torch.tensor([[0.9, 0.1, 0.0], [0.0, 0.2, 0.8], [0.3, 0.2, 0.1]]))
    assert labels.argmax(1).tolist() == [0, 1, 2]
    assert grounding.recall_hits(logits, labels, (1, 2, 10)) == {1: 1, 2: 2, 10: 3}
    assert grounding.top_k_hits(logits, labels, 2).tolist() == [True, True, False]
    assert grounding.entities_with_target(labels) == 3
    types = torch.cat([torch.tensor([[0, 1, -1], [1, -1, -1]]), torch.tensor([[3, -1, -1]])])
    by_type = grounding.recall_hits_by_type(logits, labels, types, (1, 2))
    assert by_type['people'] == {'entities': 1, 'hits': {1: 1, 2: 1}, 'upper_bound': 1}
    assert by_type['clothing'] == {'entities': 2, 'hits': {1: 1, 2: 2}, 'upper_bound': 2}
    assert by_type['animals'] == {'entities': 1, 'hits': {1: 0, 2: 0}, 'upper_bound': 1}
    assert by_type['other']['entities'] == 0
