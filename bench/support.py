"""What every benchmark shares: its options (`--quick`, `--format`), report output and progress log,
CPU clocks and pinning, and the sample platform as a server process of its own.

Usage:

    parser = BenchmarkParser("bench.slo_eval", __doc__, quick={"repeats": 1})
    args = parser.parse(argv)
    with PlatformServer(database_url, workdir) as server: ...
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Self

import httpx

from bench.postgres import default_postgres_url
from controlplane.demo.stack import free_port

REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
BUSY_WARNING = 0.15  # share of the machine already busy before a run above which figures are called noisy

log = logging.getLogger("bench")


def setup_logging() -> None:
    """Progress goes to stderr as bare lines, so that stdout holds only the report (`--format json > r.json`)."""
    if log.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


# ---------------------------------------------------------------------------------------- options


class BenchmarkParser(argparse.ArgumentParser):
    """The options every benchmark takes, `--quick`, `--format`, `--skip-postgres` and `--postgres-url`, so
    that `make bench BENCH_ARGS=...` can pass any of them to every benchmark.

    `quick` maps option destinations to the values of the short profile; options given explicitly win.
    """

    QUICK_HELP = "a short run (a minute at most on 2 cores)"

    def __init__(self, module: str, doc: str | None, quick: Mapping[str, object]) -> None:
        super().__init__(prog=f"python -m {module}", description=doc, formatter_class=argparse.RawTextHelpFormatter)
        self.quick = dict(quick)
        self._quick_action = self.add_argument("--quick", action="store_true", help=self.QUICK_HELP)
        self.add_argument("--format", choices=("text", "json"), default="text", help="report format (default text)")
        self.add_argument("--skip-postgres", action="store_true", help="do not try PostgreSQL")
        self.add_argument(
            "--postgres-url",
            default=default_postgres_url(),
            help="PostgreSQL database to create the scratch schema in\n"
            "(default $CONTROLPLANE_TEST_POSTGRES_URL, else postgresql+psycopg://postgres@127.0.0.1:5432/test)",
        )

    def parse(self, argv: Sequence[str] | None = None) -> argparse.Namespace:
        actions = {a.dest: a for a in self._actions}
        unknown = sorted(set(self.quick) - set(actions))
        if unknown:
            raise ValueError(f"the quick profile names options this benchmark does not have: {unknown}")
        flags = [self._flag(actions[dest], value) for dest, value in self.quick.items()]
        self._quick_action.help = f"{self.QUICK_HELP}, the same as\n{' '.join(flags)}"
        given, _ = self.parse_known_args(argv)
        if given.quick:
            self.set_defaults(**self.quick)
        return self.parse_args(argv)

    @staticmethod
    def _flag(action: argparse.Action, value: object) -> str:
        option = action.option_strings[0]
        return option if isinstance(value, bool) else f"{option} {value}"


# ---------------------------------------------------------------------------------------- output


def emit(
    report: dict[str, Any], report_format: str, render_text: Callable[[dict[str, Any]], str], started: float
) -> None:
    """Print the report on stdout: JSON, or text with the total run time (`started` from time.monotonic())."""
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    if report_format == "json":
        print(json.dumps(report, indent=2))
        return
    print(render_text(report))
    print(f"\n(total run time {report['elapsed_s']:.0f} s)")


def fmt(value: float | None, spec: str = ".1f") -> str:
    """A figure for a table cell; "-" where there is none."""
    return "-" if value is None else format(value, spec)


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of an already sorted sequence (None when there are no samples)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


# ---------------------------------------------------------------------------------------- CPU


@dataclass
class Clock:
    """Wall and CPU seconds of this process, added up over the blocks measured with it.

    clock = Clock()
    with clock.measure(): work()
    """

    wall: float = 0.0
    cpu: float = 0.0

    @contextmanager
    def measure(self) -> Iterator[None]:
        w0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.cpu += time.process_time() - c0
            self.wall += time.perf_counter() - w0


def pin_one_cpu(wanted: int | None) -> int | None:
    """Pin this process to one CPU (default: the last one it may use); None where the OS cannot."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    cpu = allowed[-1] if wanted is None else wanted
    os.sched_setaffinity(0, {cpu})
    return cpu


def process_cpu_seconds(pid: int) -> float | None:
    """User+system CPU seconds of a process (all its threads), from /proc; None where unavailable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def host_cpu_ticks() -> tuple[int, int] | None:
    """(total, idle incl. iowait) jiffies of the whole machine, from /proc/stat; None where unavailable."""
    try:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return sum(values[:8]), values[3] + values[4]


def host_busy(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """Share of all the machine's cores busy between two `host_cpu_ticks()` readings."""
    if before is None or after is None or after[0] <= before[0]:
        return None
    return 1 - (after[1] - before[1]) / (after[0] - before[0])


def host_busy_before_start(seconds: float = 1.0) -> float | None:
    """How busy the machine is without us (other work shares its cores), with a warning when it is busy."""
    before = host_cpu_ticks()
    time.sleep(seconds)
    busy = host_busy(before, host_cpu_ticks())
    if busy is not None and busy > BUSY_WARNING:
        log.warning(f"warning: the machine was already {busy * 100:.0f}% busy before the start; figures will be noisy")
    return busy


@dataclass(frozen=True)
class CpuMark:
    """A reading of the clocks at one moment: wall, this process's CPU, a server's CPU, the machine's."""

    wall: float
    cpu: float
    server: float | None
    host: tuple[int, int] | None

    @classmethod
    def now(cls, server: PlatformServer | None = None) -> CpuMark:
        return cls(time.monotonic(), time.process_time(), server.cpu_seconds() if server else None, host_cpu_ticks())


@dataclass(frozen=True)
class CpuUse:
    """CPU used between two marks; `client` and `server` in fractions of one core, `host` of all cores."""

    wall_s: float
    client: float
    server: float | None
    server_s: float | None
    host: float | None

    @classmethod
    def between(cls, start: CpuMark, end: CpuMark) -> CpuUse:
        wall = max(end.wall - start.wall, 1e-9)
        server_s = None if start.server is None or end.server is None else end.server - start.server
        return cls(
            wall_s=wall,
            client=(end.cpu - start.cpu) / wall,
            server=None if server_s is None else server_s / wall,
            server_s=server_s,
            host=host_busy(start.host, end.host),
        )


# ---------------------------------------------------------------------------------------- platform server


def controlplane_executable() -> str:
    for candidate in (Path(sys.executable).parent / "controlplane", REPO / ".venv" / "bin" / "controlplane"):
        if candidate.exists():
            return str(candidate)
    found = shutil.which("controlplane")
    if found:
        return found
    raise SystemExit("cannot find the `controlplane` command; install the project (make install) first")


class PlatformServer:
    """`controlplane platform serve` in its own process on a free port, started and waited for on entry.

    with PlatformServer("sqlite:///tmp/p.db", workdir, {"PLATFORM_MAX_STAKE_MINOR": "1000000"}) as server:
        httpx.get(f"{server.url}/v1/health")
    """

    def __init__(self, database_url: str, workdir: Path, settings: Mapping[str, str] | None = None) -> None:
        self.database_url = database_url
        self.workdir = workdir
        self.settings = dict(settings or {})
        self.admin_token = self.settings.setdefault("PLATFORM_ADMIN_TOKEN", secrets.token_urlsafe(24))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"server-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    def environment(self) -> dict[str, str]:
        # Only the benchmark's settings: a PLATFORM_* left in the shell would change the figures unseen, and
        # CONTROLPLANE_OUTBOX_SINK=audit would append the benchmark's bets to a real audit log.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PLATFORM_")}
        env["CONTROLPLANE_OUTBOX_SINK"] = "jsonl"
        env["PLATFORM_DATABASE_URL"] = self.database_url
        env["PLATFORM_OUTBOX_SINK_PATH"] = str(self.workdir / "outbox.jsonl")
        env["PLATFORM_ODDS_STREAM_PORT"] = "0"  # a free port: the API's port + 1 may be taken
        env.update(self.settings)
        return env

    def start(self, timeout: float = 60.0) -> None:
        self._log_file = open(self.log_path, "ab")  # closed in stop(): the server writes to it all its life
        self.proc = subprocess.Popen(
            [controlplane_executable(), "platform", "serve", "--port", str(self.port)],
            cwd=self.workdir,
            env=self.environment(),
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode} at start:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not answer /v1/health within {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exit_code(self) -> int | None:
        """The code the server exited with, None while it runs (or before it started)."""
        return None if self.proc is None else self.proc.poll()

    def cpu_seconds(self) -> float | None:
        return process_cpu_seconds(self.proc.pid) if self.proc is not None and self.alive() else None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def log_problems(self, lines: int = 15) -> list[str]:
        """The last warnings, errors and tracebacks of the server's log."""
        words = ("ERROR", "WARNING", "Traceback", "Error", "error")
        return [line for line in self.log_tail(200).splitlines() if any(w in line for w in words)][-lines:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
