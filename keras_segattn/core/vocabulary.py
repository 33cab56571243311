"""The one caption vocabulary of the package.

Token ids: `<pad>` = 0, `<unk>` = 1, `<start>` = 2, `<end>` = 3, then the
words. The data pipelines encode with it, the captioner stores its word list
in its config and decodes with it, and `encode_captions` makes the
teacher-forcing arrays from it, so every part agrees on what an id means.
"""

import collections
import collections.abc
import json
import numbers
import os

import keras
import numpy as np
import tensorflow as tf

from keras_segattn.core.saving import write_text

PAD, UNK, START, END = "<pad>", "<unk>", "<start>", "<end>"
SPECIAL_TOKENS = (PAD, UNK, START, END)

# Keras' default punctuation set. Apostrophes are deleted ("dog's" -> "dogs")
# and the rest become spaces, so "t-shirt" or "black/white" do not fuse into
# one rare word. "<" and ">" are in the set, so no text can ever produce a
# special token.
_APOSTROPHES = "['\u2019]"
_PUNCTUATION = r"[!\"#$%&()*+,\-./:;<=>?@\[\\\]^_`{|}~]"


def standardize_captions(captions):
    """Lowercases captions and strips punctuation, as the vocabulary does.

    Apostrophes are deleted (`"dog's"` -> `"dogs"`), other punctuation
    becomes a space (`"t-shirt"` -> `"t shirt"`).

    Args:
        captions: str tensor of any shape.

    Returns:
        A tf.string tensor of the same shape.
    """
    text = tf.strings.lower(tf.convert_to_tensor(captions, tf.string), encoding="utf-8")
    text = tf.strings.regex_replace(text, _APOSTROPHES, "")
    return tf.strings.regex_replace(text, _PUNCTUATION, " ")


def _flatten(items):
    for item in items:
        if isinstance(item, (str, bytes)):
            yield item
        elif isinstance(item, tf.Tensor):
            yield from item.numpy().reshape(-1).tolist()
        elif isinstance(item, np.ndarray):
            yield from item.reshape(-1).tolist()
        elif isinstance(item, collections.abc.Iterable):
            yield from _flatten(item)
        else:
            yield item


def _caption_list(captions, name="captions"):
    """Flattens a str, nested lists, arrays, tensors or a caption dataset."""
    if isinstance(captions, tf.data.Dataset):
        spec = captions.element_spec
        if isinstance(spec, dict):
            if "captions" not in spec:
                raise ValueError(
                    f"{name} dataset elements must have a 'captions' key; got {sorted(spec)}"
                )
            captions = captions.map(lambda ex: ex["captions"])
        captions = list(captions.as_numpy_iterator())
    elif isinstance(captions, (str, bytes)):
        captions = [captions]
    elif not isinstance(captions, (collections.abc.Iterable, tf.Tensor)):
        raise ValueError(
            f"{name} must be a str, an iterable of str or a caption dataset; "
            f"got {type(captions).__name__}"
        )
    out = []
    for i, c in enumerate(_flatten([captions])):
        if isinstance(c, bytes):
            c = c.decode("utf-8")
        if not isinstance(c, str):
            raise ValueError(f"{name} must hold strings; item {i} is {type(c).__name__} {c!r}")
        out.append(c)
    return out


def check_vocabulary(words, name="vocabulary"):
    """Returns `words` as a list of str, or raises a ValueError naming `name`.

    Index = token id: the list starts with `SPECIAL_TOKENS` (`<pad>`,
    `<unk>`, `<start>`, `<end>`), holds at least one word besides them, and
    every token is a unique, non-empty str without surrounding spaces.
    """
    if isinstance(words, (str, bytes)) or not isinstance(words, (list, tuple)):
        raise ValueError(
            f"{name} must be a list of str where index = token id; got {type(words).__name__}"
        )
    words = list(words)
    if tuple(words[:4]) != SPECIAL_TOKENS:
        raise ValueError(
            f"{name} must start with the special tokens {list(SPECIAL_TOKENS)}; got {words[:4]}"
        )
    bad = [w for w in words if not isinstance(w, str) or not w or w != w.strip()]
    if bad:
        raise ValueError(
            f"{name} must hold non-empty strings without surrounding spaces; got {bad[:5]}"
        )
    duplicates = [w for w, n in collections.Counter(words).items() if n > 1]
    if duplicates:
        raise ValueError(f"{name} words must be unique; repeated: {duplicates[:5]}")
    if len(words) == len(SPECIAL_TOKENS):
        raise ValueError(f"{name} has no word besides the special tokens")
    return words


def encode_captions(captions, vocabulary, max_length):
    """Teacher-forcing arrays for a batch of captions.

    A caption of words `w_1 .. w_n` gives `input_ids = [<start>, w_1, ..,
    w_n]` and `targets = [w_1, .., w_n, <end>]`, both padded with `<pad>`
    (0) to `max_length`; captions of more than `max_length - 1` words are
    cut. Text is standardised and encoded by `CaptionVocabulary.encode`.

    Args:
        captions: str or list of str.
        vocabulary: a `CaptionVocabulary` or its word list.
        max_length: int. The captioner's `max_length`.

    Returns:
        `(input_ids, targets)`, two int32 arrays `(len(captions), max_length)`.

    Raises:
        ValueError: as `CaptionVocabulary.encode` (an empty caption, or one
            of unknown words only, named with its index).
    """
    if not isinstance(vocabulary, CaptionVocabulary):
        vocabulary = CaptionVocabulary(vocabulary)
    if not isinstance(max_length, numbers.Integral) or max_length < 2:
        raise ValueError(f"max_length must be an int >= 2; got {max_length!r}")
    ids = np.atleast_2d(vocabulary.encode(captions, max_length + 1).numpy())
    input_ids, targets = ids[:, :-1].copy(), ids[:, 1:]
    input_ids[targets == vocabulary.pad_id] = vocabulary.pad_id  # `<end>` is never an input
    return input_ids, targets


class CaptionVocabulary:
    """Word <-> id mapping for captions, built on `keras.layers.StringLookup`.

    Ids: `<pad>` = 0, `<unk>` = 1, `<start>` = 2, `<end>` = 3, then the
    words by decreasing count (ties alphabetical). Text is standardised by
    `standardize_captions` (lowercase, punctuation stripped) and split on
    whitespace; since `<` and `>` are stripped, text never yields a special
    token. The whole state is the word list, so `get_config()` is plain
    JSON and `save` / `load` store it beside a model.

    Args:
        words: list of str. Every token in id order, starting with
            `SPECIAL_TOKENS`; normally made by `CaptionVocabulary.build`.

    Raises:
        ValueError: if `words` does not start with the special tokens,
            repeats a token or holds an empty or non-string one.

    Examples:
        >>> vocab = CaptionVocabulary.build(["A red circle.", "a blue square"])
        >>> ids = vocab.encode(["a red square"], max_length=6)
        >>> ids.numpy().tolist()
        [[2, 4, 7, 8, 3, 0]]
        >>> vocab.decode(ids)
        ['a red square']
    """

    def __init__(self, words):
        words = check_vocabulary(words, "words")
        self._words = words
        self._lookup = keras.layers.StringLookup(
            vocabulary=words[2:], mask_token=PAD, oov_token=UNK, num_oov_indices=1
        )

    pad_id, unk_id, start_id, end_id = 0, 1, 2, 3

    @property
    def words(self):
        """All tokens, index = id, special tokens first."""
        return list(self._words)

    @property
    def size(self):
        """Number of ids, special tokens included."""
        return len(self._words)

    def __len__(self):
        return len(self._words)

    def __repr__(self):
        return f"CaptionVocabulary(size={self.size})"

    @classmethod
    def build(cls, captions, max_tokens=None, min_count=1):
        """Builds a vocabulary from training captions.

        Args:
            captions: str, list or array of str (nested lists are
                flattened), a string tensor, or a caption `tf.data.Dataset`
                (iterated; images are decoded on the way).
            max_tokens: int or `None`. Largest vocabulary size, the 4
                special tokens included: the most frequent words are kept.
                Defaults to `None` (no limit).
            min_count: int. Words seen fewer times are left out (they
                become `<unk>`). Defaults to `1`.

        Returns:
            A `CaptionVocabulary`.

        Raises:
            ValueError: if there are no captions, a caption has no word
                after standardisation (naming it and its index),
                `max_tokens` < 5 or `min_count` < 1.
        """
        if max_tokens is not None and (
            not isinstance(max_tokens, numbers.Integral) or max_tokens < len(SPECIAL_TOKENS) + 1
        ):
            raise ValueError(
                f"max_tokens must be None or an int >= {len(SPECIAL_TOKENS) + 1} "
                f"(it counts the {len(SPECIAL_TOKENS)} special tokens); got {max_tokens!r}"
            )
        if not isinstance(min_count, numbers.Integral) or min_count < 1:
            raise ValueError(f"min_count must be an int >= 1; got {min_count!r}")
        texts = _caption_list(captions)
        if not texts:
            raise ValueError("captions is empty; expected at least one caption")
        tokens = tf.strings.split(standardize_captions(texts))
        lengths = tokens.row_lengths().numpy()
        empty = np.flatnonzero(lengths == 0)
        if empty.size:
            i = int(empty[0])
            raise ValueError(
                f"captions contains {empty.size} empty caption(s) (no word after "
                f"lowercasing and stripping punctuation), first at index {i}: {texts[i]!r}"
            )
        counts = collections.Counter(w.decode("utf-8") for w in tokens.flat_values.numpy())
        ranked = sorted(
            (w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w)
        )
        if max_tokens is not None:
            ranked = ranked[: max_tokens - len(SPECIAL_TOKENS)]
        return cls(list(SPECIAL_TOKENS) + ranked)

    def encode(self, captions, max_length):
        """Turns captions into `<start> w1 .. wn <end>` id rows padded with 0.

        A caption longer than `max_length - 2` words is cut, keeping its
        `<end>`; words the vocabulary does not know become `<unk>` (a caption
        of unknown words only, "Xylophones.", is still a caption). Works
        eagerly and inside `tf.data` / `tf.function`; in a graph the check
        below becomes an assertion that fails with `InvalidArgumentError`
        when run.

        Args:
            captions: str or 1-D str tensor / list / array.
            max_length: int. Row length, `<start>` and `<end>` included,
                at least 3.

        Returns:
            An int32 tensor `(max_length,)` for one str, else
            `(num_captions, max_length)`.

        Raises:
            ValueError: if `max_length` < 3, or (eagerly) a caption has no
                word (naming it and its index).
        """
        if not isinstance(max_length, numbers.Integral) or max_length < 3:
            raise ValueError(
                f"max_length must be an int >= 3 (<start>, a word, <end>); got {max_length!r}"
            )
        captions = tf.convert_to_tensor(captions, tf.string)
        scalar = captions.shape.rank == 0
        if captions.shape.rank not in (0, 1):
            raise ValueError(
                f"captions must be a str or a 1-D list of str; got shape {captions.shape}"
            )
        batch = tf.reshape(captions, [-1])
        words = tf.strings.split(standardize_captions(batch))
        ids = words.with_flat_values(tf.cast(self._lookup(words.flat_values), tf.int32))
        num_words = ids.row_lengths()
        if tf.executing_eagerly():
            self._check_eager(batch.numpy(), num_words.numpy())
        else:
            check = tf.debugging.Assert(
                tf.reduce_all(num_words > 0),
                [
                    "CaptionVocabulary.encode: a caption is empty (no word after "
                    "standardisation; caption_pipeline skips these):",
                    tf.boolean_mask(batch, num_words == 0),
                ],
                summarize=3,
            )
            with tf.control_dependencies([check]):
                ids = tf.identity(ids)
        ids = ids[:, : max_length - 2]
        rows = tf.shape(batch, out_type=tf.int64)[:1]
        start = tf.fill(tf.concat([rows, [1]], 0), self.start_id)
        end = tf.fill(tf.concat([rows, [1]], 0), self.end_id)
        ids = tf.concat([start, ids, end], axis=1)
        ids = ids.to_tensor(default_value=self.pad_id, shape=[None, max_length])
        return ids[0] if scalar else ids

    def _check_eager(self, texts, num_words):
        idx = np.flatnonzero(num_words == 0)
        if idx.size:
            i = int(idx[0])
            text = texts[i].decode("utf-8", "replace")
            raise ValueError(
                f"captions holds {idx.size} empty caption(s) (no word after "
                f"standardisation), first at index {i}: {text!r}"
            )

    def decode(self, ids):
        """Turns id rows back into text.

        Reading stops at the first `<end>`; `<pad>` and `<start>` are
        dropped and unknown words come out as `<unk>`.

        Args:
            ids: int array or tensor, `(length,)` or `(num_captions, length)`.

        Returns:
            A str for 1-D `ids`, else a list of str, one per row.

        Raises:
            ValueError: if `ids` are not integers, not 1-D or 2-D, or an id
                is negative or >= `size` (naming them).
        """
        array = np.asarray(ids.numpy() if isinstance(ids, tf.Tensor) else ids)
        if array.size and not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"ids must be integers; got dtype {array.dtype}")
        if array.ndim not in (1, 2):
            raise ValueError(f"ids must be 1-D or 2-D; got shape {array.shape}")
        bad = np.unique(array[(array < 0) | (array >= self.size)])
        if bad.size:
            raise ValueError(
                f"ids holds {bad[:10].tolist()}, out of range for a vocabulary of "
                f"{self.size} tokens (valid ids are 0..{self.size - 1})"
            )
        rows = [self._decode_row(row) for row in np.atleast_2d(array)]
        return rows[0] if array.ndim == 1 else rows

    def _decode_row(self, row):
        out = []
        for i in row.tolist():
            if i == self.end_id:
                break
            if i not in (self.pad_id, self.start_id):
                out.append(self._words[i])
        return " ".join(out)

    def get_config(self):
        """Returns `{"words": [...]}`, plain JSON."""
        return {"words": list(self._words)}

    @classmethod
    def from_config(cls, config):
        """Rebuilds a vocabulary from `get_config()`'s output."""
        if not isinstance(config, dict) or "words" not in config:
            raise ValueError(f"config must be a dict with 'words'; got {config!r:.100}")
        return cls(config["words"])

    def save(self, path):
        """Writes the config as JSON to `path` (e.g. `vocab.json`), atomically: a
        kill leaves the old file or the new one."""
        write_text(os.fspath(path), json.dumps(self.get_config(), ensure_ascii=False, indent=0))

    @classmethod
    def load(cls, path):
        """Reads a vocabulary written by `save`.

        Raises:
            ValueError: if `path` does not exist or is not a saved
                vocabulary (naming it).
        """
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise ValueError(f"Vocabulary file '{path}' does not exist")
        try:
            with open(path, encoding="utf-8") as f:
                config = json.load(f)
            return cls.from_config(config)
        except (json.JSONDecodeError, ValueError) as e:
            raise ValueError(f"'{path}' is not a saved CaptionVocabulary: {e}") from None
