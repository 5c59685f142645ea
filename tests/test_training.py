"""Exercise 4's training loop with a backward() (grader.lecture.training): the lecture's update,
in the parameters' shapes."""

from __future__ import annotations

import inspect

import pytest
import torch

from grader.judge.references import exercise4_reference
from grader.lecture.model import PARAMETER_NAMES, Config
from grader.lecture.training import batch_tensors, train_with_student_backward

from conftest import SOLUTION, reference_solution_module

SOLUTION_MODULE = reference_solution_module()
EX4 = Config().with_(n_hidden=200)
STEPS = 3


def _train(backward, **options):
    setup = exercise4_reference(EX4, STEPS).setup
    tensors = {**setup.params, **batch_tensors(setup.batches[:STEPS])}
    signature = list(inspect.signature(SOLUTION_MODULE.backward).parameters)
    return train_with_student_backward(backward, tensors, steps=STEPS, n=EX4.n, lr=0.1,
                                       signature=signature, **options)


def _reshaped(shapes):
    """The reference backward(), its gradients returned in other shapes (by parameter)."""
    def backward(**inputs):
        grads = SOLUTION_MODULE.backward(**inputs)
        return [g.reshape(shapes[name]) if name in shapes else g
                for name, g in zip(PARAMETER_NAMES, grads)]
    return backward


def test_gradients_with_size_1_dimensions_in_front_update_in_the_parameters_shapes():
    """(1, 200) for b1's (200,), which `p.data += -lr * grad` would refuse in place, and (200,)
    for bngain's (1, 200), which it would broadcast: the same training as in the right shapes."""
    params, losses = _train(SOLUTION_MODULE.backward)
    shapes = {"b1": (1, 200), "b2": (1, 1, 27), "bngain": (200,), "bnbias": (200,)}
    reshaped_params, reshaped_losses = _train(_reshaped(shapes))
    assert reshaped_losses == losses
    for name in PARAMETER_NAMES:
        assert reshaped_params[name].shape == params[name].shape
        assert torch.equal(reshaped_params[name], params[name]), name


@pytest.mark.parametrize("shapes", [{"b1": (200, 1)}, {"bngain": (200, 1)}, {"W2": (27, 200)}])
def test_any_other_shape_is_refused(shapes):
    with pytest.raises(TypeError, match="is not a tensor of shape"):
        _train(_reshaped(shapes))


def test_strict_shapes_refuse_size_1_dimensions_in_front_too():
    with pytest.raises(TypeError, match="the gradient for b1 is not a tensor of shape"):
        _train(_reshaped({"b1": (1, 200)}), strict_shapes=True)


CHUNKED_BACKWARD = '''
def backward(probs, Yb, n, h, W2, hpreact, bngain, bnvar_inv, bnraw, embcat, W1, emb, Xb, C,
             bndiff):
    # exercise 1's tensors (probs, bndiff), as a training loop that keeps exercise 1's forward
    dlogits = probs.clone()
    dlogits[range(n), Yb] -= 1
    dlogits /= n
    dh = dlogits @ W2.T
    dW2 = h.T @ dlogits
    db2 = dlogits.sum(0)
    dhpreact = (1.0 - h**2) * dh
    dbngain = (bnraw * dhpreact).sum(0, keepdim=True)
    dbnbias = dhpreact.sum(0, keepdim=True)
    dhprebn = bngain * bnvar_inv / n * (n * dhpreact - dhpreact.sum(0)
                                        - n / (n - 1) * bnraw * (dhpreact * bnraw).sum(0))
    dembcat = dhprebn @ W1.T
    dW1 = embcat.T @ dhprebn
    db1 = dhprebn.sum(0)
    demb = dembcat.view(emb.shape)
    dC = torch.zeros_like(C)
    dC.index_add_(0, Xb.view(-1), demb.view(-1, demb.shape[2]))
    return [dC, dW1, db1, dW2, db2, dbngain, dbnbias]
'''


def test_a_backward_reading_exercise_1s_forward_tensors_is_given_them_and_graded(tmp_path):
    from grader.api import GradeRequest, grade_submission
    from grader.judge.grading import GradingOptions

    path = tmp_path / "chunked.py"
    path.write_text(SOLUTION.read_text() + "\n" + CHUNKED_BACKWARD)
    result = grade_submission(path, request=GradeRequest(options=GradingOptions(
        exercises=("ex4",), train_steps=2)))
    ex4 = result.gradients()
    assert len(ex4) == 8 and all(g.passed for g in ex4), [(g.name, g.status) for g in ex4]
