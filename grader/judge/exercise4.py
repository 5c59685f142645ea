"""Exercise 4: backward() of the lecture's training loop, its 7 gradients and K steps of SGD.

backward() is called once at step 0 with the training loop's tensors it asks for, and each
gradient it returns is judged against autograd's (grader.judge.references); then the training
loop runs K steps with it in the child, and its parameters and losses are compared with
autograd's run. On a hidden config only the step-0 gradients are graded.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..lecture.catalog import EXERCISE4_GRADIENTS, EXERCISE4_INPUT_NAMES, EXERCISE4_TRAINING
from ..lecture.model import PARAMETER_NAMES, Config
from ..lecture.training import batch_tensors
from ..output.results import PASSING
from ..sandbox.session import SandboxSession
from .compare import Comparison, Tolerance, compare_gradient
from .explain import EXERCISE4_REASON
from .grading import GradingOptions, Verdict, integrity_checked, judge_answer, outcome_verdict
from .hidden import culprits, hard_coding_message
from .references import Exercise4Setup, exercise4_reference, training_reference

__all__ = ["grade_exercise4", "grade_exercise4_hidden"]

# what backward() returns, in order: "7: [dC, dW1, db1, dW2, db2, dbngain, dbnbias]"
_RETURNS = (f"{len(EXERCISE4_GRADIENTS)}: "
            f"[{', '.join(g.name for g in EXERCISE4_GRADIENTS)}]")
# the parameters after K steps: a little looser than a gradient, rounding accumulates
_TRAINING_TOLERANCE = Tolerance(rtol=1e-4, atol_scale=1e-5)


def grade_exercise4(session: SandboxSession, params_of_backward: tuple[str, ...] | None,
                    config: Config, options: GradingOptions) -> list[Verdict]:
    """backward(): its 7 gradients at step 0, then K steps of SGD with it vs autograd's."""
    targets = (*EXERCISE4_GRADIENTS, EXERCISE4_TRAINING)
    if params_of_backward is None:
        return [Verdict(g, config, "isolated", "missing",
                        message="no function backward() in your file") for g in targets]
    problem = _backward_problem(params_of_backward)
    if problem:
        return [Verdict(g, config, "isolated", "error", message=problem) for g in targets]
    verdicts = _backward_verdicts(session, params_of_backward, config, options)
    verdicts.append(_grade_training(session, params_of_backward,
                                    exercise4_reference(config, options.train_steps).setup,
                                    options))
    return verdicts


def grade_exercise4_hidden(session: SandboxSession, params_of_backward: tuple[str, ...] | None,
                           lecture_verdicts: list[Verdict], lecture: Config, hidden: Config,
                           options: GradingOptions) -> list[Verdict]:
    """backward()'s step-0 gradients on one hidden config (training stays on the lecture's).

    A gradient right in the lecture config and wrong here is re-checked with one size changed at
    a time (one more call of backward() per size) to name the hard-coded one.
    """
    if params_of_backward is None or _backward_problem(params_of_backward):
        return []
    passed = {v.gradient.name for v in lecture_verdicts
              if v.gradient.exercise == "ex4" and v.passed and v.config == lecture}
    if not passed:
        return []
    verdicts = _backward_verdicts(session, params_of_backward, hidden, options, teach=False)
    failing = [v for v in verdicts if v.gradient.name in passed and not v.passed]
    if failing:
        alone: dict[Config, set[str]] = {}   # config -> the gradients that fail there

        def fails_alone_for(name: str) -> Callable[[Config], bool]:
            def fails(config: Config) -> bool:
                if config not in alone:
                    alone[config] = {v.gradient.name for v in _backward_verdicts(
                        session, params_of_backward, config, options, teach=False)
                        if not v.passed}
                return name in alone[config]
            return fails

        for v in failing:
            found = culprits(lecture, hidden, fails_alone_for(v.gradient.name))
            v.message = hard_coding_message(v, base=lecture, culprits=found)
    return [v for v in verdicts if v.gradient.name in passed]


def _backward_problem(params_of_backward: tuple[str, ...]) -> str | None:
    bad = [p for p in params_of_backward if p not in EXERCISE4_INPUT_NAMES]
    if bad:
        return (f"backward() asks for '{bad[0]}', which is not one of the training loop's "
                f"tensors ({', '.join(sorted(EXERCISE4_INPUT_NAMES))})")
    return None


def _backward_verdicts(session: SandboxSession, params_of_backward: tuple[str, ...],
                       config: Config, options: GradingOptions, *, teach: bool = True
                       ) -> list[Verdict]:
    """One call of backward() at step 0: a verdict for each of its 7 gradients. Without
    ``teach`` (a hidden config, whose verdicts show status, maxdiff and message only), an
    approximate one is compared briefly and not explained. No hints: the known mistakes are
    the stubs'."""
    ref = exercise4_reference(config, options.train_steps)
    outcome = session.call("backward", {p: ref.pool[p] for p in params_of_backward},
                           returns="list")
    verdicts: list[Verdict] = []
    for i, gradient in enumerate(EXERCISE4_GRADIENTS):
        if outcome.status != "ok":
            verdicts.append(outcome_verdict(gradient, config, "isolated", outcome))
            continue
        actual = outcome.tensors.get(str(i))
        if actual is None:
            verdicts.append(Verdict(gradient, config, "isolated", "error",
                                    message=f"backward() returned {len(outcome.tensors)} "
                                            f"tensors, expected {_RETURNS}"))
            continue
        verdict = judge_answer(gradient, config, "isolated", actual, ref.expected[gradient.name],
                               scale=ref.scales[gradient.name], options=options, teach=teach,
                               known_reason=EXERCISE4_REASON)
        verdicts.append(integrity_checked(verdict, session, outcome, options))
    return verdicts


def _grade_training(session: SandboxSession, signature: tuple[str, ...], setup: Exercise4Setup,
                    options: GradingOptions) -> Verdict:
    gradient, config = EXERCISE4_TRAINING, setup.config
    steps = options.train_steps
    expected_params, expected_losses = training_reference(config, steps, options.train_lr)
    outcome = session.request(
        {"op": "train", "steps": steps, "n": config.n, "lr": options.train_lr,
         "signature": list(signature), "strict_shapes": options.tolerance.strict_shapes},
        {**setup.params, **batch_tensors(setup.batches[:steps])},
        seconds=session.limits.call_seconds * 3)
    if outcome.status != "ok":
        return outcome_verdict(gradient, config, "isolated", outcome)
    losses = outcome.meta.get("losses")
    if not isinstance(losses, list) or len(losses) != steps or \
            not all(isinstance(x, (int, float)) for x in losses):
        return Verdict(gradient, config, "isolated", "error",
                       message="the training loop sent back no loss curve")
    worst: tuple[str, Comparison] | None = None
    exact = True
    for name in PARAMETER_NAMES:
        actual = outcome.tensors.get(name)
        if actual is None:
            return Verdict(gradient, config, "isolated", "error",
                           message=f"the training loop sent back no {name}")
        # brief: the worst parameter's is the only comparison shown, in full (below)
        cmp = compare_gradient(actual, expected_params[name], tolerance=_TRAINING_TOLERANCE,
                               brief=True)
        exact = exact and cmp.exact
        if _shown_instead(cmp, worst[1] if worst else None):
            worst = (name, cmp)
    loss_diff = max(abs(a - b) for a, b in zip(losses, expected_losses))
    assert worst is not None
    name, cmp = worst
    if cmp.status == "approx":
        cmp = compare_gradient(outcome.tensors[name], expected_params[name],
                               tolerance=_TRAINING_TOLERANCE)
    ok = cmp.status in PASSING and loss_diff <= 1e-4 * max(expected_losses)
    status = "exact" if exact and loss_diff == 0 else ("approx" if ok else "wrong")
    message = (f"after {steps} SGD steps (lr {options.train_lr:g}): loss {losses[-1]:.6f} vs "
               f"autograd's {expected_losses[-1]:.6f}; largest parameter difference "
               f"{'not finite' if cmp.maxdiff is None else format(cmp.maxdiff, '.3g')} in {name}")
    if status == "wrong" and cmp.message:
        message += f" ({cmp.message})"
    return integrity_checked(
        Verdict(gradient, config, "isolated", status, cmp, message=message,
                actual=torch.tensor(losses), expected=torch.tensor(expected_losses)),
        session, outcome, options)


def _shown_instead(cmp: Comparison, shown: Comparison | None) -> bool:
    """Whether a parameter's comparison is shown rather than the one shown so far: the first
    that fails, else the one with the largest difference."""
    if shown is None:
        return True
    if shown.status not in PASSING:
        return False
    return cmp.status not in PASSING or (cmp.maxdiff or 0) > (shown.maxdiff or 0)
