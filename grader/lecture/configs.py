"""Hidden configurations: the lecture's net at other sizes and seeds, so hard-coded sizes fail.

A gradient passes only if it passes in the lecture config *and* in every hidden config. The
default hidden configs change every size at once (batch n, n_embd, n_hidden, block_size and the
vocabulary), with an odd prime batch in one and the smallest batch Bessel's n-1 allows (n = 2) in
the other; when a gradient is correct in the lecture config and wrong in a hidden one, the grader
re-runs it with one size changed at a time to name the culprit ("correct at n=32, wrong at n=19:
is 32 hard-coded?").

Final grading and the self-check (``backprop-grader check``) use the same kinds of configs with
different seeds. ``HiddenConfigs`` is a plain value (numbers and strings only) so an assignment
file can fix the seed, replace the variants or turn the whole thing off.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from .model import Config

__all__ = [
    "DEFAULT_VARIANTS",
    "GRADING_SEED",
    "SELF_CHECK_SEED",
    "SIZE_FIELDS",
    "Dimension",
    "HiddenConfigs",
    "HiddenVariant",
    "changed_dimensions",
    "describe_hard_coding",
    "dimension_config",
    "resolve_hidden_configs",
    "vocab_size_of",
]

GRADING_SEED = 1_000_003      # final grading (instructors: set your own in the assignment config)
SELF_CHECK_SEED = 7_340_033   # backprop-grader check: same kinds of configs, other data

SIZE_FIELDS = ("n", "n_embd", "n_hidden", "block_size")


@dataclass(frozen=True)
class HiddenVariant:
    """One hidden config, as changes to the lecture config (None: keep the lecture's value)."""

    name: str
    n: int | None = None
    n_embd: int | None = None
    n_hidden: int | None = None
    block_size: int | None = None
    drop_letters: str = ""        # words with these letters are left out: a smaller vocabulary
    seed: int | None = None       # None: HiddenConfigs.seed plus the variant's position


DEFAULT_VARIANTS: tuple[HiddenVariant, ...] = (
    HiddenVariant("hidden-1", n=19, n_embd=7, n_hidden=23, block_size=4, drop_letters="qxz"),
    HiddenVariant("hidden-2", n=2, n_embd=5, n_hidden=11, block_size=2),
)


@dataclass(frozen=True)
class HiddenConfigs:
    """Which hidden configs to grade on besides the lecture's; ``enabled=False`` turns them off."""

    enabled: bool = True
    variants: tuple[HiddenVariant, ...] = DEFAULT_VARIANTS
    seed: int = GRADING_SEED
    configs: tuple[Config, ...] = field(default=(), repr=False)  # explicit configs, used as given
    exercise4: bool = True        # exercise 4's step-0 gradients also on the first hidden config

    @classmethod
    def off(cls) -> "HiddenConfigs":
        return cls(enabled=False)

    @classmethod
    def self_check(cls, seed: int | None = None) -> "HiddenConfigs":
        """What ``backprop-grader check`` runs: the grading variants with other seeds."""
        return cls(seed=SELF_CHECK_SEED if seed is None else seed)


def _validate(variant: HiddenVariant) -> None:
    sizes = {k: getattr(variant, k) for k in SIZE_FIELDS if getattr(variant, k) is not None}
    if "n" in sizes and sizes["n"] < 2:
        raise ValueError(f"hidden config {variant.name}: n = {sizes['n']}, but batch norm with "
                         "Bessel's correction needs n >= 2")
    for key, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"hidden config {variant.name}: {key} = {value!r}, expected a "
                             "positive integer")
    if not variant.drop_letters.isalpha() and variant.drop_letters:
        raise ValueError(f"hidden config {variant.name}: drop_letters {variant.drop_letters!r} "
                         "must be letters")


def _drop_letters(words: tuple[str, ...], letters: str, name: str) -> tuple[str, ...]:
    if not letters:
        return words
    banned = set(letters.lower())
    kept = tuple(w for w in words if not banned & set(w))
    if len(kept) < 100 or len(set("".join(kept))) < 2:
        raise ValueError(f"hidden config {name}: dropping the letters {letters!r} leaves "
                         f"{len(kept)} words, too few to build a data set")
    return kept


@functools.lru_cache(maxsize=32)
def resolve_hidden_configs(lecture: Config, hidden: HiddenConfigs) -> tuple[Config, ...]:
    """The hidden configs for ``lecture`` (sharing its word list, so names.txt carries over)."""
    if not hidden.enabled:
        return ()
    if hidden.configs:
        return hidden.configs
    configs = []
    words = lecture.resolved_words()
    for i, variant in enumerate(hidden.variants):
        _validate(variant)
        seed = variant.seed if variant.seed is not None else hidden.seed + i
        if seed == lecture.seed:
            seed += 1_000
        changes = {k: getattr(variant, k) for k in SIZE_FIELDS if getattr(variant, k) is not None}
        kept = _drop_letters(words, variant.drop_letters, variant.name)
        configs.append(lecture.with_(seed=seed, name=variant.name,
                                     words=kept if variant.drop_letters else lecture.words,
                                     **changes))
    return tuple(configs)


@functools.lru_cache(maxsize=32)
def vocab_size_of(config: Config) -> int:
    """'.' plus the distinct letters of the config's words (what build_dataset gives)."""
    return len(set("".join(config.resolved_words()))) + 1


@dataclass(frozen=True)
class Dimension:
    """One size that differs between the lecture config and a hidden one."""

    name: str          # "n", "n_embd", "n_hidden", "block_size", "vocab_size"
    lecture: int
    hidden: int

    def phrase(self, which: str) -> str:
        return f"{self.name}={getattr(self, which)}"


def changed_dimensions(base: Config, other: Config) -> tuple[Dimension, ...]:
    """The sizes that differ (the seed is not a size: it changes the data, not the shapes)."""
    dims = [Dimension(k, getattr(base, k), getattr(other, k)) for k in SIZE_FIELDS
            if getattr(base, k) != getattr(other, k)]
    if base.resolved_words() != other.resolved_words():
        vb, vo = vocab_size_of(base), vocab_size_of(other)
        if vb != vo:
            dims.append(Dimension("vocab_size", vb, vo))
    return tuple(dims)


def dimension_config(base: Config, other: Config, dim: Dimension) -> Config:
    """``base`` with only ``dim`` changed to ``other``'s value (to find which size breaks)."""
    if dim.name == "vocab_size":
        return base.with_(words=other.words, name=f"{base.name}, vocab_size={dim.hidden}")
    return base.with_(**{dim.name: dim.hidden}, name=f"{base.name}, {dim.name}={dim.hidden}")


def _or(values: list[str]) -> str:
    return values[0] if len(values) == 1 else ", ".join(values[:-1]) + " or " + values[-1]


def describe_hard_coding(culprits: tuple[Dimension, ...], *, base: Config, other: Config,
                         changed: tuple[Dimension, ...], tested: bool = True) -> str:
    """'correct at n=32, wrong at n=19: is 32 hard-coded?' (or the seed/data, if no size).

    ``culprits``: the sizes that break the answer when changed alone (``tested``: they were
    tried one at a time; otherwise every changed size is a suspect).
    """
    if culprits:
        right = ", ".join(d.phrase("lecture") for d in culprits)
        wrong = ", ".join(d.phrase("hidden") for d in culprits)
        values = _or([str(d.lecture) for d in culprits])
        use = "n or the tensors' shapes" if any(d.name == "n" for d in culprits) else \
            "the tensors' shapes (e.g. x.shape[1])"
        return (f"correct at {right}, wrong at {wrong}: is {values} hard-coded? "
                f"take sizes from {use}")
    sizes = ", ".join(d.phrase("hidden") for d in changed)
    if changed and not tested:
        values = _or([f"{d.lecture} ({d.name})" for d in changed])
        return (f"correct in the {base.name} config, wrong in {other.name} ({sizes}): is "
                f"{values} hard-coded?")
    if changed:
        return (f"correct in the {base.name} config, wrong in {other.name} ({sizes}, other "
                "data), though right when each size changes alone: something depends on the "
                "lecture's sizes together or on its data")
    return (f"correct in the {base.name} config, wrong in {other.name} (same sizes, other "
            "data): does your code depend on the lecture's particular numbers?")
