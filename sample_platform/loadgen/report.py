"""What a load run measured: latency histograms, per-route counts, the report and its table."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from sample_platform.loadgen.profiles import ODDS_CHANGE, PEAK_FACTOR, RESULT, SLIP_LIMIT, SSE, LoadConfig


class Histogram:
    """Log-linear latency histogram (HDR-style), values in integer microseconds, ~2 significant digits.

    Values below 256 are exact; above, each power of two is cut into 128 buckets, so a reported value
    is at most 1/128 (<1%) above the true one. Sparse and mergeable."""

    SUB = 128

    def __init__(self) -> None:
        self.counts: Counter[int] = Counter()
        self.count = 0
        self.max = 0

    @classmethod
    def _index(cls, v: int) -> int:
        if v < 2 * cls.SUB:
            return v
        shift = v.bit_length() - 8  # v >> shift lands in [128, 256)
        return 2 * cls.SUB + (shift - 1) * cls.SUB + (v >> shift) - cls.SUB

    @classmethod
    def _highest(cls, index: int) -> int:
        """The largest value that lands in bucket `index`."""
        if index < 2 * cls.SUB:
            return index
        shift, top = divmod(index - 2 * cls.SUB, cls.SUB)
        shift, top = shift + 1, top + cls.SUB
        return ((top + 1) << shift) - 1

    def record(self, micros: int) -> None:
        v = max(0, int(micros))
        self.counts[self._index(v)] += 1
        self.count += 1
        self.max = max(self.max, v)

    def record_seconds(self, seconds: float) -> None:
        self.record(round(seconds * 1_000_000))

    def merge(self, other: Histogram) -> None:
        self.counts.update(other.counts)
        self.count += other.count
        self.max = max(self.max, other.max)

    def percentile(self, p: float) -> int | None:
        """Nearest-rank percentile in microseconds (None when empty)."""
        if not self.count:
            return None
        rank = max(1, math.ceil(p / 100 * self.count))
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                return min(self._highest(index), self.max)
        return self.max

    def summary_ms(self, points: tuple[float, ...] = (50, 95, 99)) -> dict[str, float | int | None]:
        out: dict[str, float | int | None] = {"n": self.count}
        for p in points:
            v = self.percentile(p)
            out[f"p{p:g}"] = None if v is None else round(v / 1000, 2)
        out["max"] = round(self.max / 1000, 2) if self.count else None
        return out


@dataclass
class RouteStats:
    sent: int = 0
    ok: int = 0
    replays: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # "409 price-changed", "503", "ReadTimeout"
    latency: Histogram = field(default_factory=Histogram)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "ok": self.ok,
            "replays": self.replays,
            "errors": dict(sorted(self.errors.items())),
            "latency_ms": self.latency.summary_ms((50, 95, 99)),
        }


@dataclass
class LoadReport:
    config: LoadConfig
    routes: dict[str, RouteStats] = field(default_factory=dict)
    arrivals: int = 0
    dropped_by_generator: int = 0
    cancelled_at_end: int = 0
    elapsed: float = 0.0  # from the first scheduled arrival until in-flight work drained
    completed: int = 0  # arrivals whose work finished (any outcome)
    accepted_keys: set[str] = field(default_factory=set)
    accepted_bet_ids: set[int] = field(default_factory=set)
    unknown_keys: set[str] = field(default_factory=set)  # bets whose outcome no answer ever settled
    bets_resent_after_load: int = 0  # bets without an answer at the end, re-sent with their keys
    bet_retries: int = 0  # bet attempts sent again under the same key during the load (not the re-sends after it)
    price_change_requotes: int = 0
    bet_latency: Histogram = field(default_factory=Histogram)  # scheduled -> final outcome, retries included
    sse_events: Counter[str] = field(default_factory=Counter)  # by SSE event name (odds, overflow ...)
    sse_lag: Histogram = field(default_factory=Histogram)
    start_lag: Histogram = field(default_factory=Histogram)  # how late the generator launched arrivals
    cpu_seconds: float = 0.0  # this process's CPU during load and drain (100% of elapsed = one core)
    behind_from_s: float | None = None  # first arrival the generator launched late (> SLIP_LIMIT)
    late_arrivals: int = 0
    first_drop_s: float | None = None  # first arrival dropped at the in-flight limit
    stopped_at: float | None = None  # seconds into the arrivals when the stop signal ended them early
    settlements: list[dict] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    generator_errors: Counter[str] = field(default_factory=Counter)
    replicas: dict[str, dict[str, int]] = field(default_factory=dict)  # per base URL, when several (SpreadClient)

    def launched_late(self, offset: float) -> None:
        """The arrival due at `offset` s started late: the generator itself is falling behind."""
        if self.behind_from_s is None:
            self.behind_from_s = offset
        self.late_arrivals += 1

    def dropped(self, offset: float) -> None:
        """The arrival due at `offset` s found the in-flight limit reached: the server answers slower than
        requests arrive (Little's law), so it is not sent rather than queued in the generator."""
        if self.first_drop_s is None:
            self.first_drop_s = offset
        self.dropped_by_generator += 1

    @property
    def arrival_window(self) -> float:
        """Seconds the arrivals ran for: until the stop signal, else the profile plus its extension."""
        return self.config.arrival_seconds if self.stopped_at is None else self.stopped_at

    @property
    def cpu_pct(self) -> float | None:
        return round(100 * self.cpu_seconds / self.elapsed, 1) if self.elapsed else None

    def bottleneck(self) -> str | None:
        """In plain words, when the generator itself limited the run (its latencies then include its own lag)."""
        parts = []
        if self.behind_from_s is not None:
            parts.append(
                f"from {self.behind_from_s:.1f} s into the run it launched {self.late_arrivals} arrivals more than "
                f"{SLIP_LIMIT * 1000:.0f} ms after their time"
            )
        if (self.cpu_pct or 0) > 90:
            parts.append(f"it used {self.cpu_pct}% of a core")
        if not parts:
            return None
        return "the load generator was the bottleneck (latencies include its own delay): " + "; ".join(parts)

    def saturation(self) -> str | None:
        """In plain words, when the server fell behind the offered load far enough to fill the in-flight limit."""
        if self.first_drop_s is None:
            return None
        return (
            f"the server fell behind: from {self.first_drop_s:.1f} s into the run {self.dropped_by_generator} "
            f"arrivals found {self.config.max_connections} requests already in flight and were not sent"
        )

    def route(self, name: str) -> RouteStats:
        return self.routes.setdefault(name, RouteStats())

    @property
    def bets_accepted(self) -> int:
        return len(self.accepted_keys)

    @property
    def bets_unknown(self) -> int:
        return len(self.unknown_keys)

    def errors_total(self) -> int:
        return sum(sum(r.errors.values()) for r in self.routes.values())

    def to_dict(self) -> dict[str, Any]:
        cfg = asdict(self.config)
        cfg["admin_token"] = "***" if cfg["admin_token"] else None
        ok = sum(r.ok for name, r in self.routes.items() if name not in (SSE, ODDS_CHANGE, RESULT))
        settled = {
            k: sum(s.get(k, 0) for s in self.settlements) for k in ("settled", "resettled", "won", "lost", "void")
        }
        return {
            "config": cfg,
            "elapsed_s": round(self.elapsed, 3),
            "arrivals": self.arrivals,
            "offered_rate": round(self.arrivals / self.arrival_window, 2) if self.arrival_window else 0.0,
            "stopped_at_s": None if self.stopped_at is None else round(self.stopped_at, 3),
            "achieved_rate": round(self.completed / self.elapsed, 2) if self.elapsed else 0.0,
            "ok_rate": round(ok / self.elapsed, 2) if self.elapsed else 0.0,
            "dropped_by_generator": self.dropped_by_generator,
            "generator_start_lag_ms": self.start_lag.summary_ms((50, 99)),
            "generator_cpu_pct": self.cpu_pct,
            "generator_behind_from_s": None if self.behind_from_s is None else round(self.behind_from_s, 3),
            "generator_late_arrivals": self.late_arrivals,
            "generator_bottleneck": self.bottleneck(),
            "first_drop_s": None if self.first_drop_s is None else round(self.first_drop_s, 3),
            "server_saturation": self.saturation(),
            "cancelled_at_end": self.cancelled_at_end,
            "routes": {name: stats.to_dict() for name, stats in sorted(self.routes.items())},
            "bets_accepted": self.bets_accepted,
            "accepted_bet_ids": sorted(self.accepted_bet_ids),
            "bets_unknown": self.bets_unknown,
            "bets_resent_after_load": self.bets_resent_after_load,
            "bet_retries": self.bet_retries,
            "price_change_requotes": self.price_change_requotes,
            "bet_latency_ms": self.bet_latency.summary_ms(),
            "sse": {
                "events": sum(self.sse_events.values()),
                "by_type": dict(self.sse_events),
                "lag_ms": self.sse_lag.summary_ms((50, 99)),
            },
            "settlement": {
                "markets": self.settlements,
                **settled,
                "all_settled": bool(self.settlements) and all(s.get("status") == "settled" for s in self.settlements),
            },
            "unavailable_routes": dict(self.unavailable),
            "notes": list(self.notes),
            "generator_errors": dict(self.generator_errors),
            "replicas": {url: dict(counts) for url, counts in self.replicas.items()},
        }


def _fmt(value: float | int | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def render_table(report: LoadReport) -> str:
    """A fixed-width summary for a terminal."""
    d = report.to_dict()
    cfg = report.config
    lag = d["generator_start_lag_ms"]
    peak = cfg.rate if cfg.profile == "steady" else PEAK_FACTOR * cfg.rate
    extended = f" + {cfg.extend_seconds:g} s extended" if cfg.extend_seconds else ""
    lines = [
        f"{cfg.profile} load against {', '.join(cfg.targets)}: {cfg.duration:g} s{extended} "
        f"at baseline {cfg.rate:g} req/s (peak {peak:g}), seed {cfg.seed}",
        f"arrivals {d['arrivals']}  offered {d['offered_rate']:.1f}/s  achieved {d['achieved_rate']:.1f}/s  "
        f"2xx {d['ok_rate']:.1f}/s  over {d['elapsed_s']:.1f} s  dropped-by-generator {d['dropped_by_generator']}  "
        f"cancelled-at-end {d['cancelled_at_end']}",
        f"generator: start lag p50 {_fmt(lag['p50'])} ms p99 {_fmt(lag['p99'])} ms, "
        f"cpu {_fmt(d['generator_cpu_pct'])}% of a core",
        *([d["generator_bottleneck"]] if d["generator_bottleneck"] else []),
        *([d["server_saturation"]] if d["server_saturation"] else []),
        "",
        f"{'route':<34}{'sent':>7}{'ok':>7}{'replay':>7}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}  errors",
    ]
    for name, r in d["routes"].items():
        lat = r["latency_ms"]
        errors = ", ".join(f"{k}: {v}" for k, v in r["errors"].items()) or "-"
        if name in report.unavailable:
            errors += "  (unavailable)"
        lines.append(
            f"{name:<34}{r['sent']:>7}{r['ok']:>7}{r['replays']:>7}"
            f"{_fmt(lat['p50']):>9}{_fmt(lat['p95']):>9}{_fmt(lat['p99']):>9}{_fmt(lat['max']):>9}  {errors}"
        )
    bl, sse, st = d["bet_latency_ms"], d["sse"], d["settlement"]
    by_type = ", ".join(f"{name} {n}" for name, n in sorted(sse["by_type"].items()))
    lines += [
        "",
        f"bets accepted {d['bets_accepted']} (unique keys)  unknown outcome {d['bets_unknown']} "
        f"(after re-sending {d['bets_resent_after_load']} with their keys)  "
        f"retries {d['bet_retries']}  price-change re-quotes {d['price_change_requotes']}",
        f"bet end-to-end (scheduled -> final answer, retries included) p50 {_fmt(bl['p50'])} ms "
        f"p99 {_fmt(bl['p99'])} ms max {_fmt(bl['max'])} ms",
        f"SSE events {sse['events']}" + (f" ({by_type})" if by_type else "") + "  publish-to-receive lag "
        f"p50 {_fmt(sse['lag_ms']['p50'])} ms p99 {_fmt(sse['lag_ms']['p99'])} ms",
        f"settlement: {len(st['markets'])} markets, all settled: {'yes' if st['all_settled'] else 'no'}; "
        f"settled {st['settled']} (won {st['won']}, lost {st['lost']}, void {st['void']})",
    ]
    if d["replicas"]:
        lines += ["", f"{'replica':<34}{'requests':>9}{'bets':>7}{'errors':>8}{'no answer':>10}{'SSE':>5}"]
        lines += [
            f"{url:<34}{c['requests']:>9}{c['bets_accepted']:>7}{c['errors']:>8}{c['failures']:>10}{c['streams']:>5}"
            for url, c in d["replicas"].items()
        ]
    lines += [f"note: {note}" for note in d["notes"]]
    lines += [f"generator error: {k} x{v}" for k, v in d["generator_errors"].items()]
    return "\n".join(lines)
