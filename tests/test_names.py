"""Reading the student's own names for the lecture's tensors, sizes, gradients and checker."""

from __future__ import annotations

import ast
import textwrap

from grader.submissions.names import resolve_names

LECTURE = """
n_embd = 10
n_hidden = 64
g = torch.Generator().manual_seed(2147483647)
C = torch.randn((vocab_size, n_embd), generator=g)
W1 = torch.randn((n_embd * block_size, n_hidden), generator=g) * (5/3)/((n_embd * block_size)**0.5)
b1 = torch.randn(n_hidden, generator=g) * 0.1
W2 = torch.randn((n_hidden, vocab_size), generator=g) * 0.1
b2 = torch.randn(vocab_size, generator=g) * 0.1
bngain = torch.randn((1, n_hidden))*0.1 + 1.0
bnbias = torch.randn((1, n_hidden))*0.1
batch_size = 32
n = batch_size
ix = torch.randint(0, Xtr.shape[0], (batch_size,), generator=g)
Xb, Yb = Xtr[ix], Ytr[ix]
emb = C[Xb]
embcat = emb.view(emb.shape[0], -1)
hprebn = embcat @ W1 + b1
bnmeani = 1/n*hprebn.sum(0, keepdim=True)
bndiff = hprebn - bnmeani
bndiff2 = bndiff**2
bnvar = 1/(n-1)*(bndiff2).sum(0, keepdim=True)
bnvar_inv = (bnvar + 1e-5)**-0.5
bnraw = bndiff * bnvar_inv
hpreact = bngain * bnraw + bnbias
h = torch.tanh(hpreact)
logits = h @ W2 + b2
logit_maxes = logits.max(1, keepdim=True).values
norm_logits = logits - logit_maxes
counts = norm_logits.exp()
counts_sum = counts.sum(1, keepdims=True)
counts_sum_inv = counts_sum**-1
probs = counts * counts_sum_inv
logprobs = probs.log()
loss = -logprobs[range(n), Yb].mean()
dlogprobs = torch.zeros_like(logprobs)
dlogprobs[range(n), Yb] = -1.0/n
cmp('logprobs', dlogprobs, logprobs)
"""

RENAMED = """
EMB_DIM = 10
HIDDEN = 64
BLOCK = 3
BATCH_SIZE = 32
V = 27
g = torch.Generator().manual_seed(2147483647)
C = torch.randn((V, EMB_DIM), generator=g)
W1 = torch.randn((BLOCK * EMB_DIM, HIDDEN), generator=g) * 0.2
b1 = torch.randn(HIDDEN, generator=g) * 0.1
W2 = torch.randn((HIDDEN, V), generator=g) * 0.1
b2 = torch.randn(V, generator=g) * 0.1
gamma = torch.randn((1, HIDDEN))*0.1 + 1.0
beta = torch.randn((1, HIDDEN))*0.1
batch = torch.randint(0, X_train.shape[0], (BATCH_SIZE,), generator=g)
X_batch, Y_batch = X_train[batch], Y_train[batch]
embeddings = C[X_batch]
embeddings_concat = embeddings.reshape(BATCH_SIZE, -1)
h_prebn = embeddings_concat @ W1 + b1
bn_mu = h_prebn.mean(dim=0, keepdims=True)
bn_diff = h_prebn - bn_mu
bn_diff_sq = bn_diff ** 2
bn_var = bn_diff_sq.sum(0, keepdim=True) / (BATCH_SIZE - 1)
bn_var_inv = (bn_var + 1e-5) ** -0.5
bn_raw = bn_diff * bn_var_inv
h_pre_act = gamma * bn_raw + beta
hidden = torch.tanh(h_pre_act)
logits = hidden @ W2 + b2
logits_maxes = logits.max(1, keepdim=True).values
norm_logits = logits - logits_maxes
counts = norm_logits.exp()
counts_sum = counts.sum(1, keepdims=True)
counts_sum_inv = counts_sum**-1
probs = counts * counts_sum_inv
logprobs = probs.log()
loss = -logprobs[torch.arange(BATCH_SIZE), Y_batch].mean()
dlogprobs = torch.zeros_like(logprobs)
dlogprobs[range(BATCH_SIZE), Y_batch] = -1.0/BATCH_SIZE
d_gain = (bn_raw * dh).sum(0, keepdim=True)
dhidden = dlogits @ W2.T
def compare_grad(name, dt, t):
    print(name, torch.allclose(dt, t.grad))
compare_grad('batch_norm_gain', d_gain, gamma)
compare_grad('the hidden layer', dhidden, hidden)
compare_grad('dh', dh, h_prebn)
"""


def statements(code: str) -> list[tuple[ast.stmt, str]]:
    return [(node, f"line {node.lineno}") for node in ast.parse(textwrap.dedent(code)).body]


def test_the_lectures_own_names_need_no_mapping():
    names = resolve_names(statements(LECTURE))
    assert names.tensors == {} and names.sizes == {} and names.gradients == {}
    assert names.checker == "cmp" and names.conflicts == ()


def test_renamed_forward_tensors_parameters_and_data_are_read_from_the_forward_pass():
    names = resolve_names(statements(RENAMED))
    assert names.tensors == {
        "X_batch": "Xb", "Y_batch": "Yb", "embeddings": "emb", "embeddings_concat": "embcat",
        "h_prebn": "hprebn", "bn_mu": "bnmeani", "bn_diff": "bndiff", "bn_diff_sq": "bndiff2",
        "bn_var": "bnvar", "bn_var_inv": "bnvar_inv", "bn_raw": "bnraw", "h_pre_act": "hpreact",
        "hidden": "h", "gamma": "bngain", "beta": "bnbias", "logits_maxes": "logit_maxes"}


def test_size_constants_are_bound_by_the_role_they_play_in_the_shapes():
    names = resolve_names(statements(RENAMED))
    assert names.sizes == {"BATCH_SIZE": "n", "V": "vocab_size", "EMB_DIM": "n_embd",
                           "BLOCK": "block_size", "HIDDEN": "n_hidden"}


def test_the_checker_is_found_by_what_it_is_called_with_whatever_its_name():
    names = resolve_names(statements(RENAMED))
    assert names.checker == "compare_grad"
    assert names.gradients["d_gain"] == "dbngain"         # by the tensor it is checked against
    assert names.gradients["dhidden"] == "dh"             # the gradient of their `hidden`
    assert "dh" not in names.gradients                    # a lecture name stays what it is


def test_a_value_no_form_matches_still_binds_the_names_it_is_used_with():
    code = LECTURE.replace("embcat = emb.view(emb.shape[0], -1)",
                           "embcat = torch.cat([emb[:, i] for i in range(3)], 1)")
    code = code.replace("emb = C[Xb]", "e = C[Xb]").replace("[emb[", "[e[")
    names = resolve_names(statements(code))
    assert names.tensors == {"e": "emb"}


def test_without_a_forward_pass_nothing_is_bound():
    names = resolve_names(statements("dlogprobs = torch.zeros_like(logprobs)\n"
                                     "cmp('logprobs', dlogprobs, logprobs)\n"))
    assert names.tensors == {} and names.sizes == {} and names.checker == "cmp"


def test_every_binding_says_where_it_was_learnt():
    names = resolve_names(statements(RENAMED))
    how = {b.student: b.how for b in names.bindings}
    assert how["embeddings"].startswith("your forward pass, line ")
    assert how["d_gain"] == "your compare_grad('batch_norm_gain', d_gain, gamma) at line 43"


def test_a_lecture_name_the_student_uses_for_another_tensor_is_not_bound_by_position():
    code = LECTURE.replace("logprobs = probs.log()", "logprobs = emb")
    names = resolve_names(statements(code))
    assert "emb" not in names.tensors             # their emb is the lecture's emb, not probs
