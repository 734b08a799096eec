"""Measuring inside a worker: step ends, inference passes, peak RSS; and the parent's summary
of them over the time the worker's process ran."""

from __future__ import annotations

import itertools
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# -- measuring inside a worker -------------------------------------------------------------------


Interval = tuple[float, float]

# Why a row has no per-step breakdown (its ``breakdown_note``; None when it has one).
NOT_TIMED = "forward, backward and optimizer step are not timed inside this row's steps"
ALL_PAUSED = "every steady step was interrupted by a pause (--interleave)"


def active_seconds(start: float, end: float, running: Sequence[Interval] | None) -> float:
    """Seconds of [start, end] (``time.monotonic``, the same clock in every process) during
    which the row's process ran: all of it, or its overlap with ``running`` when the parent
    interleaved the rows (``--interleave``) and stopped this one in between."""
    if running is None:
        return end - start
    return sum(max(0.0, min(end, b) - max(start, a)) for a, b in running)


@dataclass
class StepClock:
    """``time.monotonic()`` at the end of every training step, and optionally the time spent
    inside forward, backward and the optimizer step(s) of that step.

    Steady state: the steps after ``warmup`` (first-step allocation, lazy optimizer state and
    compilation land there), timed from the end of the last warm-up step, so that everything
    between two steps (the data slicing, the framework's loop) counts. The worker records; the
    parent summarizes, since only it knows when it stopped the process (``--interleave``).
    """

    launched: float  # time.monotonic() when the parent started this process
    batch_size: int
    rows: int
    warmup: int
    ends: list[float] = field(default_factory=list)
    inside: list[tuple[float, float, float] | None] = field(default_factory=list)
    first_step_at: float | None = None
    # torch.profiler over the last ``profile_steps`` warm-up steps (steady by then, and left out
    # of the timing): the top ops by self CPU time, per step. 0: no profile.
    profile_steps: int = 0
    profile: list[dict[str, Any]] = field(default_factory=list)
    row_info: dict[str, Any] = field(default_factory=dict)  # a row's own figures (compiling)
    # The peers call step_done from an optimizer step hook, which torch runs inside the
    # profiler range "Optimizer.step#...": starting or stopping torch.profiler there corrupted
    # the heap (SIGSEGV, "free(): invalid next size": every peer row, on both CPUs). Their
    # profile turns are taken at the start of the next step instead (step_starting).
    defer_profile: bool = False
    _turned_at: int = -1

    def step_done(self, inside: tuple[float, float, float] | None = None) -> None:
        if not self.defer_profile:
            self._profile_turn(len(self.ends) + 1, early=0)  # before the clock: not timed
        self.ends.append(time.monotonic())
        self.inside.append(inside)
        if self.first_step_at is None:
            self.first_step_at = self.ends[-1]

    def step_starting(self) -> None:
        """A deferred row's profile turn, from a forward pre-hook (called once per module: the
        first call after a step takes the turn). The profiled steps end one step earlier, so
        that the last turn, which stops the profiler and reads it, falls in the last warm-up
        step, outside the timing."""
        done = len(self.ends)
        if done != self._turned_at:
            self._turned_at = done
            self._profile_turn(done, early=1)

    def _profile_turn(self, done: int, early: int) -> None:
        """Profile each of the last ``profile_steps`` warm-up steps on its own (``done``: steps
        finished; ``early``: the window ends that many steps before the warm-up does), then
        keep the steps no pause cut through: under ``--interleave`` the parent stops the
        process between turns, and a stopped op's self time absorbs the whole pause (seconds
        for a ~100 ms step)."""
        if self.profile_steps <= 0:
            return
        # The warm-up the summary will leave out, from the steps the row is sure to take (a
        # compiled loop drops the last partial batch): on a run shorter than --warmup steps, a
        # window past the last step would leave a profiler running through inference, and
        # torch's profiler crashes the process at exit then (SIGSEGV).
        last = self.warmup_steps(self.rows // self.batch_size) - early
        start = max(1, last - self.profile_steps)
        if not start <= done <= last or start >= last:
            return
        import torch

        running = getattr(self, "_profiler", None)
        if running is not None:
            running.stop()
            self._profiled.append((time.monotonic() - self._profiled_from, running))
        if done < last:
            self._profiler = torch.profiler.profile(
                activities=[torch.profiler.ProfilerActivity.CPU]
            )
            self._profiled_from = time.monotonic()
            self._profiler.start()
            if done == start:
                self._profiled = []
        else:
            self._profiler = None
            self.profile = top_ops([p for _, p in unpaused(self._profiled)])

    def warmup_steps(self, steps: int) -> int:
        """The steps left out of the steady figures in a run of ``steps``: ``warmup``, or a
        third of a run too short for it."""
        return max(1, min(self.warmup, steps // 3))

    def size(self, step: int) -> int:
        return max(0, min(self.batch_size, self.rows - step * self.batch_size))

    def summary(self, running: Sequence[Interval] | None = None) -> dict[str, Any]:
        """Steady samples/s over the time the process ran; a step the parent paused the
        process in is counted by its running time, and left out of the per-step figures. With
        no step left for those (a busy machine: every steady step longer than a turn), the
        median step and the breakdown are None and ``breakdown_note`` says why."""
        steps = len(self.ends)
        if steps < 2:
            raise RuntimeError(f"only {steps} training step(s): too few to time")
        warmup = self.warmup_steps(steps)
        ends = self.ends[warmup - 1 :]
        wall = np.diff(ends)
        ran = np.array([active_seconds(a, b, running) for a, b in itertools.pairwise(ends)])
        whole = ran >= wall - 1e-4  # steps not cut by a pause
        samples = sum(self.size(k) for k in range(warmup, steps))
        out: dict[str, Any] = {
            "steps": steps,
            "warmup_steps": warmup,
            "steady_steps": steps - warmup,
            "steady_samples": samples,
            "steady_seconds": float(ran.sum()),
            "samples_per_s": samples / float(ran.sum()),
            "paused_steps": int((~whole).sum()),
            # Robust to a burst of other load within the run: the median steady step.
            "median_step_ms": float(np.median(wall[whole])) * 1e3 if whole.any() else None,
            "time_to_first_step_s": active_seconds(
                self.launched, self.first_step_at or self.launched, running
            ),
        }
        out["breakdown_ms_per_step"], out["breakdown_note"] = self._breakdown(warmup, wall, whole)
        return out

    def _breakdown(
        self, warmup: int, wall: np.ndarray, whole: np.ndarray
    ) -> tuple[dict[str, float] | None, str | None]:
        """Mean ms per steady, unpaused step in forward, backward, optimizer step and the rest;
        or None and the reason there is none."""
        parts = self.inside[warmup:]
        if not parts or any(p is None for p in parts):
            return None, NOT_TIMED
        if not whole.any():
            return None, ALL_PAUSED
        totals = wall[whole] * 1e3
        inside = np.asarray(parts, dtype=np.float64)[whole] * 1e3  # (steps, 3)
        outside = totals - inside.sum(1)
        breakdown = {
            "total": float(totals.mean()),
            "forward": float(inside[:, 0].mean()),
            "backward": float(inside[:, 1].mean()),
            "optimizer": float(inside[:, 2].mean()),
            "outside": float(outside.mean()),
            "outside_share": float(outside.sum() / totals.sum()),
        }
        return breakdown, None


def synchronizer(device: str) -> Callable[[], None]:
    """Waits for the GPU's queued work (a step's end is when it finished, not when it was
    queued); a no-op on the CPU."""
    if device == "cpu":
        return lambda: None
    import torch

    return torch.cuda.synchronize


def unpaused(steps: list[tuple[float, Any]], slack: float = 1.5) -> list[tuple[float, Any]]:
    """The profiled steps whose wall time is within ``slack`` of the fastest: a step the parent
    paused the process in took a turn longer (a second or more)."""
    fastest = min(wall for wall, _ in steps)
    return [(wall, p) for wall, p in steps if wall <= slack * fastest]


def top_ops(profilers: list[Any], top: int = 12) -> list[dict[str, Any]]:
    """The ops with the most self CPU time over finished one-step profiles, per step."""
    self_us: dict[str, float] = {}
    calls: dict[str, int] = {}
    for profiler in profilers:
        for e in profiler.key_averages():
            self_us[e.key] = self_us.get(e.key, 0.0) + e.self_cpu_time_total
            calls[e.key] = calls.get(e.key, 0) + e.count
    total, steps = sum(self_us.values()) or 1.0, len(profilers)
    return [
        {
            "op": op,
            "self_ms_per_step": us / 1e3 / steps,
            "share": us / total,
            "calls_per_step": calls[op] / steps,
            "steps": steps,
        }
        for op, us in sorted(self_us.items(), key=lambda kv: kv[1], reverse=True)[:top]
    ]


def time_inference(
    predict: Callable[[int], None], rows: int, eval_batch: int, passes: int
) -> dict[str, Any]:
    """``passes`` passes over ``rows`` rows after one warm-up batch: each pass's start and end
    (monotonic) and its page faults per batch."""
    predict(min(rows, eval_batch))
    out: list[dict[str, float]] = []
    for _ in range(passes):
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = time.monotonic()
        predict(rows)
        end = time.monotonic()
        # Fresh memory for every batch's activations (an allocator handing pages back to the
        # kernel after each batch) costs as much as a layer's matmul here: worth seeing.
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
        out.append({"start": start, "end": end, "faults_per_batch": faults * eval_batch / rows})
    return {"rows": rows, "passes": out}


def inference_summary(raw: dict[str, Any], running: Sequence[Interval] | None) -> dict[str, Any]:
    """Samples/s of the median pass, counting only the time the process ran."""
    rates = [raw["rows"] / active_seconds(p["start"], p["end"], running) for p in raw["passes"]]
    return {**raw, "pass_samples_per_s": rates, "samples_per_s": float(np.median(rates))}


def peak_rss_mib() -> float:
    """Peak resident set of this process, or of a child it waited for (DataLoader workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024  # Linux reports KiB
