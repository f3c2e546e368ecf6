"""Ask a trained VQA model a question about one image of the data root, or
about your own photo.

    python3 ask.py --input saved_models/ban --epoch 12 --image_id 42 --question "What color is the bus?"
    python3 ask.py --input saved_models/ban --epoch 12 --image my.jpg \
        --detector_weights resnet101_faster_rcnn_final.caffemodel --question "What color is the bus?"

With --image and no --image_id the photo's bottom-up-attention region
features are extracted on the fly (detection/detector.py; needs opencv-python-headless
and protobuf, see requirements-detector.txt).

Prints the top-5 answers with their probabilities (sigmoid of the logits:
BAN is trained with a binary cross-entropy per answer). The model reads the
first 14 words of the question; a word outside its dictionary reads as the
dictionary's last word (the original's rule, which the released model was
trained with): notes name such words and the words cut off, since the answer
can be confident all the same.

--input is a checkpoint file or the folder main.py saved into; there,
--epoch N picks model_epoch<N>.pth (default: the highest N). The model's
settings come from the checkpoint when it records them (ours), else from
the flags (the original's).
"""
import os
from typing import NamedTuple

import torch

from detection import detector, weight_files
from formats.dictionary import QUESTION_LENGTH, load_dictionary, pad_tokens, split_words
from formats.features import FeatureStore, spatial_features
from formats.paths import feature_files
from formats.vqa_files import load_answer_maps
from runs import checkpoints, runtime
from runs.flags import ask_parser
from utils import UserError, note, require_file, run_cli

SPLITS_WITH_FEATURES = ('train', 'val', 'test2015')


def parse_args(argv=None):
    """Parse, then find the checkpoint and take the model settings saved in
    it, before any data or weights are read."""
    return checkpoints.settle(ask_parser(__doc__).parse(argv))


def find_image_features(dataroot, image_id, splits=SPLITS_WITH_FEATURES):
    """(features [n, v_dim], spatials [n, 6], split) of `image_id` from whichever
    converted split of `splits` holds it."""
    searched = {}
    for split in splits:
        if not os.path.exists(feature_files(dataroot, split)[1]):
            continue
        store = FeatureStore(dataroot, split, splits=splits)
        searched[split] = store.img_id2idx
        if image_id in store.img_id2idx:
            features, spatials = store.get(store.img_id2idx[image_id])
            return features, spatials, split
    if not searched:
        raise UserError('no converted features under %s: run tools/process%s.sh first'
                        % (dataroot, '' if splits == SPLITS_WITH_FEATURES else '_flickr'))
    raise UserError('image %d has no features in %s; it holds %s' % (image_id, dataroot, '; '.join(
        '%s: %s' % (split, id_summary(image_ids)) for split, image_ids in searched.items())))


def id_summary(image_ids, examples=3):
    """'1,000 images, ids 200000 to 200999, e.g. 200000, 200001, 200002'."""
    ordered = sorted(image_ids)
    if not ordered:
        return 'no images'
    return '%s image%s, ids %d to %d, e.g. %s' % (format(len(ordered), ','), '' if len(ordered) == 1 else 's',
                                                   ordered[0], ordered[-1],
                                                   ', '.join(str(image_id) for image_id in ordered[:examples]))


def photo_features(image_path, weights_path, device):
    """(features [n, 2048], spatials [n, 6]) of a photo, extracted on the fly
    as tools/extract_features.py and the converter would."""
    if not weights_path:
        raise UserError('--image %s without --image_id extracts its region features on the fly: pass '
                        '--detector_weights PATH (%s)' % (image_path, weight_files.DOWNLOAD_HINT))
    image = detector.load_image(image_path)
    regions = detector.extract_regions(weight_files.load_detector(weights_path, device), image, name=image_path)
    spatials = spatial_features(regions.boxes, regions.image_w, regions.image_h)  # [n, 6]
    return torch.from_numpy(regions.features), torch.from_numpy(spatials)


class EncodedQuestion(NamedTuple):
    """A question as the model reads it."""
    tokens: torch.Tensor  # [1, length] token ids, padded at the end
    words: list  # the words read (at most `length`)
    unknown: list  # those of them outside the dictionary
    cut: list  # the words beyond `length`, never read


def encode_question(question, dictionary, length=None):
    """The question as the datasets encode it (unknown words -> ntoken-1,
    cut to `length` (default 14), padded at the end)."""
    length = length or QUESTION_LENGTH
    words = split_words(question)
    if not words:
        raise UserError('the question %r has no words' % question)
    tokens = pad_tokens(dictionary.tokenize(question, False), length, dictionary.padding_idx)
    read = words[:length]
    unknown = [word for word in read if word not in dictionary.word2idx]
    return EncodedQuestion(torch.tensor([tokens], dtype=torch.long), read, unknown, words[length:])


def reading_notes(encoded, dictionary, what='question'):
    """Notes on what the model does not read as written: unknown words and
    the words past the length it reads."""
    notes = []
    if encoded.unknown:
        last = dictionary.idx2word[dictionary.ntoken - 1]
        shown = ', '.join(repr(word) for word in dict.fromkeys(encoded.unknown))
        if len(encoded.unknown) == len(encoded.words):
            notes.append('none of the words of the %s is in the model\'s dictionary (%s); the model reads each as '
                         'its last word %r, so the answer says nothing about the %s' % (what, shown, last, what))
        else:
            notes.append('not in the model\'s dictionary: %s; the model reads %s as its last word %r (the '
                         'original\'s rule), so the answer may be confident and wrong'
                         % (shown, 'it' if len(set(encoded.unknown)) == 1 else 'each', last))
    if encoded.cut:
        notes.append('the %s has %d words; the model reads the first %d and never sees %r'
                     % (what, len(encoded.words) + len(encoded.cut), len(encoded.words), ' '.join(encoded.cut)))
    return notes


def load_question_model(args):
    """(model in eval mode, dictionary, label2ans, features, spatials, device)."""
    device = runtime.resolve_device(args.device)
    dictionary = load_dictionary(args.dataroot, 'vqa')
    _, label2ans = load_answer_maps(args.dataroot)
    path = args.checkpoint
    # checked before a photo's (slow) feature extraction
    require_file(path, 'train a model with main.py or download the released checkpoint (see README)')
    if args.image_id is not None:
        features, spatials, _ = find_image_features(args.dataroot, args.image_id)
    elif args.image:
        features, spatials = photo_features(args.image, args.detector_weights, device)
    else:
        raise UserError('name the image: --image_id N (an image of the data root) or --image PHOTO')
    model, _ = checkpoints.model_from_checkpoint(args, 'vqa', path, device, dictionary.ntoken, features.size(1),
                                                 len(label2ans))
    return model.eval(), dictionary, label2ans, features, spatials, device


@torch.no_grad()
def answer(model, features, spatials, question_tokens, device):
    """(probabilities [n_ans], attention [G, n_boxes, 14]) for one image and question."""
    logits, att = model(features.unsqueeze(0).to(device), spatials.unsqueeze(0).to(device),
                        question_tokens.to(device), None)  # [1,n_ans], [1,G,N,14]
    return torch.sigmoid(logits[0]).cpu(), att[0].cpu()


def require_vqa(args, tool):
    if args.task != 'vqa':
        raise UserError('%s answers VQA questions, but %s is a model for --task %s%s'
                        % (tool, args.checkpoint, args.task, '; visualize.py draws what it grounds'
                           if args.task == 'flickr' else ''))


def main(argv=None):
    args = parse_args(argv)
    require_vqa(args, 'ask.py')
    model, dictionary, label2ans, features, spatials, device = load_question_model(args)
    encoded = encode_question(args.question, dictionary)
    for line in reading_notes(encoded, dictionary):
        note(line)
    probabilities, _ = answer(model, features, spatials, encoded.tokens, device)
    top = probabilities.topk(min(args.top, len(probabilities)))
    print('Q: %s' % args.question)
    for rank, (probability, label) in enumerate(zip(top.values.tolist(), top.indices.tolist()), 1):
        print('%d. %-20s %.3f' % (rank, label2ans[label], probability))
    return [(label2ans[label], p) for p, label in zip(top.values.tolist(), top.indices.tolist())]


if __name__ == '__main__':
    run_cli(main)
