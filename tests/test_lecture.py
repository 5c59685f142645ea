"""The lecture's data, init, batch and forward pass, reproduced to the bit."""

import dataclasses
import random

import pytest
import torch

from grader.lecture.model import (BN_SEED, Config, build_dataset, build_lecture_state, default_words,
                            read_words)

from conftest import NAMES, requires_names


def _notebook_examples(words, stoi, block_size):
    """The notebook's build_dataset loop, written out literally, as an independent check."""
    X, Y = [], []
    for w in words:
        context = [0] * block_size
        for ch in w + '.':
            ix = stoi[ch]
            X.append(context)
            Y.append(ix)
            context = context[1:] + [ix]
    return torch.tensor(X).reshape(-1, block_size), torch.tensor(Y)


def _lecture_notebook_setup(words):
    """The notebook's own cells, written out literally, as an independent check."""
    chars = sorted(list(set(''.join(words))))
    stoi = {s: i + 1 for i, s in enumerate(chars)}
    stoi['.'] = 0
    vocab_size = len(stoi)
    block_size = 3

    words = list(words)
    random.seed(42)
    random.shuffle(words)
    n1 = int(0.8 * len(words))
    Xtr, Ytr = _notebook_examples(words[:n1], stoi, block_size)
    n_embd, n_hidden = 10, 64
    g = torch.Generator().manual_seed(2147483647)
    C = torch.randn((vocab_size, n_embd), generator=g)
    W1 = torch.randn((n_embd * block_size, n_hidden), generator=g) * (5/3)/((n_embd * block_size)**0.5)
    b1 = torch.randn(n_hidden, generator=g) * 0.1
    W2 = torch.randn((n_hidden, vocab_size), generator=g) * 0.1
    b2 = torch.randn(vocab_size, generator=g) * 0.1
    ix = torch.randint(0, Xtr.shape[0], (32,), generator=g)
    return dict(C=C, W1=W1, b1=b1, W2=W2, b2=b2, Xb=Xtr[ix], Yb=Ytr[ix])


def test_embedded_words_are_real_names_over_the_lecture_vocabulary():
    words = default_words()
    assert len(words) > 5000
    assert {"mary", "james", "emma"} <= set(words)
    assert sorted(set("".join(words))) == [chr(c) for c in range(ord("a"), ord("z") + 1)]


def test_parameters_and_batch_match_the_notebook_to_the_bit_on_the_default_words():
    state = build_lecture_state(Config())
    ref = _lecture_notebook_setup(default_words())
    for name in ("C", "W1", "b1", "W2", "b2"):
        assert torch.equal(state.params[name], ref[name]), name
    assert torch.equal(state.Xb, ref["Xb"]) and torch.equal(state.Yb, ref["Yb"])


def _same(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)


def _assert_splits_are_the_notebook_s(words, block_size):
    data = build_dataset(tuple(words), block_size)
    shuffled = list(words)
    random.Random(42).shuffle(shuffled)
    n1, n2 = int(0.8 * len(shuffled)), int(0.9 * len(shuffled))
    for (X, Y), part in (((data.Xtr, data.Ytr), shuffled[:n1]),
                         ((data.Xdev, data.Ydev), shuffled[n1:n2]),
                         ((data.Xte, data.Yte), shuffled[n2:])):
        X_loop, Y_loop = _notebook_examples(part, data.stoi, block_size)
        assert _same(X, X_loop) and _same(Y, Y_loop), (words, block_size)


@pytest.mark.parametrize("block_size", [1, 3, 8])
def test_every_split_is_the_notebook_s_loop_to_the_bit(block_size):
    _assert_splits_are_the_notebook_s(default_words(), block_size)


def test_examples_of_odd_word_lists_are_the_notebook_s_loop():
    # empty words, one-letter words, '.' inside a word, splits with no words at all
    rng = random.Random(3)
    for words in (["ab"], [""], ["a"], ["", "", "ab"], ["a.b", "..", "b"],
                  ["".join(rng.choice("ab.") for _ in range(rng.randint(0, 6)))
                   for _ in range(40)]):
        for block_size in (1, 3):
            _assert_splits_are_the_notebook_s(words, block_size)


def test_bngain_and_bnbias_come_from_their_own_documented_seed():
    state = build_lecture_state(Config())
    g = torch.Generator().manual_seed(BN_SEED)
    assert torch.equal(state.params["bngain"], torch.randn((1, 64), generator=g) * 0.1 + 1.0)
    assert torch.equal(state.params["bnbias"], torch.randn((1, 64), generator=g) * 0.1)


def test_every_intermediate_has_an_autograd_gradient_with_its_shape():
    state = build_lecture_state(Config())
    for name, t in state.forward.items():
        if name != "loss":
            assert state.grads[f"d{name}"].shape == t.shape
    for name, p in state.params.items():
        assert state.grads[f"d{name}"].shape == p.shape


def test_building_twice_gives_the_same_loss():
    assert build_lecture_state(Config()).loss == build_lecture_state(Config()).loss


@requires_names
def test_names_txt_split_sizes_are_the_lecture_s():
    data = build_dataset(read_words(NAMES), 3)
    assert (data.Xtr.shape[0], data.Xdev.shape[0], data.Xte.shape[0]) == (182625, 22655, 22866)
    assert data.vocab_size == 27


@requires_names
def test_names_txt_forward_loss_is_the_documented_figure():
    assert build_lecture_state(Config(words=read_words(NAMES))).loss == 3.3345839977264404


@requires_names
def test_names_txt_parameters_and_batch_match_the_notebook():
    words = read_words(NAMES)
    state = build_lecture_state(Config(words=words))
    ref = _lecture_notebook_setup(words)
    for name in ("C", "W1", "b1", "W2", "b2", "Xb", "Yb"):
        actual = state.params.get(name, getattr(state, name, None))
        assert torch.equal(actual, ref[name]), name


def test_read_words_rejects_an_empty_file(tmp_path):
    p = tmp_path / "empty.txt"
    p.write_text("")
    with pytest.raises(ValueError, match="no words"):
        read_words(p)


def test_rounding_noise_is_measured_against_float64_for_every_gradient():
    state = build_lecture_state(Config())
    assert state.noise.keys() == state.grads.keys()
    assert all(0.0 <= v < 1e-5 for v in state.noise.values())
    assert state.noise["dlogprobs"] == 0.0          # -1/n is exact in float32 for n = 32


def test_the_largest_magnitude_of_each_gradient_is_remembered_per_state():
    state = build_lecture_state(Config())
    for name, g in state.grads.items():
        assert state.grad_abs_max(name) == float(g.abs().max()), name
    doubled = dataclasses.replace(state, grads={k: 2 * v for k, v in state.grads.items()})
    assert doubled.grad_abs_max("dlogits") == 2 * state.grad_abs_max("dlogits")
    assert "_grad_abs_max" not in {f.name for f in dataclasses.fields(state)}
