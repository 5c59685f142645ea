"""The lecture's model: data, init, forward pass, autograd's gradients (grader.lecture.model), the
net's names (names), the gradients the exercise asks for (catalog), the hidden configurations
(configs) and exercise 4's training loop (training). Imports nothing else of the grader: every
other package builds on it.

The model's public names are importable from here too (``from grader.lecture import Config``),
imported on first use: reading students' code needs the names, not torch.
"""

from __future__ import annotations

from importlib import import_module

_MODEL_NAMES = frozenset(("BN_SEED", "Config", "Dataset", "FORWARD_NAMES", "PARAMETER_NAMES",
                          "LectureState", "build_lecture_state", "cached_lecture_state",
                          "build_dataset", "chunked_forward", "default_words", "fused_forward",
                          "init_parameters", "read_words", "sample_batches",
                          "train_with_autograd"))


def __getattr__(name: str) -> object:
    if name not in _MODEL_NAMES:
        raise AttributeError(f"module 'grader.lecture' has no attribute {name!r}")
    return getattr(import_module(".model", __name__), name)


__all__ = sorted(_MODEL_NAMES)
