import pytest

from keras_segattn.core.vocabulary import SPECIAL_TOKENS, CaptionVocabulary, check_vocabulary
from keras_segattn.data import CaptionVocabulary as DataVocabulary
from keras_segattn.models.captioning import check_vocabulary as model_check


def test_there_is_one_vocabulary():
    assert DataVocabulary is CaptionVocabulary and model_check is check_vocabulary
    assert SPECIAL_TOKENS == ("<pad>", "<unk>", "<start>", "<end>")


@pytest.mark.parametrize(
    "words, message",
    [
        ("abc", "list of str"),
        (["<pad>", "<start>", "<end>", "<unk>", "a"], "start with the special tokens"),
        ([*SPECIAL_TOKENS], "no word besides"),
        ([*SPECIAL_TOKENS, "a", "a"], "unique"),
        ([*SPECIAL_TOKENS, " a"], "surrounding spaces"),
    ],
)
def test_check_vocabulary_names_the_argument(words, message):
    with pytest.raises(ValueError, match=f"vocabulary.*{message}|{message}"):
        check_vocabulary(words)
