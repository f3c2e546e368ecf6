"""BAN models: VQA (bilinear attention + residual glimpses + counter) and
Flickr30k Entities grounding, built by `build_ban`."""
import torch.nn as nn

from attention import BiAttention
from bc import BCNet
from classifier import SimpleClassifier
from counting import Counter
from fc import FCNet
from language_model import QuestionEmbedding, WordEmbedding

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


def build_ban(ntoken, v_dim, num_answers, num_hid, op='', gamma=4, task='vqa', emb_dim=300):
    """Build BAN for a vocabulary of `ntoken` words, region features of width
    `v_dim` and `num_answers` answers (unused by the Flickr30k model).
    `emb_dim` is the GloVe width (300 in the paper; the demo uses 50)."""
    w_emb = WordEmbedding(ntoken, emb_dim, .0, op)
    q_emb = QuestionEmbedding(emb_dim * (2 if 'c' in op else 1), num_hid, 1, False, .0)
    v_att = BiAttention(v_dim, num_hid, num_hid, gamma)
    if task == 'vqa':
        b_net, q_prj, c_prj = [], [], []
        for _ in range(gamma):
            b_net.append(BCNet(v_dim, num_hid, num_hid, None, k=1))
            q_prj.append(FCNet([num_hid, num_hid], '', .2))
            c_prj.append(FCNet([COUNTER_OBJECTS + 1, num_hid], 'ReLU', .0))
        classifier = SimpleClassifier(num_hid, num_hid * 2, num_answers, .5)
        counter = Counter(COUNTER_OBJECTS)
        return BanModel(w_emb, q_emb, v_att, b_net, q_prj, c_prj, classifier, counter, op, gamma)
    if task == 'flickr':
        return BanModelFlickr(w_emb, q_emb, v_att, op, gamma)
    raise ValueError('unknown task %r (expected vqa or flickr)' % task)


def unwrap(model):
    """The BAN model inside a DataParallel / DistributedDataParallel / compiled wrapper."""
    while hasattr(model, 'module') or hasattr(model, '_orig_mod'):
        model = getattr(model, 'module', None) or getattr(model, '_orig_mod')
    return model


def checkpoint_state(model):
    """State dict in the released layout (`module.` prefix, weight_g/weight_v)."""
    return {'module.' + key: value for key, value in unwrap(model).state_dict().items()}


__all__ = ['BanModel', 'BanModelFlickr', 'BanModel_flickr', 'build_ban', 'unwrap',
           'checkpoint_state']
