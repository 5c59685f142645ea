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


def chunked_backward() -> str:
    """The solution's backward(), reading exercise 1's probs (and bndiff, unused) instead of
    logits: a training loop that keeps exercise 1's forward."""
    source = inspect.getsource(SOLUTION_MODULE.backward)
    chunked = source.replace("def backward(logits,", "def backward(probs, bndiff,").replace(
        "dlogits = F.softmax(logits, 1)", "dlogits = probs.clone()")
    assert chunked.count("probs") == 2, "the solution's backward() changed: update this test"
    return chunked


def test_a_backward_reading_exercise_1s_forward_tensors_is_given_them_and_graded(tmp_path):
    from grader.api import GradeRequest, grade_submission
    from grader.judge.grading import GradingOptions

    path = tmp_path / "chunked.py"
    path.write_text(SOLUTION.read_text() + "\n" + chunked_backward())
    result = grade_submission(path, request=GradeRequest(options=GradingOptions(
        exercises=("ex4",), train_steps=2)))
    ex4 = result.gradients()
    assert len(ex4) == 8 and all(g.passed for g in ex4), [(g.name, g.status) for g in ex4]
