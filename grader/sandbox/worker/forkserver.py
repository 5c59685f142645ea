"""The sandbox's long-lived worker: imports torch once, then forks one child per session.

It runs in its own process (in bubblewrap where it works: grader.sandbox.bubblewrap), started by
``grader.sandbox.runner.SandboxRunner`` (its entry: grader.sandbox.worker.entry.main). It runs
torch once, with one thread, and checks that it still has one when it forks (a fork of running
thread pools can leave the child's locks held forever); each child, in its memory cgroup
(memory_groups), takes namespaces of its own (isolation), sets its limits, drops to its
session's uid and serves grader.sandbox.worker.child's protocol (grader.sandbox.worker.spare).
The worker is a child subreaper: every process a child starts stays its descendant, so "no
process left behind" is something it can check rather than hope for.

Messages are JSON on SOCK_SEQPACKET sockets:

* runner -> worker, main socket, with three descriptors attached (control socket, protocol
  socket, output pipe): ``{"op": "spawn", "uid": int | null, "limits": {...}}``
* runner -> worker, main socket, with one descriptor attached (another runner's main socket):
  ``{"op": "attach"}`` (SandboxRunner.attach); the worker serves every main socket and stops
  when the last one closes
* worker -> runner, each main socket, once: ``{"event": "ready", "pid", "threads",
  "can_drop_uid", "namespaces", "memory_groups"}``
* worker -> session, control socket: ``{"event": "started", "pid"}``, ``{"event": "failed",
  "message"}``, ``{"event": "exited", "code", "limit"?}`` when the child ends by itself
  (limit "memory": killed for its memory cgroup), ``{"event": "stopped", "code",
  "processes"}`` after a stop that waits.
* session -> worker, control socket: ``{"op": "stop", "wait": bool}``; closing the socket means
  the same without waiting. Waiting: every process of the session is killed and reaped before
  the answer. Not waiting (the usual end), no answer: the child is killed now and the rest
  finished in the background; the runner takes the uid again at once, and a spawn for a uid
  whose session still runs here ends that session first.
  ``{"op": "lower"}``: the child's stub call has run long; its processes get the least CPU
  priority (processes.lower_priority), with no answer.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import selectors
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from typing import Any

from .isolation import can_unshare, remove_leftovers
from .memory_groups import GroupFolder, SessionGroup
from .processes import (become_subreaper, can_drop_uid, children, kill_uid, lower_priority,
                        processes_of, status_number)
from .spare import fork_spare, joined_group

__all__ = ["ForkServer"]

_KILL_SECONDS = 5.0
_MAIN = "main"          # selector data of a runner's connection


@dataclass(eq=False)         # one session is one session, whatever its fields say
class _Session:
    control: socket.socket
    pid: int
    uid: int | None
    workdir: str
    group: SessionGroup | None = None    # its memory cgroup, where there is one
    code: int | None = None          # the child's exit code, subprocess-style, once reaped


@dataclass
class _OomAlarm:        # selector data of a session's memory group's OOM eventfd (cgroup v1)
    session: _Session


class ForkServer:
    """The worker's event loop: spawn requests, stop and lower requests, children ending.

    A spare child is forked ahead of time, so that a session starts without waiting for a fork.
    A stopped session's processes are killed at once; the worker finishes reaping them (and
    wiping the working folder) in the background, before it reuses the session's uid.
    """

    def __init__(self, main_socket: socket.socket, groups: str = "") -> None:
        self.mains = {main_socket}          # a connection per runner (attach adds more)
        self.groups = GroupFolder(groups)   # the children's memory cgroups, where there are
        self.namespaces = False             # children get IPC and mount namespaces of their own
        self.hello: dict[str, Any] = {}      # the "ready" message, for each new connection
        self.can_drop_uid = can_drop_uid()
        self.selector = selectors.DefaultSelector()
        self.by_pid: dict[int, _Session] = {}        # sessions whose child is not reaped yet
        self.running: list[_Session] = []             # not stopped yet (child reaped or not)
        self.dying: list[_Session] = []               # stopped, processes not all gone yet
        self.spare_failed = False                     # the last fork of a spare failed
        self.spare: tuple[int, socket.socket, SessionGroup | None] | None = None
        self.watch: Any = None                        # the AutogradWatch every child inherits
        self.swept: set[int] = set()                  # uids cleared of leftovers
        self.wakeup_r, wakeup_w = os.pipe()
        os.set_blocking(self.wakeup_r, False)
        os.set_blocking(wakeup_w, False)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        signal.set_wakeup_fd(wakeup_w)
        signal.signal(signal.SIGINT, signal.SIG_IGN)     # the grader decides when we stop
        become_subreaper()

    # -- the loop ---------------------------------------------------------------------------
    def serve(self) -> None:
        """Get ready, then serve every runner's requests until the last connection closes."""
        self._get_ready()
        while True:
            # without a spare, requests waiting now come first: the next spare's fork takes
            # milliseconds (a spawn that finds none forks one itself)
            events = self.selector.select(0 if self.spare is None and not self.spare_failed
                                          else 0.005 if self.dying else None)
            for key, _ in events:
                try:
                    if key.data is _MAIN:
                        if not self._on_main(key.fileobj):     # type: ignore[arg-type]
                            self._shutdown()
                            return
                    elif key.fileobj == self.wakeup_r:
                        self._drain_wakeup()
                    elif isinstance(key.data, _OomAlarm):
                        self._on_oom(key.data.session)
                    else:
                        self._on_control(key.data)
                except Exception:  # keep serving the other sessions
                    traceback.print_exc()
            try:
                self._reap()
                self._tend_dying()
            except Exception:
                traceback.print_exc()
            if events:
                self.spare_failed = False
            elif self.spare is None and not self.spare_failed:
                try:
                    self._make_spare()
                except Exception:
                    self.spare_failed = True    # tried again after the next event, not at once
                    traceback.print_exc()

    def _get_ready(self) -> None:
        """Run torch once here, not in every child; tell each runner the worker is ready."""
        from .child import warm_up     # torch: imported by main(), with the collector off

        self.watch = warm_up()
        gc.freeze()      # children then leave the worker's objects alone: fewer copied pages
        gc.enable()      # main() paused it for the imports; student code may make cycles
        threads = len(os.listdir("/proc/self/task"))      # as the first fork will find them
        if threads != 1:
            print(f"backprop-grader worker: {threads} threads before forking; children may "
                  "deadlock (is OMP_NUM_THREADS=1 set?)", file=sys.stderr)
        self.namespaces = can_unshare()     # after the thread count: it forks
        self.hello = {"event": "ready", "pid": os.getpid(), "threads": threads,
                      "can_drop_uid": self.can_drop_uid, "namespaces": self.namespaces,
                      "memory_groups": self.groups.version if self.groups.fd >= 0 else None}
        for main in self.mains:
            self._send(main, self.hello)
            self.selector.register(main, selectors.EVENT_READ, _MAIN)
        self.selector.register(self.wakeup_r, selectors.EVENT_READ, None)
        self._make_spare()

    def _drain_wakeup(self) -> None:
        try:
            while os.read(self.wakeup_r, 512):
                pass
        except BlockingIOError:
            pass

    @staticmethod
    def _send(sock: socket.socket, message: dict[str, Any]) -> None:
        try:
            sock.send(json.dumps(message).encode())
        except OSError:
            pass  # the grader side went away; it will see the outcome as a closed socket

    def _on_main(self, main: socket.socket) -> bool:
        """A message on a runner's connection; False when the last connection closed."""
        try:
            data, fds, _, _ = socket.recv_fds(main, 1 << 16, 3)
        except OSError:
            data, fds = b"", []
        if not data:
            self.selector.unregister(main)
            self.mains.discard(main)
            main.close()
            return bool(self.mains)
        try:
            spec = json.loads(data)
        except ValueError:
            spec = {}
        if spec.get("op") == "attach" and len(fds) == 1:      # another runner shares us
            other = socket.socket(fileno=fds[0])
            self.mains.add(other)
            self._send(other, self.hello)
            self.selector.register(other, selectors.EVENT_READ, _MAIN)
            return True
        if spec.get("op") != "spawn" or len(fds) != 3:
            for fd in fds:
                os.close(fd)
            return True
        control = socket.socket(fileno=fds[0])
        try:
            self._spawn(spec, control, fds[1], fds[2])
        except OSError as e:    # before the child (clearing its uid forks): said now, not timed out
            self._send(control, {"event": "failed", "message": f"could not start a child: {e}"})
            control.close()
        finally:
            os.close(fds[1])
            os.close(fds[2])
        return True

    # -- children ---------------------------------------------------------------------------
    def _make_spare(self) -> None:
        group = self.groups.new_group()
        try:
            pid, sock = fork_spare(self.watch, group)
        except OSError:
            self._drop_group(group)
            raise
        self.spare = (pid, sock, group)

    def _spawn(self, spec: dict[str, Any], control: socket.socket, proto_fd: int,
               out_fd: int) -> None:
        limits = dict(spec["limits"])
        data = status_number("VmData") or 0
        if data >= int(limits["memory_bytes"]):
            self._send(control, {"event": "failed", "message": (
                f"the memory limit ({int(limits['memory_bytes']) >> 20} MiB) is below what torch "
                f"itself needs ({data >> 20} MiB): raise Limits.memory_bytes")})
            control.close()
            return
        uid = spec.get("uid") if self.can_drop_uid else None
        # a runner gives a uid back once it has asked for its session's stop, without waiting
        # for the answer (ForkedChild.stop): a session of this uid still running here has a
        # stop on its way, unread, and ends now; two children never share a uid
        for old in [s for s in self.running if uid is not None and s.uid == uid]:
            self._stop_session(old)
        # the uid must be clean before reuse; where children share the worker's IPC namespace
        # and temporary folders, every stopped session must be before another child runs
        for old in [s for s in self.dying if uid is not None and (
                s.uid == uid or not self.namespaces)]:
            self._finish(old)
        if uid is not None and uid not in self.swept:
            kill_uid(uid)      # leftovers of a grader that died without cleaning up, if any
            if not self.namespaces:
                remove_leftovers(uid)
            self.swept.add(uid)
        workdir = tempfile.mkdtemp(prefix="bpg-")
        if uid is not None:
            os.chown(workdir, uid, uid)
        limits.update(own_uid=uid is not None, own_namespaces=self.namespaces)
        orders = json.dumps({"limits": limits, "uid": uid, "workdir": workdir}).encode()
        for _ in range(2):
            if self.spare is None:
                try:
                    self._make_spare()
                except OSError:         # no fork now (a full pids group, say)
                    continue
            assert self.spare is not None
            pid, sock, group = self.spare
            self.spare = None
            try:
                if group is not None and not joined_group(sock):
                    self._drop_group(group)
                    group = None
                if group is not None:
                    group.limit(int(limits["memory_bytes"]))
                socket.send_fds(sock, [orders], [proto_fd, out_fd])
                break
            except OSError:      # the spare died (or its group failed): make another
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                self._drop_group(group)
                continue
            finally:
                sock.close()
        else:
            self._send(control, {"event": "failed", "message": "could not fork a child"})
            control.close()
            shutil.rmtree(workdir, ignore_errors=True)
            return
        session = _Session(control, pid, uid, workdir, group)
        self.by_pid[pid] = session
        self.running.append(session)
        self.selector.register(control, selectors.EVENT_READ, session)
        if group is not None and group.oom_event is not None:
            self.selector.register(group.oom_event, selectors.EVENT_READ, _OomAlarm(session))
        self._send(control, {"event": "started", "pid": pid})

    def _drop_group(self, group: SessionGroup | None) -> None:
        """Remove a memory group now, or once its last process is gone."""
        if group is not None and group.oom_event is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(group.oom_event)
        self.groups.drop(group)

    def _on_oom(self, session: _Session) -> None:
        """The kernel killed a process of the session's memory group: the submission as a whole
        is past its memory limit. All of it ends (reported as that limit when reaped)."""
        if session.group is not None and session.group.notified():
            self._kill(session, sweep=True)

    def _release(self, session: _Session) -> None:
        """Once a stopped session's processes are gone: its folder, its memory group, and what
        its uid left in the worker's IPC namespace and temporary folders, if children share them."""
        shutil.rmtree(session.workdir, ignore_errors=True)
        group, session.group = session.group, None
        self._drop_group(group)
        if session.uid is not None and not self.namespaces:
            remove_leftovers(session.uid)

    def _on_control(self, session: _Session) -> None:
        if session not in self.running:       # stopped earlier in this round of events
            return
        try:
            data = session.control.recv(4096)
        except OSError:
            data = b""
        message: dict[str, Any] = {}
        if data:
            try:
                message = json.loads(data)
            except ValueError:
                return
            if message.get("op") == "lower":
                lower_priority(session.pid, session.uid)
                return
            if message.get("op") != "stop":
                return
        if message.get("wait"):
            self.selector.unregister(session.control)
            self.running.remove(session)
            processes = self._finish(session)
            self._send(session.control, {"event": "stopped", "code": session.code,
                                         "processes": processes})
            session.control.close()
        else:                                # the usual end: the runner does not wait
            self._stop_session(session)

    def _stop_session(self, session: _Session) -> None:
        """The usual end of a session: kill its child now, tidy up later (_tend_dying)."""
        self.selector.unregister(session.control)
        session.control.close()
        self.running.remove(session)
        self._kill(session, sweep=False)
        self.dying.append(session)

    def _remaining(self, session: _Session) -> list[int]:
        """The session's processes among this worker's children, zombies included. Every
        process a session starts stays a descendant of this subreaper, so once its child is
        reaped and this list is empty, nothing of the session is left anywhere."""
        spare = self.spare[0] if self.spare else None
        found = []
        for pid in children():
            if pid == spare:
                continue
            owner = self.by_pid.get(pid)
            if owner is session or (owner is None and (
                    session.uid is None or status_number("Uid", pid) == session.uid)):
                found.append(pid)
        return found

    def _kill(self, session: _Session, *, sweep: bool) -> None:
        """SIGKILL the session's child; with ``sweep``, every process the session started too:
        all processes of its uid at once when it has one, else the strays re-parented here."""
        if session.pid in self.by_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(session.pid, signal.SIGKILL)
        if not sweep:
            return
        if session.uid is not None:
            kill_uid(session.uid)
        else:
            for pid in self._remaining(session):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def _finish(self, session: _Session) -> int:
        """Kill everything of the session, wait until it is all gone, wipe its folder; return
        how many processes there were."""
        if session.uid is not None:
            count = len(processes_of(session.uid))
        else:
            count = len({*self._remaining(session), session.pid})
        deadline = time.monotonic() + _KILL_SECONDS
        pause = 0.0002
        while True:
            self._kill(session, sweep=True)
            time.sleep(pause)
            pause = min(pause * 2, 0.01)
            self._reap()
            if session.pid not in self.by_pid and not self._remaining(session):
                break
            if time.monotonic() > deadline:
                print(f"backprop-grader worker: processes of a session outlived "
                      f"{_KILL_SECONDS:g} s of SIGKILL", file=sys.stderr)
                break
        self._release(session)
        if session in self.dying:
            self.dying.remove(session)
        return count

    def _tend_dying(self) -> None:
        for session in list(self.dying):
            if session.pid in self.by_pid:
                continue                        # its child is still on its way out
            if self._remaining(session):
                self._kill(session, sweep=True)   # it left processes: sweep them
            else:
                self._release(session)
                self.dying.remove(session)
        self.groups.tidy()

    def _reap(self) -> None:
        """Collect every ended child; tell a session when its own child ended."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.spare is not None and pid == self.spare[0]:
                self.spare[1].close()
                self._drop_group(self.spare[2])
                self.spare = None
            session = self.by_pid.pop(pid, None)
            if session is not None:
                session.code = os.waitstatus_to_exitcode(status)
                if session not in self.dying:
                    exited: dict[str, Any] = {"event": "exited", "code": session.code}
                    if session.code == -signal.SIGKILL and session.group is not None \
                            and session.group.ran_out():
                        exited["limit"] = "memory"      # the kernel's OOM kill, in the group
                    self._send(session.control, exited)

    def _shutdown(self) -> None:
        if self.spare is not None:
            os.kill(self.spare[0], signal.SIGKILL)
        every = {id(s): s for s in (*self.by_pid.values(), *self.running, *self.dying)}
        for session in every.values():
            self._finish(session)
