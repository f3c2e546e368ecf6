"""The settings that fix a BAN model's shape, saved with its weights.

Our checkpoints carry `"config": ModelConfig.to_dict()` beside the
original's three keys, so every CLI builds the model a checkpoint holds
without being told its flags again. The original's checkpoints have no
config: they are built from the flags, whose defaults are the released
model's settings.

A flag given on the command line that contradicts the checkpoint's config
is an error naming both values: the weights only load into the model they
were trained as.
"""
import argparse
import zipfile
from dataclasses import asdict, dataclass, fields

import torch

import base_model
from utils import UserError, note

# The CLI flags a saved config answers (the --flag names are the field names).
MODEL_FLAGS = ('task', 'model', 'num_hid', 'gamma', 'op', 'emb_dim')
CHOICES = {'task': ('vqa', 'flickr'), 'op': ('', 'c'), 'model': ('ban',)}


@dataclass(frozen=True)
class ModelConfig:
    """Everything `build` needs: the model flags and the sizes of the data
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


def build(config):
    """BAN of `config`, freshly initialised; it keeps `config` as
    `model.config`, which save_checkpoint writes."""
    if config.model != 'ban':
        raise UserError('--model %s is unknown (the only model is "ban")' % config.model)
    model = base_model.build_ban(config.ntoken, config.v_dim, config.num_answers, config.num_hid, config.op,
                                 config.gamma, config.task, emb_dim=config.emb_dim)
    model.config = config
    return model


def saved_config(checkpoint, source):
    """The ModelConfig of a loaded checkpoint dict, or None (the original's checkpoints)."""
    if 'config' not in checkpoint:
        return None
    return ModelConfig.from_dict(checkpoint['config'], source)


def read_saved_config(path):
    """The ModelConfig saved in the checkpoint file at `path`, read without
    loading the weights; None for a checkpoint without one (the original's:
    those are not zip files) or a file that does not load (the full load
    then names the problem)."""
    if not zipfile.is_zipfile(path):
        return None
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=True, mmap=True)
    except Exception:  # corrupt or foreign: checkpoints.load_checkpoint reports it
        return None
    return saved_config(checkpoint, path) if isinstance(checkpoint, dict) else None


def parse_args(parser, argv=None):
    """parser.parse_args(argv), noting in `args.given_flags` which of
    MODEL_FLAGS the command line gave (a flag given with its default value
    counts as given)."""
    unset = object()
    args = parser.parse_args(argv, namespace=argparse.Namespace(**{name: unset for name in MODEL_FLAGS}))
    args.given_flags = frozenset(name for name in MODEL_FLAGS if getattr(args, name) is not unset)
    for name in MODEL_FLAGS:
        if name not in args.given_flags:
            setattr(args, name, parser.get_default(name))
    return args


def adopt(args, config, source):
    """Set the model flags in `args` to `config`'s (the checkpoint `source`
    was trained with); a flag the command line gave with another value is a
    UserError naming both. Returns the names of the flags that changed."""
    given = getattr(args, 'given_flags', frozenset())
    conflicts = ['--%s %s (it was trained with --%s %s)' % (name, _shown(getattr(args, name)), name,
                                                           _shown(getattr(config, name)))
                 for name in MODEL_FLAGS if name in given and getattr(args, name) != getattr(config, name)]
    if conflicts:
        raise UserError('%s cannot be loaded with %s: its weights fit only the settings saved in it; drop %s'
                        % (source, ', '.join(conflicts), 'those flags' if len(conflicts) > 1 else 'the flag'))
    changed = [name for name in MODEL_FLAGS if getattr(args, name) != getattr(config, name)]
    for name in MODEL_FLAGS:
        setattr(args, name, getattr(config, name))
    return changed


def adopt_from_file(args, path):
    """`adopt` the config saved in the checkpoint file `path`, if any,
    printing a note when that changed a flag's value. Returns the config."""
    config = read_saved_config(path)
    if config is not None:
        changed = adopt(args, config, path)
        if changed:
            note('settings saved in %s: %s' % (path, ' '.join('--%s %s' % (name, _shown(getattr(config, name)))
                                                                     for name in changed)))
    return config


def check_data(config, wanted, source, dataroot):
    """The checkpoint `source` (of `config`) must fit the data under
    `dataroot`, for which the model `wanted` is built: the same dictionary,
    features and answers. Otherwise a UserError names what differs."""
    vqa = config.task == 'vqa'
    sizes = (('ntoken', 'a dictionary of %d words', 'the dictionary of --dataroot %s has %d'),
             ('v_dim', 'features of width %d', 'the features of --dataroot %s have width %d'),
             ('num_answers', '%d answers' if vqa else '%d boxes per image',
              'the answer vocabulary of --dataroot %s has %d' if vqa else '--dataroot %s has %d'))
    for name, trained, found in sizes:
        if getattr(config, name) != getattr(wanted, name):
            raise UserError('%s was trained with %s, but %s; pass the --dataroot it was trained on'
                            % (source, trained % getattr(config, name), found % (dataroot, getattr(wanted, name))))


def _shown(value):
    return "''" if value == '' else str(value)
