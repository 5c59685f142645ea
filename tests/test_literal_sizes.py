"""Literal sizes in lecture-style code are named, with the size they stand for."""

from grader.judge.literal_sizes import literal_size_message
from grader.lecture.configs import HiddenConfigs, resolve_hidden_configs
from grader.lecture.model import Config
from grader.submissions.lecture_source import read_lecture_code

LECTURE = Config()
HIDDEN_1, HIDDEN_2 = resolve_hidden_configs(LECTURE, HiddenConfigs())


def statements(code: str):
    return read_lecture_code(code, name="s.py", cells=False).statements


def test_a_view_with_the_lectures_sizes_names_each_literal():
    message = literal_size_message(statements("demb = dembcat.view(32, 3, 10)\n"),
                                   lecture=LECTURE, other=HIDDEN_1)
    assert message.startswith("correct in the lecture config, wrong in hidden-1 (n=19, n_embd=7, "
                              "n_hidden=23, block_size=4, vocab_size=24): ")
    assert "the literal 32 at line 1 is the lecture's n (19 in hidden-1)" in message
    assert "the literal 3 at line 1 is the lecture's block_size (4 in hidden-1): use Xb.shape[1]" \
        in message
    assert "the literal 10 at line 1 is the lecture's n_embd (7 in hidden-1)" in message


def test_embcats_width_is_recognised_as_n_embd_times_block_size():
    message = literal_size_message(statements("x = dembcat.view(-1, 30)\n"), lecture=LECTURE,
                                   other=HIDDEN_1)
    assert "the literal 30 at line 1 is the lecture's n_embd * block_size (28 in hidden-1)" \
        in message


def test_small_numbers_and_sizes_the_config_keeps_say_nothing():
    assert literal_size_message(statements("y = x.sum(1) * 2 + 0\n"), lecture=LECTURE,
                                other=HIDDEN_1) is None
    same_vocab = HIDDEN_2                      # hidden-2 keeps the lecture's vocabulary
    assert literal_size_message(statements("y = F.one_hot(Yb, 27)\n"), lecture=LECTURE,
                                other=same_vocab) is None
