"""main.py / evaluate.py / test.py / ask.py end to end on a tiny data root in
the release formats, prepared with the real tools."""
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

import tiny_vqa
from robust_helpers import parser_built_by
from utils import UserError, run_cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ['--emb_dim', str(tiny_vqa.GLOVE_DIM), '--num_hid', '16', '--gamma', '2', '--batch_size', '16',
         '--workers', '0', '--device', 'cpu']
EVAL = ['--num_hid', '16', '--gamma', '2', '--workers', '0', '--device', 'cpu']


def run_main(tiny_root, output, *extra):
    import main
    return main.main(['--dataroot', tiny_root, '--output', str(output)] + SMALL + list(extra))


def json_log(output):
    with open(os.path.join(output, 'log.jsonl')) as handle:
        return [json.loads(line) for line in handle]


def without_timing(records):
    return [{k: v for k, v in record.items() if k not in ('seconds', 'samples_per_s')} for record in records]


def model_state(path):
    return torch.load(path, weights_only=True)['model_state']


def assert_same_weights(path_a, path_b):
    state_a, state_b = model_state(path_a), model_state(path_b)
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key


def test_train_with_validation_keeps_best_and_logs(tiny_root, tmp_path):
    output = tmp_path / 'ban'
    run_main(tiny_root, output, '--epochs', '3')
    records = json_log(output)
    assert [r['epoch'] for r in records] == [0, 1, 2]
    assert [r['lr'] for r in records] == pytest.approx([5e-4, 1e-3, 1.5e-3])  # warm-up of base 1e-3
    for record in records:
        assert record['samples'] == 120 and record['eval_samples'] == 48
        assert len(record['eval_entropy']) == 2 and record['eval_upper_bound'] == pytest.approx(100.0)
        assert record['grad_norm'] > 0
    assert records[-1]['train_loss'] < records[0]['train_loss']
    text = (output / 'log.txt').read_text()
    assert 'optim: adamax lr=0.0010' in text and 'eval score:' in text and 'entropy:' in text
    best = max(range(3), key=lambda e: (records[e]['eval_score'], -e))
    assert (output / ('model_epoch%d.pth' % best)).exists()
    from runs import checkpoints
    assert checkpoints.saved_epochs(str(output))[-1] == best  # what --epoch defaults to
    if importlib.util.find_spec('matplotlib'):
        from PIL import Image
        assert Image.open(output / 'curves.png').size == (1500, 480)  # the curves, drawn when training ends
    saved = torch.load(output / 'model_last.pth', weights_only=True)
    assert saved['epoch'] == 2 and set(saved) >= {'epoch', 'model_state', 'optimizer_state'}
    assert all(key.startswith('module.') for key in saved['model_state'])


def test_use_both_and_vg_saves_every_epoch_from_three(tiny_root, tmp_path):
    output = tmp_path / 'both'
    run_main(tiny_root, output, '--use_both', 'True', '--use_vg', '--epochs', '5')
    records = json_log(output)
    assert records[0]['lr'] == pytest.approx(0.5 * 7e-4)
    assert records[0]['samples'] == 120 + 48 + 2  # train + val + usable VG questions
    assert 'eval_score' not in records[0]
    saved = sorted(name for name in os.listdir(output) if name.startswith('model_epoch'))
    assert saved == ['model_epoch3.pth', 'model_epoch4.pth']


@pytest.mark.parametrize('flags,expected', [
    ([], False), (['--use_both'], True), (['--use_both', 'True'], True), (['--use_both', 'false'], False)])
def test_boolean_flag_spellings(flags, expected):
    import main
    assert main.parse_args(flags).use_both is expected


def test_bare_tfidf_turns_it_off_as_in_the_original():
    import main
    assert main.parse_args([]).tfidf is True
    assert main.parse_args(['--tfidf']).tfidf is False
    assert main.parse_args(['--tfidf', 'True']).tfidf is True


def test_seed_readme_spelling_out_is_output():
    import main
    args = main.parse_args(['--task', 'flickr', '--out', 'saved_models/flickr'])
    assert args.output == 'saved_models/flickr' and args.op == '' and args.gamma == 1


@pytest.mark.parametrize('flags,message', [
    (['--use_both', 'maybe'], '--use_both'), (['--gamma', '0'], '--gamma'), (['--batch_size', '-1'], '--batch_size'),
    (['--task', 'gqa'], '--task'), (['--epochs', 'x'], '--epochs')])
def test_nonsense_flags_exit_2_naming_the_flag(flags, message):
    result = subprocess.run([sys.executable, 'main.py'] + flags, cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2
    assert message in result.stderr and 'Traceback' not in result.stderr


def test_resume_is_exact(tiny_root, tmp_path):
    straight, split = tmp_path / 'straight', tmp_path / 'split'
    run_main(tiny_root, straight, '--epochs', '2', '--use_both', '--seed', '7')
    run_main(tiny_root, split, '--epochs', '1', '--use_both', '--seed', '7')
    run_main(tiny_root, split, '--epochs', '2', '--use_both', '--seed', '7', '--input', str(split / 'model_last.pth'))
    assert_same_weights(straight / 'model_last.pth', split / 'model_last.pth')
    assert without_timing(json_log(straight)) == without_timing(json_log(split))


def test_worker_processes_train_exactly_as_in_process_loading(tiny_root, tmp_path):
    in_process, workers = tmp_path / 'in_process', tmp_path / 'workers'
    run_main(tiny_root, in_process, '--epochs', '2', '--seed', '5')
    run_main(tiny_root, workers, '--epochs', '2', '--seed', '5', '--workers', '2')  # shared-memory batches
    assert_same_weights(in_process / 'model_last.pth', workers / 'model_last.pth')
    assert without_timing(json_log(in_process)) == without_timing(json_log(workers))


def test_ctrl_c_saves_a_checkpoint_that_resumes_mid_epoch_exactly(tiny_root, tmp_path, monkeypatch):
    from runs import tasks
    straight, interrupted = tmp_path / 'straight', tmp_path / 'interrupted'
    run_main(tiny_root, straight, '--epochs', '2', '--use_both', '--seed', '3')
    original_step, calls = tasks.VQATask.train_step, []

    def step_then_interrupt(self, model, batch):
        calls.append(1)
        if len(calls) == 14:  # epoch 1, step index 2 (11 steps per epoch)
            signal.raise_signal(signal.SIGINT)
        return original_step(self, model, batch)

    monkeypatch.setattr(tasks.VQATask, 'train_step', step_then_interrupt)
    with pytest.raises(SystemExit) as stopped:
        run_main(tiny_root, interrupted, '--epochs', '2', '--use_both', '--seed', '3')
    assert stopped.value.code == 130
    checkpoint = torch.load(interrupted / 'model_interrupted.pth', weights_only=True)
    assert checkpoint['epoch'] == 0 and checkpoint['resume_step'] == 3
    monkeypatch.setattr(tasks.VQATask, 'train_step', original_step)
    run_main(tiny_root, interrupted, '--epochs', '2', '--use_both', '--seed', '3',
             '--input', str(interrupted / 'model_interrupted.pth'))
    assert_same_weights(straight / 'model_last.pth', interrupted / 'model_last.pth')
    assert without_timing(json_log(straight)) == without_timing(json_log(interrupted))


TABLE = 'module.w_emb.emb_.weight'  # the tf-idf table of op 'c'


def optimizer_entries(checkpoint):
    return sum(len(group['params']) for group in checkpoint['optimizer_state']['param_groups'])


def original_layout(path, target):
    """The checkpoint as the original's main.py saves it: no resume fields of ours."""
    checkpoint = torch.load(path, weights_only=True)
    torch.save({key: checkpoint[key] for key in ('epoch', 'model_state', 'optimizer_state')}, target)
    return target


def test_tfidf_table_trains_and_resumes_from_the_original_layout(tiny_root, tmp_path, capsys):
    first, resumed = tmp_path / 'first', tmp_path / 'resumed'
    run_main(tiny_root, first, '--epochs', '1', '--use_both')  # tf-idf on: the default
    saved = torch.load(first / 'model_last.pth', weights_only=True)
    assert optimizer_entries(saved) == len(saved['model_state'])  # every parameter, emb_ included
    table_state = saved['optimizer_state']['state'][1]  # emb_ follows emb, as in the original's order
    assert table_state['exp_avg'].shape == saved['model_state'][TABLE].shape
    assert table_state['exp_avg'].abs().sum() > 0
    path = original_layout(first / 'model_last.pth', tmp_path / 'original.pth')
    capsys.readouterr()
    run_main(tiny_root, resumed, '--epochs', '2', '--use_both', '--input', str(path))
    assert 'note:' not in capsys.readouterr().out
    after = torch.load(resumed / 'model_last.pth', weights_only=True)
    assert after['epoch'] == 1 and [record['epoch'] for record in json_log(resumed)] == [1]
    assert not torch.equal(after['model_state'][TABLE], saved['model_state'][TABLE])
    assert after['optimizer_state']['state'][1]['step'] > table_state['step']


def test_checkpoint_with_a_frozen_table_resumes_frozen_with_a_note(tiny_root, tmp_path, capsys):
    frozen, resumed = tmp_path / 'frozen', tmp_path / 'resumed'
    run_main(tiny_root, frozen, '--epochs', '1', '--use_both', '--tfidf')  # bare --tfidf: off, emb_ frozen
    saved = torch.load(frozen / 'model_last.pth', weights_only=True)
    assert optimizer_entries(saved) == len(saved['model_state']) - 1
    capsys.readouterr()
    run_main(tiny_root, resumed, '--epochs', '2', '--use_both', '--tfidf', 'True',  # the optimizer state wins
             '--input', str(frozen / 'model_last.pth'))
    assert 'trained with the tf-idf table emb_ frozen' in capsys.readouterr().out
    after = torch.load(resumed / 'model_last.pth', weights_only=True)
    assert after['epoch'] == 1 and optimizer_entries(after) == optimizer_entries(saved)
    assert torch.equal(after['model_state'][TABLE], saved['model_state'][TABLE])
    glove_table = 'module.w_emb.emb.weight'
    assert not torch.equal(after['model_state'][glove_table], saved['model_state'][glove_table])  # it trains


class GoldenCaseData(torch.utils.data.Dataset):
    """The golden case's questions (config `vqa` of tests/golden) as a training set."""

    def __init__(self, case, config):
        self.case = case
        self.dictionary = SimpleNamespace(ntoken=config['ntoken'])
        self.v_dim, self.num_ans_candidates = config['v_dim'], config['n_ans']

    def __len__(self):
        return self.case['q'].size(0)

    def __getitem__(self, index):
        return tuple(self.case[key][index] for key in ('v', 'b', 'q', 'a'))  # [N,v_dim], [N,6], [14], [n_ans]


def original_trainable_checkpoint(golden, data, target):
    """The golden checkpoint after one step of the original's main.py with
    tf-idf on: emb_ trainable, Adamax over filter(requires_grad, parameters)."""
    import base_model
    model = base_model.build_ban(data, 24, 'c', 2)
    model.load_state_dict(golden['model_state'])
    model.w_emb.set_table_trainable(True)
    optimizer = torch.optim.Adamax([p for p in model.parameters() if p.requires_grad])
    logits, _ = model(*(data.case[key] for key in ('v', 'b', 'q')), None)
    torch.nn.functional.binary_cross_entropy_with_logits(logits, data.case['a']).backward()
    optimizer.step()
    torch.save({'epoch': golden['epoch'], 'model_state': base_model.checkpoint_state(model),
                'optimizer_state': optimizer.state_dict()}, target)
    return target


@pytest.mark.parametrize('table,flags,note', [
    ('frozen', [], 'emb_ frozen'),  # resumes as it was trained, though --tfidf is on
    ('trainable', [], None),
    ('trainable', ['--tfidf'], 'emb_ trainable'),  # resumes as it was trained, though --tfidf is off
])
def test_original_checkpoint_of_the_golden_config_resumes(reference_dir, reference_config, tmp_path, monkeypatch,
                                                          capsys, table, flags, note):
    import main
    config = reference_config['vqa']
    assert (config['num_hid'], config['gamma'], config['op']) == (24, 2, 'c')
    data = GoldenCaseData(torch.load(reference_dir / 'vqa_case.pt', weights_only=True), config)
    monkeypatch.setattr(main, 'load_dictionary', lambda dataroot, task: data.dictionary)
    monkeypatch.setattr(main, 'training_data', lambda args, dictionary: (data, None))
    path = reference_dir / 'vqa_checkpoint.pth'
    golden = torch.load(path, weights_only=True)
    assert optimizer_entries(golden) == len(golden['model_state']) - 1  # written with tf-idf off: emb_ frozen
    if table == 'trainable':
        path = original_trainable_checkpoint(golden, data, tmp_path / 'trainable.pth')
    saved = torch.load(path, weights_only=True)
    output = tmp_path / 'resumed'
    main.main(['--dataroot', str(tmp_path / 'unused'), '--output', str(output), '--input', str(path),
               '--epochs', str(saved['epoch'] + 2), '--use_both', '--num_hid', '24', '--gamma', '2',
               '--batch_size', '2', '--workers', '0', '--device', 'cpu'] + flags)
    out = capsys.readouterr().out
    assert (note in out) if note else ('note:' not in out)
    after = torch.load(output / 'model_last.pth', weights_only=True)
    assert after['epoch'] == saved['epoch'] + 1 and after['model_state'].keys() == saved['model_state'].keys()
    assert optimizer_entries(after) == optimizer_entries(saved)
    assert torch.equal(after['model_state'][TABLE], saved['model_state'][TABLE]) == (table == 'frozen')
    assert not torch.equal(after['model_state']['module.classifier.main.3.bias'],
                           saved['model_state']['module.classifier.main.3.bias'])


def test_evaluate_reports_score_and_official_accuracy(tiny_root, trained, tmp_path, capsys):
    import evaluate
    metrics = evaluate.main(['--dataroot', tiny_root, '--input', str(trained), '--epoch', '3',
                             '--output', str(tmp_path / 'metrics.json')] + EVAL)
    assert metrics['samples'] == 48 and 0 <= metrics['score'] <= 100
    official = metrics['official']
    assert set(official['per_answer_type']) == {'yes/no', 'other'}
    assert json.loads((tmp_path / 'metrics.json').read_text())['score'] == pytest.approx(metrics['score'])
    out = capsys.readouterr().out
    assert 'official VQA accuracy' in out and 'upper bound' in out


def test_evaluate_epoch_zero_or_less_reads_model_pth(tiny_root, trained, tmp_path):
    import shutil

    import evaluate
    folder = tmp_path / 'released'
    folder.mkdir()
    shutil.copy(trained / 'model_epoch3.pth', folder / 'model.pth')
    by_epoch = evaluate.main(['--dataroot', tiny_root, '--input', str(trained), '--epoch', '3'] + EVAL)
    for epoch in ('0', '-1'):
        metrics = evaluate.main(['--dataroot', tiny_root, '--input', str(folder), '--epoch', epoch] + EVAL)
        assert metrics['checkpoint'] == str(folder / 'model.pth') and metrics['score'] == by_epoch['score']
    shutil.copy(trained / 'model_epoch3.pth', folder / 'model_epoch0.pth')
    (folder / 'model.pth').unlink()  # --epoch 0 then reads model_epoch0.pth; -1 still wants model.pth
    assert evaluate.parse_args(['--input', str(folder), '--epoch', '0']).checkpoint == str(folder / 'model_epoch0.pth')
    with pytest.raises(UserError, match='model.pth'):
        evaluate.parse_args(['--input', str(folder), '--epoch', '-1'])


def test_official_accuracy_comes_from_the_same_single_pass(tiny_root, trained, monkeypatch):
    from torch.utils.data import DataLoader

    import evaluate
    from dataset import VQAFeatureDataset
    from formats.dictionary import Dictionary
    from formats.vqa_metric import evaluate_results
    from runs import checkpoints
    from runs.collate import pad_collate
    from test import answers_from_logits, predict_logits
    forwards = []
    load_model = checkpoints.model_from_checkpoint

    def counting_model(*args, **kwargs):
        model, ckpt = load_model(*args, **kwargs)
        model.register_forward_hook(lambda module, inputs, output: forwards.append(inputs[0].size(0)))
        return model, ckpt

    monkeypatch.setattr(checkpoints, 'model_from_checkpoint', counting_model)
    metrics = evaluate.main(['--dataroot', tiny_root, '--input', str(trained), '--epoch', '3'] + EVAL)
    assert sum(forwards) == metrics['samples'] == 48  # every val question once
    assert 'answers' not in metrics
    # the same figure from predictions made separately, as test.py makes them
    args = evaluate.parse_args(['--dataroot', tiny_root, '--input', str(trained), '--epoch', '3'] + EVAL)
    val = VQAFeatureDataset('val', Dictionary.load_from_file(os.path.join(tiny_root, 'dictionary.pkl')), tiny_root)
    model, _ = load_model(args, 'vqa', str(trained / 'model_epoch3.pth'), torch.device('cpu'),
                          val.dictionary.ntoken, val.v_dim, val.num_ans_candidates)
    _, logits = predict_logits(model, DataLoader(val, batch_size=16, collate_fn=pad_collate), torch.device('cpu'))
    ids = torch.tensor([entry['question_id'] for entry in val.entries])
    expected = evaluate_results(answers_from_logits(ids, logits, val.label2ans), *evaluate.official_files(args))
    assert metrics['official'] == expected


def test_main_evaluate_flag_matches_evaluate_py(tiny_root, trained):
    import evaluate
    import main
    via_main = main.main(['--dataroot', tiny_root, '--evaluate', '--input', str(trained / 'model_epoch3.pth')]
                         + SMALL)
    via_evaluate = evaluate.main(['--dataroot', tiny_root, '--input', str(trained), '--epoch', '3'] + EVAL)
    assert via_main['score'] == via_evaluate['score']


def test_test_py_writes_one_answer_per_question(tiny_root, trained, tmp_path, monkeypatch):
    import test as submission
    monkeypatch.chdir(tmp_path)
    for split, count in (('test2015', 48), ('test-dev2015', 24)):
        path = submission.main(['--dataroot', tiny_root, '--input', str(trained), '--epoch', '3', '--label', 'mytest',
                                '--split', split, '--output', str(tmp_path / 'results'), '--logits', 'True']
                               + EVAL)
        assert os.path.basename(path) == '%s_banc16_mytest_epoch3.json' % split
        results = json.loads(open(path).read())
        questions = json.load(open(os.path.join(tiny_root, 'v2_OpenEnded_mscoco_%s_questions.json' % split)))
        assert sorted(r['question_id'] for r in results) == sorted(q['question_id'] for q in questions['questions'])
        assert all(isinstance(r['answer'], str) for r in results)
    saved = torch.load(tmp_path / 'logits' / 'banc16_mytest' / 'logits0.pth', weights_only=True)
    assert saved['logits'].shape == (24, 6)


def without_config(path, target):
    """A copy of the checkpoint at `path` as the original saved it: no "config"."""
    checkpoint = torch.load(path, weights_only=True)
    del checkpoint['config']
    torch.save(checkpoint, target)
    return str(target)


def test_checkpoint_of_another_configuration_is_named(tiny_root, trained, tmp_path):
    released = without_config(trained / 'model_epoch3.pth', tmp_path / 'model_epoch3.pth')
    result = subprocess.run([sys.executable, 'evaluate.py', '--dataroot', tiny_root, '--input', released,
                             '--num_hid', '24', '--gamma', '2', '--emb_dim', '8', '--workers', '0'],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2
    assert 'does not fit this model' in result.stderr and 'q_emb.rnn.weight_hh_l0' in result.stderr
    assert 'Traceback' not in result.stderr


def test_a_flag_contradicting_the_saved_settings_is_named_before_loading(tiny_root, trained, capsys, monkeypatch):
    import ask
    monkeypatch.setattr(ask, 'load_question_model', lambda args: pytest.fail('loaded the model'))
    with pytest.raises(SystemExit) as stopped:
        run_cli(ask.main, ['--dataroot', tiny_root, '--input', str(trained), '--image_id', '1000', '--question',
                           'What color is the ball?', '--num_hid', '24'])
    assert stopped.value.code == 2
    assert capsys.readouterr().err == ('error: %s/model_epoch3.pth cannot be loaded with --num_hid 24 (it was trained '
                                       'with --num_hid 16): its weights fit only the settings saved in it; drop the '
                                       'flag\n' % trained)


def test_every_cli_takes_the_settings_and_the_epoch_from_the_run(tiny_root, trained, tmp_path, monkeypatch, capsys):
    """No model flag, no --epoch: the highest epoch of the folder, built as saved."""
    import ask
    import evaluate
    import main
    import test as submission
    plain = ['--dataroot', tiny_root, '--workers', '0', '--device', 'cpu']
    metrics = evaluate.main(plain + ['--input', str(trained)])
    assert metrics['checkpoint'] == str(trained / 'model_epoch3.pth') and metrics['epoch'] == 3
    out = capsys.readouterr().out
    assert 'note: settings saved in %s/model_epoch3.pth: --num_hid 16 --gamma 2 --emb_dim 8' % trained in out
    assert main.main(plain + ['--evaluate', '--input', str(trained)])['score'] == metrics['score']
    monkeypatch.chdir(tmp_path)
    path = submission.main(plain + ['--input', str(trained / 'model_epoch3.pth'), '--label', 'x',
                                    '--output', str(tmp_path)])
    assert os.path.basename(path) == 'test2015_banc16_x_epoch3.json'  # the saved num_hid names it
    answers = ask.main(['--dataroot', tiny_root, '--input', str(trained), '--image_id', '1000', '--question',
                        'What color is the ball?', '--device', 'cpu'])
    assert len(answers) == 5


def test_resume_from_a_run_folder_uses_its_last_checkpoint_and_settings(tiny_root, trained, tmp_path):
    import shutil

    import main
    run = shutil.copytree(trained, tmp_path / 'run')
    main.main(['--dataroot', tiny_root, '--input', str(run), '--output', str(run), '--epochs', '5', '--use_both',
               '--workers', '0', '--device', 'cpu'])
    assert [record['epoch'] for record in json_log(run)] == [0, 1, 2, 3, 4]  # only epoch 4 was trained here
    resumed = torch.load(run / 'model_epoch4.pth', weights_only=True)
    assert resumed['config'] == torch.load(trained / 'model_epoch3.pth', weights_only=True)['config']


def test_ask_names_unknown_words_and_the_words_cut_off(tiny_root, trained, capsys):
    import ask
    question = 'What colour is the zebra ball on the table left of the man sitting there now?'
    ask.main(['--dataroot', tiny_root, '--input', str(trained), '--image_id', '1000', '--question', question]
             + EVAL)
    out = capsys.readouterr().out
    assert ("note: not in the model's dictionary: 'colour', 'zebra', 'on', 'table', 'left', 'of', 'man', 'sitting'; "
            "the model reads each as its last word \"'s\" (the original's rule), so the answer may be confident and "
            "wrong") in out
    assert "note: the question has 16 words; the model reads the first 14 and never sees 'there now'" in out
    ask.main(['--dataroot', tiny_root, '--input', str(trained), '--image_id', '1000', '--question',
              'Xyzzy plugh?'] + EVAL)
    assert "none of the words of the question is in the model's dictionary ('xyzzy', 'plugh')" in \
        capsys.readouterr().out


def test_ask_prints_top_answers(tiny_root, trained, capsys):
    import ask
    answers = ask.main(['--dataroot', tiny_root, '--input', str(trained), '--epoch', '3', '--image_id', '1000',
                        '--question', 'What color is the ball?'] + EVAL)
    assert len(answers) == 5 and all(0 <= p <= 1 for _, p in answers)
    assert answers == sorted(answers, key=lambda item: -item[1])
    assert 'Q: What color is the ball?' in capsys.readouterr().out


def test_visualize_writes_a_png(tiny_root, trained, tmp_path, capsys):
    pytest.importorskip('matplotlib')
    from PIL import Image

    import visualize
    photo = tmp_path / 'photo.png'
    Image.new('RGB', (640, 480), (90, 140, 200)).save(photo)
    for image in ([], ['--image', str(photo)]):
        output = tmp_path / 'att.png'
        visualize.main(['--dataroot', tiny_root, '--input', str(trained), '--image_id', '1000',
                        '--question', 'What color is the ball?', '--output', str(output)] + image + EVAL)
        picture = Image.open(output)
        out = capsys.readouterr().out
        assert picture.format == 'PNG' and picture.height >= visualize.PANEL_HEIGHT[0] * visualize.DPI
        assert 'wrote %s (%d x %d pixels)' % (output, picture.width, picture.height) in out
        assert ('note: no --image' in out) == (not image)


def test_visualize_checks_the_image_before_loading_the_model(tiny_root, trained, tmp_path, capsys, monkeypatch):
    import ask
    import visualize
    monkeypatch.setattr(ask, 'load_question_model', lambda args: pytest.fail('loaded the model'))
    with pytest.raises(SystemExit):
        run_cli(visualize.main, ['--dataroot', tiny_root, '--input', str(trained), '--image_id', '1000',
                                 '--question', 'What color?', '--image', str(tmp_path / 'nothere.jpg')])
    assert capsys.readouterr().err == ('error: --image %s does not exist; pass the photo the features were extracted '
                                       'from\n' % (tmp_path / 'nothere.jpg'))


@pytest.mark.parametrize('cli', ['main', 'test', 'evaluate', 'ask', 'visualize'])
def test_every_flag_has_help_text(cli, monkeypatch):
    parser = parser_built_by(monkeypatch, lambda: importlib.import_module(cli).main([]))
    assert [action.option_strings for action in parser._actions if not action.help] == []


def test_visualize_help_keeps_its_example_lines_apart():
    result = subprocess.run([sys.executable, 'visualize.py', '--help'], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0
    description = result.stdout.split('\noptions:')[0].splitlines()
    assert len([line for line in description if 'python3 visualize.py' in line]) == 3
    assert not [line for line in description if re.search(r'\S {4,}--', line)]  # no lines run together


def test_one_ctrl_c_prints_its_message_once(tiny_root, tmp_path):
    """DataLoader workers inherit the Ctrl-C handler; only the main process speaks."""
    import time
    output = tmp_path / 'stopped'
    command = [sys.executable, 'main.py', '--dataroot', tiny_root, '--output', str(output), '--epochs', '50',
               '--emb_dim', '8', '--num_hid', '16', '--gamma', '2', '--batch_size', '2', '--workers', '2',
               '--device', 'cpu']
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, env=dict(os.environ, OMP_NUM_THREADS='1'))
    log = output / 'log.txt'
    try:
        deadline = time.monotonic() + 240
        while not (log.exists() and 'lr: 0.001000' in log.read_text()):  # epoch 1 begins
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.05)
        time.sleep(1.0)  # into epoch 1, its workers running
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130
    assert err.count('finishing this step, then saving model_interrupted.pth') == 1, err
    assert (output / 'model_interrupted.pth').exists()


def free_port():
    import socket
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return str(probe.getsockname()[1])


def test_torchrun_two_processes_match_single_process(tiny_root, trained, tmp_path):
    scratch = tmp_path / 'tmp'  # torchrun leaves a torchelastic_* folder in the temporary folder
    scratch.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS='1', TMPDIR=str(scratch))
    common = ['--dataroot', tiny_root, '--input', str(trained), '--epoch', '3'] + EVAL
    single = tmp_path / 'single.json'
    double = tmp_path / 'double.json'
    subprocess.run([sys.executable, 'evaluate.py', '--output', str(single)] + common, cwd=REPO, check=True, env=env)
    subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_port', free_port(),
                    'evaluate.py', '--output', str(double)] + common, cwd=REPO, check=True, env=env,
                   capture_output=True)
    one, two = json.loads(single.read_text()), json.loads(double.read_text())
    for key in ('score', 'upper_bound', 'entropy', 'samples'):
        assert one[key] == two[key], key
    output = tmp_path / 'ddp'
    subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_port', free_port(),
                    'main.py', '--dataroot', tiny_root, '--output', str(output), '--epochs', '1'] + SMALL,
                   cwd=REPO, check=True, env=env, capture_output=True)
    records = json_log(output)
    assert len(records) == 1 and records[0]['samples'] == 120 and records[0]['eval_samples'] == 48
    assert (output / 'model_epoch0.pth').exists()
    assert all(name.startswith('torchelastic_') for name in os.listdir(str(scratch)))  # pytest removes these


def test_flickr_train_and_evaluate_end_to_end(tmp_path, capsys):
    import evaluate
    import main
    import tiny_flickr
    tiny_flickr.write_raw(tmp_path)
    tiny_flickr.prepare(tmp_path)
    output = tmp_path / 'flickr_model'
    main.main(['--task', 'flickr', '--dataroot', str(tmp_path), '--out', str(output), '--epochs', '2',
               '--batch_size', '8'] + SMALL[:4] + ['--workers', '0'])
    records = json_log(output)
    # per image 7 usable phrases (the notvisual one is skipped): 4 people, 3 clothing
    assert records[0]['lr'] == pytest.approx(5e-4) and records[-1]['eval_entities'] == 4 * 7
    assert records[-1]['train_loss'] < records[0]['train_loss']
    epoch = max(int(name[len('model_epoch'):-4]) for name in os.listdir(output) if name.startswith('model_epoch'))
    metrics = evaluate.main(['--task', 'flickr', '--dataroot', str(tmp_path), '--input', str(output),
                             '--epoch', str(epoch), '--num_hid', '16', '--workers', '0'])
    assert metrics['entities'] == 4 * 7 and metrics['upper_bound'] == pytest.approx(100.0)
    assert metrics['recall@1'] <= metrics['recall@5'] <= metrics['recall@10']
    assert set(metrics['recall@1_per_type']) == {'people', 'clothing'}
    assert metrics['recall@1_per_type']['people']['entities'] == 4 * 4
    out = capsys.readouterr().out
    assert 'Recall@1' in out and 'people' in out
    if importlib.util.find_spec('matplotlib'):
        import visualize
        picture = visualize.main(['--task', 'flickr', '--dataroot', str(tmp_path), '--input', str(output),
                                  '--image_id', '300', '--question', 'A man wears a red shirt .', '--phrase', 'a man',
                                  '--phrase', 'a red shirt', '--output', str(tmp_path / 'grounding.png'),
                                  '--workers', '0', '--device', 'cpu'])
        from PIL import Image
        assert Image.open(picture).width >= 1400
        with pytest.raises(UserError, match="--phrase 'a blue shirt' is not a run of words of the caption"):
            visualize.main(['--task', 'flickr', '--dataroot', str(tmp_path), '--input', str(output), '--image_id',
                            '300', '--question', 'A man wears a red shirt .', '--phrase', 'a blue shirt',
                            '--device', 'cpu'])


def test_non_finite_loss_stops_naming_epoch_and_step(tiny_root, tmp_path, monkeypatch, capsys):
    from runs import tasks
    original_step, calls = tasks.VQATask.train_step, []

    def diverging_step(self, model, batch):
        calls.append(1)
        loss, stats = original_step(self, model, batch)
        return (loss * float('nan') if len(calls) == 5 else loss), stats

    monkeypatch.setattr(tasks.VQATask, 'train_step', diverging_step)
    import main
    from utils import run_cli
    with pytest.raises(SystemExit) as stopped:
        run_cli(main.main, ['--dataroot', tiny_root, '--output', str(tmp_path / 'nan'), '--epochs', '2'] + SMALL)
    assert stopped.value.code == 2
    assert 'loss became nan at epoch 0, step 4' in capsys.readouterr().err


def test_bucketed_batches_cover_every_item_once(tiny_root, tmp_path, monkeypatch):
    from runs import tasks
    seen = []
    original_step = tasks.VQATask.train_step

    def counting_step(self, model, batch):
        seen.append(batch[0].shape[1])  # padded box count of this batch
        return original_step(self, model, batch)

    monkeypatch.setattr(tasks.VQATask, 'train_step', counting_step)
    output = tmp_path / 'bucket'
    run_main(tiny_root, output, '--epochs', '1', '--bucket')
    assert json_log(output)[0]['samples'] == 120
    assert len(seen) == 8 and max(seen) <= 13
