"""What the student's code raised, told safely: its message, its own frames, the limit it hit.

Student exceptions may have a hostile ``__str__`` or ``__repr__``; nothing here lets one escape.
"""

from __future__ import annotations

import errno
import traceback
from typing import Any

__all__ = ["exception_message", "exception_reply", "limit_hit", "safe_text",
           "student_traceback"]

_MAX_TRACEBACK = 4000
_MIB = 2**20


def safe_text(value: object, limit: int = 300) -> str:
    """str() of something the student made, which may refuse to be printed."""
    try:
        return str(value)[:limit]
    except BaseException:  # a hostile __str__
        return f"<a {type(value).__name__} that cannot be printed>"


def student_traceback(exc: BaseException, filename: str | frozenset[str]) -> str:
    """The student's own frames only (in ``filename``, or any of several), then the exception
    line."""
    files = {filename} if isinstance(filename, str) else filename
    try:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename in files]
        lines = traceback.format_list(frames) if frames else []
        lines += traceback.format_exception_only(type(exc), exc)
    except BaseException:  # a hostile exception
        lines = [f"{type(exc).__name__}: {safe_text(exc)}\n"]
    text = "".join(lines)
    if len(text) > _MAX_TRACEBACK:
        text = text[:_MAX_TRACEBACK] + "\n... (traceback cut)"
    return text


def limit_hit(exc: BaseException, limits: dict[str, Any]) -> tuple[str, str] | None:
    """(limit name, message) when an exception says the student's code ran into a limit."""
    text = safe_text(exc, 1000)
    if isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError)
                                        and "can't allocate memory" in text):
        return "memory", (f"ran out of memory: the limit is {limits['memory_bytes'] // _MIB:,} MiB "
                          "(limit: memory)")
    if isinstance(exc, OSError) and exc.errno == errno.EAGAIN or \
            isinstance(exc, RuntimeError) and "can't start new thread" in text:
        if limits.get("loaded"):
            return "processes", ("tried to start a process or thread after your file had run: "
                                 "none may start then, and the exercise needs none (limit: "
                                 "processes)")
        return "processes", (f"could not start another process or thread: at most "
                             f"{limits['max_processes']} are allowed (limit: processes)")
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC and limits.get("own_namespaces"):
        return "temporary space", (f"filled its temporary folder: "
                                   f"{int(limits['tmp_bytes']) // _MIB:,} MiB at most (limit: "
                                   "temporary space)")
    if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
        return "file size", (f"wrote a file larger than {limits['file_bytes'] // _MIB:,} MiB "
                             "(limit: file size)")
    return None


def exception_message(exc: BaseException) -> str:
    """What the student's exception says, in a sentence; safe with a hostile ``__str__`` or
    ``__repr__``. A limit the exception reveals is told by ``limit_hit``, not here."""
    if isinstance(exc, NotImplementedError):
        return "raises NotImplementedError (not done yet)"
    if isinstance(exc, SystemExit):
        return f"called sys.exit({safe_text(repr(exc.code), 100)})"
    if isinstance(exc, KeyboardInterrupt):
        return "raised KeyboardInterrupt"
    return f"raised {safe_text(type(exc).__name__, 100)}: {safe_text(exc)}"


def exception_reply(exc: BaseException, filename: str, limits: dict[str, Any]) -> dict[str, Any]:
    if isinstance(exc, NotImplementedError):
        return {"status": "missing", "message": exception_message(exc)}
    limit = limit_hit(exc, limits)
    if limit is not None:
        return {"status": "error", "limit": limit[0], "message": limit[1],
                "traceback": student_traceback(exc, filename)}
    message = exception_message(exc)
    if isinstance(exc, SystemExit):
        message += "; return a tensor instead"
    return {"status": "error", "message": message, "traceback": student_traceback(exc, filename)}
