"""Where each file lives under a data root (FORMATS.md): the one place that
names them. Readers, writers and the tools take their paths from here."""
import os

CACHE = 'cache'


def task_root(dataroot, task):
    """VQA files live in <dataroot>, Flickr30k Entities in <dataroot>/flickr30k."""
    return os.path.join(dataroot, 'flickr30k') if task == 'flickr' else dataroot


def dictionary_file(root):
    return os.path.join(root, 'dictionary.pkl')


def glove_init_file(root, dim):
    """The GloVe rows of the dictionary's words, written by tools/create_dictionary.py."""
    return os.path.join(root, 'glove6b_init_%dd.npy' % dim)


def glove_text_file(dataroot, dim=300):
    return os.path.join(dataroot, 'glove', 'glove.6B.%dd.txt' % dim)


def _subtype(name):
    """train -> train2014, val -> val2014; test2015 and test-dev2015 stay."""
    return name if name.startswith('test') else name + '2014'


def question_path(dataroot, name):
    return os.path.join(dataroot, 'v2_OpenEnded_mscoco_%s_questions.json' % _subtype(name))


def annotation_path(dataroot, name):
    """VQA 2.0 ships train and val annotations; the demo data also has test2015's."""
    return os.path.join(dataroot, 'v2_mscoco_%s_annotations.json' % _subtype(name))


def answer_cache_files(dataroot):
    """(trainval_ans2label.pkl, trainval_label2ans.pkl) written by tools/compute_softscore.py."""
    cache = os.path.join(dataroot, CACHE)
    return os.path.join(cache, 'trainval_ans2label.pkl'), os.path.join(cache, 'trainval_label2ans.pkl')


def target_file(dataroot, name):
    """cache/{name}_target.pkl: the soft-score targets of split `name`."""
    return os.path.join(dataroot, CACHE, '%s_target.pkl' % name)


def feature_files(dataroot, split, adaptive=True):
    """({split}.hdf5, {split}_imgid2idx.pkl), or the fixed-36 {split}36.* pair."""
    stem = os.path.join(dataroot, split + ('' if adaptive else '36'))
    return stem + '.hdf5', stem + '_imgid2idx.pkl'
