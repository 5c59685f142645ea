"""Inside the sandbox: notice student code asking autograd for the gradients.

Set up in the sandbox's worker before it forks (grader.sandbox.worker.forkserver), or by the child
itself where there is no worker, so it runs in every child and never in the grader. Tensors reach
student code fresh off the wire, with no graph and no ``.grad``, so a gradient obtained through
autograd needs one of:

* the backward pass: ``Tensor.backward``, ``torch.autograd.grad``/``backward`` (``torch.func``
  and ``torch.autograd.functional`` call them), or the engine itself. Each entry point is replaced
  in every loaded module that holds it, and whatever path reached the engine, it unpacks the
  tensors the forward pass saved: a saved-tensors hook sees that, at the C++ level;
* forward-mode AD (``jacfwd``, ``jvp``, ``torch.autograd.forward_ad``): each enters a dual level,
  whose entry point is replaced everywhere it is held.

Each such use is recorded with the student's line whenever it happens (the grader's own code in
the sandbox never uses autograd, so no switch that code could reach is asked), and the child
sends each record to the grader at once; so is a process started by the student's code
(kind "process": a forked helper could run autograd out of sight) and a change to the watch
itself (kind "tamper": an entry point or hook replaced, the watch switched off). The wrappers
carry no ``__wrapped__``.

The child is the student's own process: a determined student can still switch this off. The
grader's static scan of the source (grader.judge.integrity, grader.judge.review) backs it up: signs
of reaching around the watch send the submission to review, which no code can switch off, and
the grader never trusts a reply.
"""

from __future__ import annotations

import importlib.machinery
import linecache
import os
import sys
from contextlib import contextmanager
from types import FrameType
from typing import Any, Callable, Iterator

import torch

__all__ = ["AutogradWatch"]

_MAX_EVENTS = 20           # flags: .grad read, requires_grad set
_MAX_KEPT = 100            # records that cost points or send to review
_FLAG_KINDS = ("grad", "requires_grad")


def _descriptor(name: str) -> Any:
    """The attribute as torch defines it on the tensor class (a C descriptor), before patching."""
    for klass in torch.Tensor.__mro__:
        if name in vars(klass):
            return vars(klass)[name]
    raise AttributeError(name)


def _replace_everywhere(replacements: dict[int, tuple[object, object]]) -> None:
    """Every loaded module's global bound to an original (``replacements``: id -> (original,
    replacement)) now holds its replacement: torch's own modules import some entry points by
    name (``from torch._C import _enter_dual_level``). One pass over the modules for all."""
    for module in list(sys.modules.values()):
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        for key, value in list(namespace.items()):
            found = replacements.get(id(value))
            if found is not None and found[0] is value:
                namespace[key] = found[1]


def _threads() -> int:
    """This process's threads (the sandbox's children have one)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:            # not Linux: no count
        return 1


def _named_like(wrapper: Callable[..., Any], fn: Callable[..., Any]) -> Callable[..., Any]:
    """``wrapper`` named as ``fn`` for help() and tracebacks, without the ``__wrapped__`` that
    functools.wraps would leave (a way back to the unwatched original)."""
    for attr in ("__name__", "__qualname__", "__doc__", "__module__"):
        try:
            setattr(wrapper, attr, getattr(fn, attr))
        except (AttributeError, TypeError):
            pass
    return wrapper


class _WrittenModuleFinder:
    """A meta-path finder that refuses modules found in ``folders`` (those the child may
    write): it asks the path finder where a module would come from, first."""

    def __init__(self, watch: AutogradWatch, folders: tuple[str, ...]) -> None:
        self.watch, self.folders = watch, folders

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        origin = getattr(spec, "origin", None) or ""
        if origin and os.path.realpath(origin).startswith(self.folders):
            self.watch._methods["record"](self.watch, "tamper", f"imports {name} from a file "
                                          "written at run time, which the grader cannot read")
            raise ImportError(f"no module {name} from a file your code wrote: the grader reads "
                              "every line it grades")
        return None


class _WatchedEngine:
    """Autograd's engine, its run_backward watched; everything else passed through."""

    def __init__(self, engine: Any, run_backward: Callable[..., Any]) -> None:
        self.run_backward = run_backward
        self._engine = engine

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)


class AutogradWatch:
    """Records autograd use by the code in ``filename`` while ``watching()``."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.cells: frozenset[str] = frozenset()   # lecture-style code: a file name per cell
        self.sink: Callable[[dict[str, str]], None] | None = None   # sends a record on its way
        self.active = False
        self.events: list[dict[str, str]] = []
        self._inside = 0         # autograd entry points calling one another record once
        self._installed: list[tuple[Any, str, Any]] = []    # (holder, name, what we put there)
        self._patch_functions()
        self._patch_properties()
        self._hooks = (self._pack, self._unpack)
        os.register_at_fork(before=self._on_fork)
        # what the watch is made of, to notice code that reaches it (through a wrapper's
        # closure) and replaces a part: an attribute added to it, a method of its class
        self._own = frozenset(vars(self)) | {"_own", "_methods", "_protected", "_finder"}
        self._methods = dict(vars(type(self)))

    def _install(self, holder: Any, name: str, value: Any) -> None:
        setattr(holder, name, value)
        self._installed.append((holder, name, value))

    def _patch_functions(self) -> None:
        """Wrap autograd's entry points and ``requires_grad_``, in the sandbox's processes only.
        A wrapper costs nothing per tensor operation, where a torch function mode would slow
        down every one of them. Tensor factories stay torch's own (TorchScript, which
        forward-mode AD uses, compiles any Python function in their place): a tensor made with
        ``requires_grad=True`` is flagged by the static scan, and its backward pass is seen
        here."""
        watch = self
        everywhere: dict[int, tuple[object, object]] = {}

        def entry_point(fn: Callable[..., Any], what: str) -> Callable[..., Any]:
            def watched(*args: Any, **kwargs: Any) -> Any:
                if not watch._inside:       # whatever the switch says: see _on_fork
                    watch.record("autograd", what)
                watch._inside += 1
                try:
                    return fn(*args, **kwargs)
                finally:
                    watch._inside -= 1
            return _named_like(watched, fn)

        requires_grad_ = torch.Tensor.requires_grad_

        def watched_requires_grad_(t: torch.Tensor, requires_grad: bool = True) -> torch.Tensor:
            if requires_grad:
                watch.record("requires_grad", "calls .requires_grad_() (rebuilds the graph)")
            return requires_grad_(t, requires_grad)

        self._install(torch.Tensor, "backward",
                      entry_point(torch.Tensor.backward, "calls Tensor.backward()"))
        self._install(torch.Tensor, "requires_grad_", watched_requires_grad_)
        for name in ("grad", "backward"):
            original = getattr(torch.autograd, name)
            watched = entry_point(original, f"calls torch.autograd.{name}()")
            everywhere[id(original)] = (original, watched)
            self._installed.append((torch.autograd, name, watched))
        # torch.func's grad, vjp, jacrev and hessian refuse to run beside saved-tensors hooks
        # (ours): they switch the hooks off first, which is where they are seen
        disable_hooks = torch._C._autograd._saved_tensors_hooks_disable
        watched_disable = entry_point(disable_hooks, "uses torch.func's autograd transforms "
                                                     "(grad, vjp, jacrev or hessian)")
        everywhere[id(disable_hooks)] = (disable_hooks, watched_disable)
        self._installed.append((torch._C._autograd, "_saved_tensors_hooks_disable",
                                watched_disable))
        # autograd's derivative formulas in torch's namespace (torch._log_softmax_backward_data
        # gives dlogits from dlogprobs): calling one takes autograd's answer as surely
        for name in [n for n in dir(torch) if "backward" in n]:
            original = getattr(torch, name)
            if callable(original):
                watched = entry_point(original, f"calls torch.{name}() (autograd's derivative "
                                                "formula)")
                everywhere[id(original)] = (original, watched)
                self._installed.append((torch, name, watched))
        # hooks the student pushes over the watch's own would take the unpacking (and so the
        # sight of a backward pass) from it: theirs are pushed wrapped, seen as the watch's are
        push_hooks = torch._C._autograd._push_saved_tensors_default_hooks

        def watched_push(pack: Callable[..., Any], unpack: Callable[..., Any]) -> None:
            if (pack, unpack) == watch._hooks:      # the watch's own
                return push_hooks(pack, unpack)

            def unpack_seen(t: Any) -> Any:
                watch._unpack(t)
                return unpack(t)
            return push_hooks(pack, unpack_seen)

        everywhere[id(push_hooks)] = (push_hooks, _named_like(watched_push, push_hooks))
        self._installed.append((torch._C._autograd, "_push_saved_tensors_default_hooks",
                                everywhere[id(push_hooks)][1]))
        # the engine itself (torch.autograd.Variable._execution_engine.run_backward), behind
        # backward() and grad(): seen when called directly too
        variable = torch.autograd.Variable
        engine = _WatchedEngine(vars(variable)["_execution_engine"],
                                entry_point(vars(variable)["_execution_engine"].run_backward,
                                            "runs autograd's engine"))
        self._install(variable, "_execution_engine", engine)
        enter_dual_level = torch._C._enter_dual_level
        watched_dual = entry_point(enter_dual_level,
                                   "uses forward-mode AD (jacfwd, jvp or forward_ad)")
        everywhere[id(enter_dual_level)] = (enter_dual_level, watched_dual)
        self._installed.append((torch._C, "_enter_dual_level", watched_dual))
        _replace_everywhere(everywhere)

    def _patch_properties(self) -> None:
        """``.requires_grad = True`` and reading ``.grad`` are attribute accesses, which the
        wrapped functions do not see: wrap the two properties (in the sandbox's processes
        only)."""
        requires_grad, grad = _descriptor("requires_grad"), _descriptor("grad")
        watch = self

        def get_requires_grad(t: torch.Tensor) -> bool:
            return requires_grad.__get__(t, type(t))

        def set_requires_grad(t: torch.Tensor, value: bool) -> None:
            if value and watch._called_from_student():
                watch.record("requires_grad", "sets .requires_grad = True (rebuilds the graph)")
            requires_grad.__set__(t, value)

        def get_grad(t: torch.Tensor) -> torch.Tensor | None:
            if watch._called_from_student():
                watch.record("grad", "reads .grad")
            return grad.__get__(t, type(t))

        def set_grad(t: torch.Tensor, value: torch.Tensor | None) -> None:
            grad.__set__(t, value)

        self._install(torch.Tensor, "requires_grad", property(get_requires_grad, set_requires_grad))
        self._install(torch.Tensor, "grad", property(get_grad, set_grad))

    @staticmethod
    def _pack(t: torch.Tensor) -> torch.Tensor:
        return t

    def _unpack(self, t: torch.Tensor) -> torch.Tensor:
        """The backward pass reads what the forward pass saved: autograd is computing a
        gradient, whichever Python path (or none) started the engine."""
        if not self._inside:
            self.record("autograd", "runs autograd's backward pass")
        return t

    def _on_fork(self) -> None:
        if self.active:
            self.record("process", "starts a process (a helper process could compute what the "
                                   "grader cannot see)")

    def _called_from_student(self) -> bool:
        frame = sys._getframe(2)
        return frame.f_code.co_filename == self.filename    # the static scan reads the cells

    def _is_student(self, filename: str) -> bool:
        return filename == self.filename or filename in self.cells

    def _student_line(self) -> str:
        frame: FrameType | None = sys._getframe(1)
        while frame is not None and not self._is_student(frame.f_code.co_filename):
            frame = frame.f_back
        if frame is None:
            return "your code"    # seen after it returned (a fork hook, the tamper check)
        filename = frame.f_code.co_filename
        source = linecache.getline(filename, frame.f_lineno).strip()
        if filename != self.filename:       # a cell's file, "nb.ipynb [cell 7]": as flags say it
            cell = filename[:-1].replace(" [", ", ", 1) if filename.endswith("]") else filename
            return f"{cell}, line {frame.f_lineno}" + (f": {source[:120]}" if source else "")
        where = f"{frame.f_code.co_name}()" if frame.f_code.co_name != "<module>" else "top level"
        return f"{where}, line {frame.f_lineno}" + (f": {source[:120]}" if source else "")

    def record(self, kind: str, what: str) -> None:
        """Keep ``kind``'s record: flags (reading .grad, requires_grad) up to _MAX_EVENTS, so
        that a flood of them can never crowd out a record of autograd used, of the watch
        changed or of a process started (kept up to _MAX_KEPT)."""
        flags = kind in _FLAG_KINDS
        if sum((e["kind"] in _FLAG_KINDS) == flags for e in self.events) >= (
                _MAX_EVENTS if flags else _MAX_KEPT):
            return                         # before the frame walk: a flood costs little
        event = {"kind": kind, "detail": f"{self._student_line()} {what}"}
        if event not in self.events:
            self.events.append(event)
            if self.sink is not None:
                self.sink(event)

    def take(self) -> list[dict[str, str]]:
        """The events since the last take()."""
        events, self.events = self.events, []
        return events

    def _changed(self) -> list[str]:
        """What of the watch the code it watched has replaced or switched off."""
        changed = [f"{getattr(holder, '__name__', type(holder).__name__)}.{name}"
                   for holder, name, value in self._installed if vars(holder).get(name) is not value]
        if not self.active:
            changed.append("the watch's switch")
        if self._inside != 0 or type(self.events) is not list:
            changed.append("the watch's state")
        finder = getattr(self, "_finder", None)
        if finder is not None and (not sys.meta_path or sys.meta_path[0] is not finder):
            changed.append("the import of written files")
            if finder in sys.meta_path:
                sys.meta_path.remove(finder)
            sys.meta_path.insert(0, finder)
        if _threads() > 1:      # saved-tensors hooks are per thread: another runs unwatched
            changed.append("a thread of its own running beside it")
        if set(vars(self)) - self._own or any(
                vars(type(self)).get(k) is not v for k, v in self._methods.items()):
            changed.append("the watch's recorder")
        if not torch._C._autograd._saved_tensors_hooks_is_enabled():
            changed.append("saved-tensors hooks (disabled)")
        elif torch._C._autograd._top_saved_tensors_default_hooks(False) != self._hooks:
            changed.append("the saved-tensors hooks")
        return changed + self._restored()

    def protect(self, *namespaces: Any) -> None:
        """Keep ``namespaces`` (a class or a module) as they are now: the grader's own code in
        the child uses them after the student's has run (torch.Tensor's methods to copy and
        send an answer, json to encode it), unwatched. A change the student's code makes to one
        is undone at the end of each watched block and before each reply, and is tampering
        (a replaced ``Tensor.detach`` could compute autograd's answer unseen)."""
        self._protected = [(ns, dict(vars(ns))) for ns in namespaces]

    def _restored(self) -> list[str]:
        changed: list[str] = []
        for ns, snapshot in getattr(self, "_protected", ()):
            now = vars(ns)
            if now == snapshot:            # the usual case: one C-level comparison
                continue
            name = getattr(ns, "__name__", "?")
            for key in [k for k in now if k not in snapshot or now[k] is not snapshot[k]]:
                changed.append(f"{name}.{key}")
                if key in snapshot:
                    setattr(ns, key, snapshot[key])
                else:
                    delattr(ns, key)
            for key in [k for k in snapshot if k not in now]:
                changed.append(f"{name}.{key}")
                setattr(ns, key, snapshot[key])
        return changed

    def refuse_imports_from(self, *folders: str) -> None:
        """Code the student writes to a file (in the folders a child may write) and imports
        would run unread by the grader's scan: refuse such an import, and record it."""
        self._finder = _WrittenModuleFinder(self, tuple(
            os.path.realpath(f).rstrip("/") + "/" for f in folders))
        sys.meta_path.insert(0, self._finder)

    def check_protected(self) -> None:
        """Before the child replies: undo and record any change to the protected namespaces
        made since the watched block ended (by a finalizer, a stream's flush, ...)."""
        changed = self._restored()
        if changed:
            self._methods["record"](self, "tamper", "changes what the grader's code uses: "
                                    + ", ".join(changed[:8]))

    @contextmanager
    def watching(self) -> Iterator[None]:
        """Watch the student code run inside this block."""
        if not torch._C._autograd._saved_tensors_hooks_is_enabled():
            torch._C._autograd._saved_tensors_hooks_enable()
        torch._C._autograd._push_saved_tensors_default_hooks(*self._hooks)
        self._inside = 0
        self.active = True
        try:
            yield
        finally:
            changed = self._changed()
            if changed:       # recorded by the method as it was: the student's may be a no-op
                self._methods["record"](self, "tamper", "changes the grader's autograd watch: "
                                        + ", ".join(changed))
            self.active = False
            self._pop_hooks()

    def _pop_hooks(self) -> None:
        """Take our hooks off the stack, with whatever the student pushed above them."""
        pop = torch._C._autograd._pop_saved_tensors_default_hooks
        top = torch._C._autograd._top_saved_tensors_default_hooks
        for _ in range(64):
            hooks = top(False)
            if hooks is None:
                return
            pop()
            if hooks == self._hooks:
                return
