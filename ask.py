"""Ask a trained VQA model a question about one image of the data root.

    python3 ask.py --input saved_models/ban --epoch 12 --image_id 42 --question "What color is the bus?"

Prints the top-5 answers with their probabilities (sigmoid of the logits:
BAN is trained with a binary cross-entropy per answer).
"""
import argparse
import os

import torch

import runtime
from utils import UserError, check_input_folder, run_cli

SPLITS_WITH_FEATURES = ('train', 'val', 'test2015')


def parse_args(argv=None, description=__doc__):
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    runtime.add_model_flags(parser)
    parser.add_argument('--input', type=str, default='saved_models/ban', help='folder of model_epoch<N>.pth')
    parser.add_argument('--epoch', type=int, default=12)
    parser.add_argument('--image_id', type=int, required=True)
    parser.add_argument('--question', type=str, required=True)
    parser.add_argument('--top', type=runtime.positive_int, default=5,
                        help='answers to print (visualize.py: boxes drawn per glimpse)')
    return parser


def find_image_features(dataroot, image_id):
    """(features [n, v_dim], spatials [n, 6], split) of `image_id` from whichever
    converted split holds it."""
    from dataset import FeatureStore
    searched = []
    for split in SPLITS_WITH_FEATURES:
        if not os.path.exists(os.path.join(dataroot, '%s_imgid2idx.pkl' % split)):
            continue
        store = FeatureStore(dataroot, split)
        searched.append(split)
        if image_id in store.img_id2idx:
            features, spatials = store.get(store.img_id2idx[image_id])
            return features, spatials, split
    if not searched:
        raise UserError('no converted features under %s: run tools/process.sh first' % dataroot)
    raise UserError('image %d has no features in %s (searched %s)' % (image_id, dataroot, ', '.join(searched)))


def encode_question(question, dictionary, length=14):
    """Token ids [1, length] as the datasets make them (unknown words -> ntoken-1)."""
    tokens = dictionary.tokenize(question, False)[:length]
    if not tokens:
        raise UserError('the question %r has no words' % question)
    tokens = tokens + [dictionary.padding_idx] * (length - len(tokens))
    return torch.tensor([tokens], dtype=torch.long)


class AnswerVocabulary:
    """Stands in for a dataset when building the model: the sizes BAN needs."""

    def __init__(self, dictionary, label2ans, v_dim):
        self.dictionary = dictionary
        self.label2ans = label2ans
        self.num_ans_candidates = len(label2ans)
        self.v_dim = v_dim


def load_question_model(args):
    """(model in eval mode, dictionary, vocabulary, features, spatials, device)."""
    from dataset import load_answer_maps
    device = runtime.resolve_device(args.device)
    dictionary = runtime.load_dictionary(args.dataroot, 'vqa')
    _, label2ans = load_answer_maps(args.dataroot)
    features, spatials, _ = find_image_features(args.dataroot, args.image_id)
    vocabulary = AnswerVocabulary(dictionary, label2ans, features.size(1))
    check_input_folder(args.input, 'ask.py and visualize.py')
    path = runtime.checkpoint_path(args.input, args.epoch)
    model, _ = runtime.model_from_checkpoint(vocabulary, args, 'vqa', path, device)
    return model.eval(), dictionary, vocabulary, features, spatials, device


@torch.no_grad()
def answer(model, features, spatials, question_tokens, device):
    """(probabilities [n_ans], attention [G, n_boxes, 14]) for one image and question."""
    logits, att = model(features.unsqueeze(0).to(device), spatials.unsqueeze(0).to(device),
                        question_tokens.to(device), None)  # [1,n_ans], [1,G,N,14]
    return torch.sigmoid(logits[0]).cpu(), att[0].cpu()


def main(argv=None):
    args = parse_args().parse_args(argv)
    if args.task != 'vqa':
        raise UserError('ask.py answers VQA questions; --task must be vqa')
    model, dictionary, vocabulary, features, spatials, device = load_question_model(args)
    probabilities, _ = answer(model, features, spatials, encode_question(args.question, dictionary), device)
    top = probabilities.topk(min(args.top, len(probabilities)))
    print('Q: %s' % args.question)
    for rank, (probability, label) in enumerate(zip(top.values.tolist(), top.indices.tolist()), 1):
        print('%d. %-20s %.3f' % (rank, vocabulary.label2ans[label], probability))
    return [(vocabulary.label2ans[label], p) for p, label in zip(top.values.tolist(), top.indices.tolist())]


if __name__ == '__main__':
    run_cli(main)
