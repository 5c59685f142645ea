"""A grading request: everything that decides a grade, besides the submission itself."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..lecture.configs import HiddenConfigs, resolve_hidden_configs
from ..lecture.model import Config
from ..sandbox.limits import Limits
from .grading import GradingOptions

__all__ = ["GradeRequest", "exercise4_configs"]


@dataclass(frozen=True)
class GradeRequest:
    """Everything that decides a grade, besides the submission itself."""

    config: Config = field(default_factory=Config)
    # hidden configs: HiddenConfigs (the default variants with final grading's seeds; .off(),
    # .self_check(), fixed seeds or variants), or explicit Configs (() turns them off)
    hidden: HiddenConfigs | tuple[Config, ...] = HiddenConfigs()
    options: GradingOptions = field(default_factory=GradingOptions)
    limits: Limits = field(default_factory=Limits)

    def hidden_configs(self) -> tuple[Config, ...]:
        """The hidden configs this request grades on, besides ``config``."""
        if isinstance(self.hidden, HiddenConfigs):
            return resolve_hidden_configs(self.config, self.hidden)
        return tuple(self.hidden)


def exercise4_configs(request: GradeRequest) -> list[Config]:
    """Where exercise 4 is graded: the lecture config with the lecture's n_hidden = 200, then
    the first hidden config unless the request turns that off."""
    hidden = request.hidden_configs()
    configs = [request.config.with_(n_hidden=200)]
    if hidden and (not isinstance(request.hidden, HiddenConfigs) or request.hidden.exercise4):
        configs.append(hidden[0])
    return configs
