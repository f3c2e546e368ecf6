"""Settings travel with the model: ModelConfig in our checkpoints, the flags
given on the command line, and which checkpoint --input/--epoch name."""
import os
import time

import pytest
import torch

import base_model
from base_model import ModelConfig
from runs import checkpoints
from runs.checkpoints import load_checkpoint
from runs.flags import FlagParser, add_model_flags
from utils import UserError

CONFIG = ModelConfig(task='vqa', num_hid=16, gamma=2, op='c', emb_dim=8, ntoken=7, v_dim=16, num_answers=6)


def sizes(ntoken=7, v_dim=16, num_answers=6):
    """The data sizes build_model takes: vocabulary, feature width, answers."""
    return ntoken, v_dim, num_answers


def parser():
    made = FlagParser()
    add_model_flags(made)
    return made


def flags(*argv):
    return parser().parse(list(argv))


# ----------------------------------------------------------------- ModelConfig

def test_config_round_trips_through_a_dict():
    assert ModelConfig.from_dict(CONFIG.to_dict(), 'x.pth') == CONFIG


@pytest.mark.parametrize('edit, message', [
    (lambda d: d.pop('gamma'), 'x.pth: "config" has no "gamma"'),
    (lambda d: d.update(num_hid='16'), "x.pth: \"config\" num_hid is '16', not a positive integer"),
    (lambda d: d.update(op='q'), "x.pth: \"config\" op is 'q', not one of '', 'c'"),
])
def test_a_damaged_config_names_the_file_and_the_field(edit, message):
    data = CONFIG.to_dict()
    edit(data)
    with pytest.raises(UserError, match='^' + message.replace('(', r'\(').replace(')', r'\)')):
        ModelConfig.from_dict(data, 'x.pth')


def test_config_of_the_flags_and_the_data():
    args = flags('--num_hid', '16', '--gamma', '2', '--emb_dim', '8')
    assert ModelConfig.from_flags(args, 'vqa', *sizes()) == CONFIG


def test_saved_checkpoints_keep_the_original_keys_and_add_the_config(tmp_path):
    model = base_model.build_model(ModelConfig.from_flags(flags('--num_hid', '16', '--gamma', '2', '--emb_dim', '8'), 'vqa', *sizes()))
    optimizer = torch.optim.Adamax(model.parameters())
    path = str(tmp_path / 'model_epoch1.pth')
    checkpoints.save_checkpoint(path, model, optimizer, 1, {'best_eval_score': 3.0})
    saved = torch.load(path, weights_only=True)
    assert list(saved)[:3] == ['epoch', 'model_state', 'optimizer_state'] and saved['epoch'] == 1
    assert saved['config'] == CONFIG.to_dict()
    assert checkpoints.saved_config(checkpoints.peek(path), path) == CONFIG


def test_the_saved_config_builds_the_model_whatever_the_default_flags_say(tmp_path):
    model = base_model.build_model(CONFIG)
    path = str(tmp_path / 'model.pth')
    checkpoints.save_checkpoint(path, model, torch.optim.Adamax(model.parameters()), 0)
    loaded, _ = checkpoints.model_from_checkpoint(flags(), 'vqa', path, torch.device('cpu'), *sizes())  # 1280, 8, 300
    assert loaded.config == CONFIG
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


@pytest.mark.parametrize('data, message', [
    (sizes(ntoken=9), 'was trained with a dictionary of 7 words, but the dictionary of --dataroot data has 9'),
    (sizes(v_dim=32), 'was trained with features of width 16, but the features of --dataroot data have width 32'),
    (sizes(num_answers=5), 'was trained with 6 answers, but the answer vocabulary of --dataroot data has 5'),
])
def test_a_checkpoint_of_other_data_names_both_sizes(tmp_path, data, message):
    model = base_model.build_model(CONFIG)
    path = str(tmp_path / 'model.pth')
    checkpoints.save_checkpoint(path, model, torch.optim.Adamax(model.parameters()), 0)
    with pytest.raises(UserError, match=message):
        checkpoints.model_from_checkpoint(flags('--dataroot', 'data'), 'vqa', path, torch.device('cpu'), *data)


def test_a_checkpoint_without_config_is_read_as_before(tmp_path):
    """The original's checkpoints have no config: the model comes from the flags."""
    model = base_model.build_model(CONFIG)
    path = str(tmp_path / 'model_epoch12.pth')
    torch.save({'epoch': 12, 'model_state': {'module.' + k: v for k, v in model.state_dict().items()},
                'optimizer_state': {}}, path)
    assert checkpoints.saved_config(checkpoints.peek(path), path) is None
    with pytest.raises(UserError, match='does not fit this model'):
        checkpoints.model_from_checkpoint(flags(), 'vqa', path, torch.device('cpu'), *sizes())
    loaded, _ = checkpoints.model_from_checkpoint(flags('--num_hid', '16', '--gamma', '2'), 'vqa', path,
                                                  torch.device('cpu'), *sizes())
    assert loaded.config == CONFIG  # emb_dim 8 read from the weights, as before


# ----------------------------------------------------------------- flags given or not

def test_flags_given_on_the_command_line_are_told_apart_from_defaults():
    args = flags('--num_hid', '1280', '--op', '')
    assert args.given_flags == {'num_hid', 'op'}
    assert (args.num_hid, args.op, args.gamma, args.task, args.emb_dim) == (1280, '', 8, 'vqa', 300)


def test_the_config_replaces_flags_not_given():
    args = flags('--dataroot', 'x')
    assert checkpoints.adopt(args, CONFIG, 'm.pth') == ['num_hid', 'gamma', 'emb_dim']
    assert (args.num_hid, args.gamma, args.op, args.emb_dim, args.task) == (16, 2, 'c', 8, 'vqa')


def test_a_given_flag_that_contradicts_the_config_is_an_error_naming_both():
    args = flags('--num_hid', '32', '--gamma', '2', '--op', '')
    with pytest.raises(UserError) as error:
        checkpoints.adopt(args, CONFIG, 'm.pth')
    assert str(error.value) == ("m.pth cannot be loaded with --num_hid 32 (it was trained with --num_hid 16), --op '' "
                                "(it was trained with --op c): its weights fit only the settings saved in it; drop "
                                "those flags")


# ----------------------------------------------------------------- which checkpoint

def touch(folder, *names):
    os.makedirs(folder, exist_ok=True)
    for name in names:
        open(os.path.join(folder, name), 'wb').close()
    return str(folder)


def test_without_epoch_the_highest_epoch_is_used(tmp_path, capsys):
    folder = touch(tmp_path / 'run', 'model_epoch3.pth', 'model_epoch10.pth', 'model_epoch9.pth', 'model_last.pth')
    assert checkpoints.choose(folder) == (os.path.join(folder, 'model_epoch10.pth'), 10)
    assert 'note: using %s/model_epoch10.pth, the highest epoch' % folder in capsys.readouterr().out


def test_a_missing_epoch_lists_those_that_exist(tmp_path):
    folder = touch(tmp_path / 'run', 'model_epoch3.pth', 'model_epoch0.pth', 'model_last.pth', 'log.jsonl')
    with pytest.raises(UserError) as error:
        checkpoints.choose(folder, 12)
    assert str(error.value) == ('%s/model_epoch12.pth does not exist; %s holds epochs 0, 3 (model_epoch<N>.pth) and '
                                'model_last.pth: pass one of those epochs with --epoch, or omit --epoch for the '
                                'highest' % (folder, folder))


def test_epoch_zero_or_less_is_the_originals_model_pth(tmp_path):
    folder = touch(tmp_path / 'run', 'model_epoch0.pth')
    assert checkpoints.choose(folder, 0) == (os.path.join(folder, 'model_epoch0.pth'), 0)
    with pytest.raises(UserError, match='model.pth does not exist'):
        checkpoints.choose(folder, -1)
    touch(folder, 'model.pth')
    assert checkpoints.choose(folder, 0) == (os.path.join(folder, 'model.pth'), None)
    assert checkpoints.choose(folder, -1) == (os.path.join(folder, 'model.pth'), None)


def test_a_folder_without_numbered_epochs_falls_back_to_model_last(tmp_path, capsys):
    folder = touch(tmp_path / 'run', 'model_last.pth')
    assert checkpoints.choose(folder) == (os.path.join(folder, 'model_last.pth'), None)
    assert 'has no model_epoch<N>.pth; using model_last.pth' in capsys.readouterr().out
    empty = touch(tmp_path / 'empty')
    with pytest.raises(UserError, match='empty holds no checkpoint .*train one with main.py --output'):
        checkpoints.choose(empty)


def test_input_may_be_a_file_but_not_with_epoch(tmp_path):
    folder = touch(tmp_path / 'run', 'model_epoch4.pth')
    path = os.path.join(folder, 'model_epoch4.pth')
    assert checkpoints.choose(path) == (path, 4)
    with pytest.raises(UserError, match='is a file, and --epoch picks a file in a folder'):
        checkpoints.choose(path, 4)
    with pytest.raises(UserError, match='--input .*nothere does not exist'):
        checkpoints.choose(str(tmp_path / 'nothere'))


def test_resume_from_a_folder_takes_the_newer_of_last_and_interrupted(tmp_path):
    folder = touch(tmp_path / 'run', 'model_epoch3.pth', 'model_last.pth', 'model_interrupted.pth')
    now = time.time()
    os.utime(os.path.join(folder, 'model_last.pth'), (now, now))
    os.utime(os.path.join(folder, 'model_interrupted.pth'), (now - 60, now - 60))
    assert checkpoints.resume_file(folder) == os.path.join(folder, 'model_last.pth')
    os.utime(os.path.join(folder, 'model_interrupted.pth'), (now + 60, now + 60))
    assert checkpoints.resume_file(folder) == os.path.join(folder, 'model_interrupted.pth')
    released = touch(tmp_path / 'released', 'model_epoch12.pth')
    assert checkpoints.resume_file(released) == os.path.join(released, 'model_epoch12.pth')


def test_settle_takes_the_settings_of_the_chosen_checkpoint(tmp_path):
    model = base_model.build_model(CONFIG)
    folder = touch(tmp_path / 'run')
    checkpoints.save_checkpoint(os.path.join(folder, 'model_epoch2.pth'), model, torch.optim.Adamax(model.parameters()), 2)
    args = flags()
    args.input, args.epoch = folder, None
    checkpoints.settle(args)
    assert (args.checkpoint, args.epoch, args.num_hid, args.gamma) == (os.path.join(folder, 'model_epoch2.pth'), 2,
                                                                       16, 2)
    assert load_checkpoint(args.checkpoint)['config'] == CONFIG.to_dict()
