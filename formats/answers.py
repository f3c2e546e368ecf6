"""VQA answer normalisation, shared by the training labels and the official
metric (FORMATS.md section 1).

The steps follow the official VQA evaluation code, quirks included:

1. `process_punctuation`: each mark of `PUNCTUATION` is deleted when the
   ORIGINAL string has a space right before or after that mark, or contains a
   digit-comma-digit pattern anywhere; otherwise it is replaced by a space.
   Then every '.' not followed by a digit is deleted -- but at most 32 of them,
   because the official code passes `re.UNICODE` (== 32) where `re.sub`
   expects its `count` argument.
2. `process_digit_article`: lower-case, split on whitespace, map number words
   to digits, drop articles, restore contractions, join with single spaces.
   Contractions are looked up after lower-casing, so table keys that contain
   capitals ("Im", "Ive", ...) never match; that is kept on purpose.
3. Training labels additionally delete every remaining ',' (`preprocess_answer`).
   Step 1 already removes every ',' (it is one of the punctuation marks), so
   `preprocess_answer` and `normalize_answer` agree on every input; both are
   kept because the original names both steps.
"""
import functools
import re

PUNCTUATION = (';', '/', '[', ']', '"', '{', '}', '(', ')', '=', '+', '\\', '_', '-',
               '>', '<', '@', '`', ',', '?', '!')

NUMBER_WORDS = {'none': '0', 'zero': '0', 'one': '1', 'two': '2', 'three': '3', 'four': '4',
                'five': '5', 'six': '6', 'seven': '7', 'eight': '8', 'nine': '9', 'ten': '10'}

ARTICLES = frozenset(('a', 'an', 'the'))

# The official VQA evaluation table, written out as data, alphabetically by
# its first letter. Oddities of the official table are kept as they are:
# keys with capitals (never matched), identity entries ("let's", "she's") and
# "somebody'd" -> "somebodyd".
CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't",
    "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't",
    "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've",
    "hes": "he's", "howd": "how'd", "howll": "how'll", "hows": "how's",
    "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've",
    "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've",
    "itll": "it'll",
    "let's": "let's",
    "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've",
    "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't",
    "mustve": "must've",
    "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at",
    "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at",
    "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's",
    "shouldve": "should've", "shouldnt": "shouldn't", "shouldnt've": "shouldn't've",
    "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've",
    "somethingll": "something'll",
    "thats": "that's", "thered": "there'd", "thered've": "there'd've",
    "there'dve": "there'd've", "therere": "there're", "theres": "there's",
    "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've",
    "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas",
    "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've",
    "werent": "weren't", "whatll": "what'll", "whatre": "what're", "whats": "what's",
    "whatve": "what've", "whens": "when's", "whered": "where'd", "wheres": "where's",
    "whereve": "where've", "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've",
    "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
    "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've",
    "wouldnt": "wouldn't", "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've",
    "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll",
    "youre": "you're", "youve": "you've",
}

# The official pattern is "(?!<=\d)(\.)(?!\d)"; its first group is a malformed
# look-behind that can never fail in front of a '.', so only the look-ahead acts.
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r'\.(?!\d)')
_DIGIT_COMMA_DIGIT = re.compile(r'\d,\d')
# re.UNICODE passed as the `count` argument of re.sub in the official code.
_OFFICIAL_PERIOD_COUNT = int(re.UNICODE)

SCORE_OF_COUNT = (0.0, 0.3, 0.6, 0.9)


def process_punctuation(text):
    """Step 1 and 2: punctuation marks and periods (see the module docstring)."""
    delete_marks = _DIGIT_COMMA_DIGIT.search(text) is not None
    out = text
    for mark in PUNCTUATION:
        if delete_marks or mark + ' ' in text or ' ' + mark in text:
            out = out.replace(mark, '')
        else:
            out = out.replace(mark, ' ')
    return _PERIOD_NOT_BEFORE_DIGIT.sub('', out, count=_OFFICIAL_PERIOD_COUNT)


def process_digit_article(text):
    """Step 3: lower-case, number words -> digits, drop articles, contractions."""
    words = [NUMBER_WORDS.get(word, word) for word in text.lower().split()]
    return ' '.join(CONTRACTIONS.get(word, word) for word in words if word not in ARTICLES)


@functools.lru_cache(maxsize=1 << 18)
def normalize_answer(text):
    """Steps 1-3: the normalisation the official metric applies. Cached: the
    VQA answers repeat a lot (the metric normalises ~2M human answers)."""
    return process_digit_article(process_punctuation(text))


def preprocess_answer(text):
    """Steps 1-4: the normalisation of training labels (also drops ',')."""
    return normalize_answer(text).replace(',', '')


def get_score(count):
    """Soft target of an answer given by `count` of the 10 annotators:
    0, .3, .6, .9 for 0-3 annotators and 1.0 from 4 on."""
    if count < 0:
        raise ValueError('an answer count cannot be negative, got %r' % count)
    if count < len(SCORE_OF_COUNT):
        return SCORE_OF_COUNT[count]
    return 1.0


def clean_whitespace(text):
    """The official metric's first step on every answer: tabs and newlines
    become spaces, then the ends are stripped."""
    return text.replace('\n', ' ').replace('\t', ' ').strip()


def answers_for_metric(human_answers, result_answer):
    """Return (human answers, result answer) as the official metric compares
    them: whitespace-cleaned, and normalised with `normalize_answer` only when
    the cleaned human answers are not all identical."""
    humans = [clean_whitespace(answer) for answer in human_answers]
    result = clean_whitespace(result_answer)
    if len(set(humans)) > 1:
        humans = [normalize_answer(answer) for answer in humans]
        result = normalize_answer(result)
    return humans, result
