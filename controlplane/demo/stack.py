"""The demo's child processes: the platform, the collector, the scheduler and the dashboard, each a
`controlplane` command of its own, as a user would run them, logging to a file.

Usage:

    with Stack(logs_dir) as stack:
        platform = stack.start_http("platform", ["platform", "serve"], env, health="/v1/health")
        scheduler = stack.start("scheduler", ["scheduler"], env, ready="scheduler started")
    # every child stopped, in the reverse order of their start

Children run in sessions of their own, so a Ctrl-C in the terminal reaches the demo alone, which then
stops them in order (SIGTERM, then SIGKILL after a grace period) and says what was kept. On Linux a
child is also sent SIGTERM by the kernel when the demo dies without cleaning up (SIGKILL, a crash).
Children see none of the shell's `CONTROLPLANE_*`, `PLATFORM_*` or `OTEL_*` variables: the demo's
alerts must never reach a real on-call receiver, nor a leftover setting change the platform unseen.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import httpx

STOP_GRACE = 20.0  # seconds a child gets to stop after SIGTERM before it is killed
START_TIMEOUT = 90.0


class DemoError(RuntimeError):
    """The demo cannot go on; the message says what failed and where its log is."""


def controlplane_command() -> list[str]:
    """How to run `controlplane` with this interpreter (the console script beside it, else the module)."""
    script = Path(sys.executable).with_name("controlplane")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from controlplane.cli import main; main()"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: SIGTERM this process when the demo dies (PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class Child:
    """One `controlplane ...` process (or another `command`) and its log."""

    def __init__(
        self, name: str, args: list[str], env: dict[str, str], log: Path, command: list[str] | None = None
    ) -> None:
        self.name, self.log, self.url = name, log, ""
        self.args, self.env, self.command = args, env, command
        self.down = False  # killed on purpose (a game day): not a failure until restarted
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*(command or controlplane_command()), *args],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait_for(self, ready: Callable[[], bool], what: str, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if not self.running():
                raise DemoError(
                    f"the {self.name} exited with code {self.proc.returncode} before {what}; "
                    f"its log is {self.log}:\n{tail(self.log)}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise DemoError(f"the {self.name} did not {what} within {timeout:.0f} s; its log is {self.log}")
            time.sleep(0.2)

    def stop(self, grace: float = STOP_GRACE) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                try:
                    self.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    pass  # unkillable (stuck in the kernel): nothing more to do from here
        return self.proc.returncode


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


class Stack:
    """The children of one demo run, stopped in the reverse order of their start."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.children: list[Child] = []

    def start(
        self, name: str, args: list[str], env: dict[str, str], *, ready: str, command: list[str] | None = None
    ) -> Child:
        """A child that is ready once `ready` appears in its log."""
        log = self.logs / f"{name}.log"
        size = log.stat().st_size if log.exists() else 0
        child = Child(name, args, env, log, command)
        self.children.append(child)
        child.wait_for(lambda: ready.encode() in log.read_bytes()[size:], f"said '{ready}'")
        return child

    def kill(self, child: Child) -> None:
        """SIGKILL a child on purpose; `check` forgives it until `restart`."""
        child.down = True
        if child.running():
            child.proc.kill()
            child.proc.wait(timeout=30)

    def restart(self, child: Child, ready: Callable[[Child], bool], what: str) -> Child:
        """The same command again (same arguments, port and log) in the place of `child`, once `ready`."""
        again = Child(child.name, child.args, child.env, child.log, child.command)
        again.url = child.url
        self.children[self.children.index(child)] = again
        again.wait_for(lambda: ready(again), what)
        return again

    def start_http(
        self,
        name: str,
        args: list[str],
        env: dict[str, str],
        *,
        health: str,
        port: int | None = None,
        fallback: bool = True,
    ) -> Child:
        """A server on `port` (a free one when not given) that is ready once `health` answers 200 and
        the child is still running (not another server on that port). A port can be taken by someone
        else before the child binds it: then, unless `fallback` is false, try free ones."""
        attempts = 4 if port is None or fallback else 1
        for attempt in range(attempts):
            chosen = port if port is not None and attempt == 0 else free_port()
            log = self.logs / f"{name}.log"
            size = log.stat().st_size if log.exists() else 0
            child = Child(name, [*args, "--port", str(chosen)], env, log)
            child.url = f"http://127.0.0.1:{chosen}"
            self.children.append(child)
            url = child.url + health
            try:
                child.wait_for(lambda url=url: answers(url), f"answer on {url}")  # type: ignore[misc]
                time.sleep(0.5)
                if child.running():
                    return child
                raise DemoError(f"the {name} exited with code {child.proc.returncode}; its log is {log}")
            except DemoError:
                busy = b"address already in use" in log.read_bytes()[size:].lower()
                child.stop()
                self.children.remove(child)
                if not busy or attempt == attempts - 1:
                    raise
        raise DemoError(f"the {name} could not find a free port")  # pragma: no cover - the loop returns or raises

    def check(self) -> None:
        """Raise DemoError when a child has died."""
        for child in self.children:
            if not child.down and not child.running():
                raise DemoError(
                    f"the {child.name} exited with code {child.proc.returncode}; its log is {child.log}:\n"
                    f"{tail(child.log)}"
                )

    def stop(self) -> dict[str, int | None]:
        codes = {}
        for child in reversed(self.children):
            try:
                codes[child.name] = child.stop()
            except OSError:
                codes[child.name] = None
        self.children.clear()
        return codes

    def __enter__(self) -> Stack:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


OWN_PREFIXES = ("CONTROLPLANE_", "PLATFORM_", "OTEL_")


def child_env(controlplane: dict[str, object], platform: dict[str, object]) -> dict[str, str]:
    """The environment of a child: this one's without any setting of ours or OpenTelemetry's, then the
    demo's `CONTROLPLANE_*` and `PLATFORM_*` values."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(OWN_PREFIXES)}
    env.update({f"CONTROLPLANE_{k.upper()}": str(v) for k, v in controlplane.items() if v is not None})
    env.update({f"PLATFORM_{k.upper()}": str(v) for k, v in platform.items() if v is not None})
    return env
