"""Word embedding (GloVe-initialised, optional tf-idf table) and GRU question encoder."""
import numpy as np
import torch
import torch.nn as nn

from utils import UserError


class WordEmbedding(nn.Module):
    """Embedding of ntoken words plus a padding row (index ntoken).

    With 'c' in `op` a second table `emb_` of the same size is concatenated
    (giving 2*emb_dim features), initialised with the tf-idf-weighted GloVe
    mixture (FORMATS §6). It is created frozen; as in the original,
    init_embedding makes it trainable whenever a tf-idf matrix is given (the
    default recipe), so it is trained and has an entry in the optimizer
    state. Without tf-idf it stays a frozen copy of the GloVe rows.
    """

    def __init__(self, ntoken, emb_dim, dropout, op=''):
        super().__init__()
        self.op = op
        self.ntoken = ntoken
        self.emb_dim = emb_dim
        self.emb = nn.Embedding(ntoken + 1, emb_dim, padding_idx=ntoken)
        if 'c' in op:
            self.emb_ = nn.Embedding(ntoken + 1, emb_dim, padding_idx=ntoken)
            self.set_table_trainable(False)
        self.dropout = nn.Dropout(dropout)

    def set_table_trainable(self, trainable):
        """Train the tf-idf table `emb_` (op 'c') or keep it frozen."""
        self.emb_.weight.requires_grad_(trainable)

    def init_embedding(self, np_file, tfidf=None, tfidf_weights=None):
        """Load GloVe rows [ntoken, emb_dim] from `np_file`; with `tfidf`
        [ntoken, ntoken + n_new] and `tfidf_weights` [n_new, emb_dim] the table
        `emb_` gets tfidf @ [glove; tfidf_weights] and becomes trainable."""
        weight_init = torch.from_numpy(np.load(np_file)).float()  # [ntoken, D]
        if tuple(weight_init.shape) != (self.ntoken, self.emb_dim):
            raise UserError('%s holds a %s embedding matrix but the dictionary has %d words of %d '
                            'dims; re-run tools/create_dictionary.py for this dictionary'
                            % (np_file, tuple(weight_init.shape), self.ntoken, self.emb_dim))
        with torch.no_grad():
            self.emb.weight[:self.ntoken] = weight_init
            if 'c' in self.op:
                table_init = weight_init
                if tfidf is not None:
                    if tfidf_weights is not None and tfidf_weights.size > 0:
                        extra = torch.from_numpy(np.asarray(tfidf_weights, dtype=np.float32))
                        table_init = torch.cat([weight_init, extra], 0)  # [ntoken + n_new, D]
                    table_init = tfidf.float().matmul(table_init)  # [ntoken, D]
                self.emb_.weight[:self.ntoken] = table_init
        if 'c' in self.op:
            self.set_table_trainable(tfidf is not None)

    def forward(self, x):
        emb = self.emb(x)  # [B,L,D]
        if 'c' in self.op:
            emb = torch.cat((emb, self.emb_(x)), 2)  # [B,L,2D]
        return self.dropout(emb)


class QuestionEmbedding(nn.Module):
    """A (uni- or bi-directional) GRU over the word embeddings, from a zero state."""

    def __init__(self, in_dim, num_hid, nlayers, bidirect, dropout):
        super().__init__()
        self.rnn = nn.GRU(in_dim, num_hid, nlayers, bidirectional=bidirect, dropout=dropout,
                          batch_first=True)
        self.in_dim = in_dim
        self.num_hid = num_hid
        self.nlayers = nlayers
        self.ndirections = 1 + int(bidirect)

    def forward_all(self, x):
        """Hidden state at every step: x [B,L,in_dim] -> [B,L,num_hid*ndirections]."""
        output, _ = self.rnn(x)  # zero initial state, as the original's init_hidden
        # batch_first output is a transposed view; linear layers on a strided 3-d
        # input fall back to a batched matmul with an expanded weight (slower)
        return output.contiguous()  # [B,L,H]
