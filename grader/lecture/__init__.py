"""The lecture's model: data, init, forward pass, autograd's gradients (grader.lecture.model), the
gradients the exercise asks for (catalog), the hidden configurations (configs) and exercise 4's
training loop (training). Imports nothing else of the grader: every other package builds on it.
"""

from .model import *  # noqa: F403 - the model's public names, as grader.lecture.Config
from .model import __all__
