"""BAN models: VQA (bilinear attention + residual glimpses + counter) and
Flickr30k Entities grounding, with the settings that fix their shape.

`ModelConfig` holds those settings (the model flags and the sizes of the
data); `build_model(config)` is the one way every CLI builds a model, and our
checkpoints save `config` beside the weights. `build_ban(dataset, num_hid,
op, gamma, task)` is the original's entry point: the dataset supplies the
vocabulary size, the feature width and the answer count.
"""
from dataclasses import asdict, dataclass, fields

import torch.nn as nn

from attention import BiAttention
from bc import BCNet
from classifier import SimpleClassifier
from counting import Counter
from fc import FCNet
from language_model import QuestionEmbedding, WordEmbedding
from utils import UserError

COUNTER_OBJECTS = 10  # boxes the counter looks at (the original's "minimum number of boxes")
FLICKR_MASK_VALUE = -99.0  # what the grounding model writes into masked logits


def _accept_dataparallel_keys(module, state_dict, prefix, *args):
    """load_state_dict pre-hook: released checkpoints were saved from a
    DataParallel wrapper, so every key carries `module.`; accept both forms."""
    own = [key for key in state_dict if key.startswith(prefix)]
    if own and all(key.startswith(prefix + 'module.') for key in own):
        for key in own:
            state_dict[prefix + key[len(prefix) + len('module.'):]] = state_dict.pop(key)


class _BanBase(nn.Module):
    """The question encoder and bilinear attention both models start with
    (registered first: their order fixes the state-dict and optimizer order)."""

    def __init__(self, w_emb, q_emb, v_att, op, glimpse):
        super().__init__()
        self.register_load_state_dict_pre_hook(_accept_dataparallel_keys)
        self.op = op
        self.glimpse = glimpse
        self.w_emb = w_emb
        self.q_emb = q_emb
        self.v_att = v_att


class BanModel(_BanBase):
    """BAN for VQA.

    forward(v [B,N,v_dim], b [B,N,6], q [B,L], labels) -> (logits [B,n_ans], att [B,G,N,L]).
    Each glimpse g pools a joint feature with its attention map, projects it
    and the counter's output for that map, and adds both to every question
    step (residual learning of attention); the classifier reads the sum over steps.
    """

    def __init__(self, w_emb, q_emb, v_att, b_net, q_prj, c_prj, classifier, counter, op, glimpse):
        super().__init__(w_emb, q_emb, v_att, op, glimpse)
        self.b_net = nn.ModuleList(b_net)
        self.q_prj = nn.ModuleList(q_prj)
        self.c_prj = nn.ModuleList(c_prj)
        self.classifier = classifier
        self.counter = counter

    def forward(self, v, b, q, labels=None):
        w_emb = self.w_emb(q)  # [B,L,D]
        q_emb = self.q_emb.forward_all(w_emb)  # [B,L,H]
        boxes = b[:, :, :4].transpose(1, 2)  # [B,4,N]
        att, logits = self.v_att.forward_all(v, q_emb)  # [B,G,N,L] each
        for g in range(self.glimpse):
            joint = self.b_net[g].forward_with_weights(v, q_emb, att[:, g])  # [B,H]
            box_scores = logits[:, g].max(2)[0]  # [B,N] (-inf for padded boxes)
            count = self.counter(boxes, box_scores)  # [B,objects+1]
            q_emb = self.q_prj[g](joint.unsqueeze(1)) + q_emb  # [B,L,H]
            q_emb = q_emb + self.c_prj[g](count).unsqueeze(1)  # [B,L,H]
        logits = self.classifier(q_emb.sum(1))  # [B,n_ans]
        return logits, att


class BanModelFlickr(_BanBase):
    """BAN for phrase grounding.

    forward(v [B,N,v_dim], b, q [B,L], e [B,E] entity positions, labels)
    -> (None, att_logits [B,G,N,E]): the attention logits of every box for the
    word at each entity position. Padded boxes and entity slots whose position
    is 0 (the padding rule fills unused slots from index 0 upwards) read
    exactly -99, as in the original, except slot 0, which is never masked: a
    sentence has at least one entity, and a first phrase that is the
    sentence's first word sits at position 0.
    """

    def forward(self, v, b, q, e, labels=None):
        w_emb = self.w_emb(q)  # [B,L,D]
        q_emb = self.q_emb.forward_all(w_emb)  # [B,L,H]
        logits = self.v_att.masked_logits(v, q_emb, mask_with=FLICKR_MASK_VALUE)  # [B,G,N,L]
        batch, glimpse, num_boxes, _ = logits.shape
        index = e[:, None, None, :].expand(batch, glimpse, num_boxes, e.size(1))  # [B,G,N,E]
        att_logits = logits.gather(3, index)  # [B,G,N,E]
        unused = e == 0  # [B,E] slots the padding rule filled with position 0
        unused[:, 0] = False  # slot 0 is always a real entity (the original: "at least one entity per sentence")
        att_logits = att_logits.masked_fill(unused[:, None, None, :], FLICKR_MASK_VALUE)
        return None, att_logits


# Kept so code written against the original's class name keeps working.
BanModel_flickr = BanModelFlickr


# The CLI flags a saved config answers (the --flag names are the field names).
MODEL_FLAGS = ('task', 'model', 'num_hid', 'gamma', 'op', 'emb_dim')
CHOICES = {'task': ('vqa', 'flickr'), 'op': ('', 'c'), 'model': ('ban',)}


@dataclass(frozen=True)
class ModelConfig:
    """Everything `build_model` needs: the model flags and the sizes of the data
    the model was built for."""
    task: str  # 'vqa' or 'flickr'
    num_hid: int  # hidden size
    gamma: int  # glimpses
    op: str  # 'c': a second, tf-idf embedding table; '': none
    emb_dim: int  # GloVe width
    ntoken: int  # dictionary words (the padding index)
    v_dim: int  # region feature width
    num_answers: int  # answer vocabulary (vqa), boxes per image (flickr)
    model: str = 'ban'

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, data, source):
        """The config saved in the checkpoint `source`; a damaged one is a UserError."""
        fix = 'the file is damaged; re-save it, or delete its "config" entry to load it from the flags'
        if not isinstance(data, dict):
            raise UserError('%s: "config" is %s, not a dict; %s' % (source, type(data).__name__, fix))
        values = {}
        for field in fields(cls):
            if field.name not in data:
                raise UserError('%s: "config" has no "%s"; %s' % (source, field.name, fix))
            value = data[field.name]
            if field.type is int and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise UserError('%s: "config" %s is %r, not a positive integer; %s' % (source, field.name, value, fix))
            if field.type is str and value not in CHOICES[field.name]:
                raise UserError('%s: "config" %s is %r, not one of %s; %s'
                                % (source, field.name, value, ', '.join(repr(c) for c in CHOICES[field.name]), fix))
            values[field.name] = value
        return cls(**values)

    @classmethod
    def from_flags(cls, args, task, ntoken, v_dim, num_answers, emb_dim=None):
        """The config of the flags in `args` for data of these sizes:
        vocabulary, feature width and answers; `emb_dim` overrides --emb_dim."""
        return cls(task=task, num_hid=args.num_hid, gamma=args.gamma, op=args.op,
                   emb_dim=emb_dim or getattr(args, 'emb_dim', 300), ntoken=ntoken, v_dim=v_dim,
                   num_answers=num_answers, model=getattr(args, 'model', 'ban'))


def build_model(config):
    """BAN of `config`, freshly initialised; it keeps `config` as
    `model.config`, which the checkpoints save.

    w_emb: GloVe rows [ntoken+1, emb_dim] (op 'c': a second, tf-idf table beside them);
    q_emb: a one-layer GRU of width num_hid; v_att: `gamma` bilinear attention
    maps over v_dim-wide regions; VQA adds per glimpse a bilinear pooling,
    a projection and a counter projection, then the classifier.
    """
    if config.model != 'ban':
        raise UserError('--model %s is unknown (the only model is "ban")' % config.model)
    w_emb = WordEmbedding(config.ntoken, config.emb_dim, .0, config.op)
    q_emb = QuestionEmbedding(config.emb_dim * (2 if 'c' in config.op else 1), config.num_hid, 1, False, .0)
    v_att = BiAttention(config.v_dim, config.num_hid, config.num_hid, config.gamma)
    if config.task == 'vqa':
        b_net, q_prj, c_prj = [], [], []
        for _ in range(config.gamma):
            b_net.append(BCNet(config.v_dim, config.num_hid, config.num_hid, None, k=1))
            q_prj.append(FCNet([config.num_hid, config.num_hid], '', .2))
            c_prj.append(FCNet([COUNTER_OBJECTS + 1, config.num_hid], 'ReLU', .0))
        classifier = SimpleClassifier(config.num_hid, config.num_hid * 2, config.num_answers, .5)
        counter = Counter(COUNTER_OBJECTS)
        model = BanModel(w_emb, q_emb, v_att, b_net, q_prj, c_prj, classifier, counter, config.op, config.gamma)
    elif config.task == 'flickr':
        model = BanModelFlickr(w_emb, q_emb, v_att, config.op, config.gamma)
    else:
        raise ValueError('unknown task %r (expected vqa or flickr)' % config.task)
    model.config = config
    return model


def build_ban(dataset, num_hid, op='', gamma=4, task='vqa', emb_dim=300):
    """The original's builder: BAN for `dataset` (a VQAFeatureDataset,
    VisualGenomeFeatureDataset or Flickr30kFeatureDataset, or anything with
    `.dictionary.ntoken`, `.v_dim` and `.num_ans_candidates`).
    `emb_dim` is the GloVe width (300 in the paper; the demo uses 50)."""
    return build_model(ModelConfig(task=task, num_hid=num_hid, gamma=gamma, op=op, emb_dim=emb_dim,
                                   ntoken=dataset.dictionary.ntoken, v_dim=dataset.v_dim,
                                   num_answers=dataset.num_ans_candidates))


def unwrap(model):
    """The BAN model inside a DataParallel / DistributedDataParallel / compiled wrapper."""
    while hasattr(model, 'module') or hasattr(model, '_orig_mod'):
        model = getattr(model, 'module', None) or getattr(model, '_orig_mod')
    return model


def checkpoint_state(model):
    """State dict in the released layout (`module.` prefix, weight_g/weight_v)."""
    return {'module.' + key: value for key, value in unwrap(model).state_dict().items()}


__all__ = ['BanModel', 'BanModelFlickr', 'BanModel_flickr', 'ModelConfig', 'build_model', 'build_ban', 'unwrap',
           'checkpoint_state']
