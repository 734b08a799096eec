"""The parent's rounds: every row in its own process, one after the other or interleaved in
turns (SIGSTOP/SIGCONT), each timed only while it ran; and each row combined over the rounds."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .machine import busy_cpu_seconds, children_cpu_seconds
from .measure import ALL_PAUSED, Interval, StepClock, inference_summary
from .peer_rows import fuxictr_python, peers_python, torchrec_python
from .spec import ROOT, SCRIPT, RowSpec, Settings


@dataclass
class Launched:
    """A row's worker process, and the intervals during which the parent let it run."""

    spec: RowSpec
    proc: subprocess.Popen[bytes]
    result: Path
    log: Path
    resumed: float | None  # when it last began to run; None while stopped
    running: list[Interval] = field(default_factory=list)


def launch(spec: RowSpec, python: Path, data_dir: Path, s: Settings, logs: Path) -> Launched:
    """Start the row in a fresh process, in its own process group (its DataLoader or compile
    workers included, so that stopping the group stops all of it)."""
    result, log = logs / f"{spec.name}.json", logs / f"{spec.name}.log"
    result.unlink(missing_ok=True)
    cmd = [str(python), str(SCRIPT), "--worker", spec.name]
    cmd += ["--data", str(data_dir), "--result", str(result), "--settings", json.dumps(asdict(s))]
    launched = time.monotonic()
    cmd += ["--launched", repr(launched)]
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
            env=row_environment(spec, s),
        )
    return Launched(spec, proc, result, log, resumed=launched)


def row_environment(spec: RowSpec, s: Settings) -> dict[str, str]:
    """widedeep rows call keep_freed_memory() as widedeep's CLIs do, and the hand-written rows
    get the same malloc settings (from the environment, as they do not import widedeep); the
    peers run with the allocator as they ship. Called in the parent, which runs in widedeep's
    environment."""
    from widedeep.core.allocator import MALLOC_ENV, OPT_OUT

    env = {k: v for k, v in os.environ.items() if k not in MALLOC_ENV and k != OPT_OUT}
    if s.system_malloc:
        env[OPT_OUT] = "system"
    elif spec.system == "hand-written":
        env.update(MALLOC_ENV)
    return env


def signal_group(row: Launched, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group has exited
        os.killpg(row.proc.pid, sig)


def run_slice(row: Launched, seconds: float | None) -> bool:
    """Let ``row`` run for at most ``seconds`` (None: to its end), then stop its process group;
    True once it has exited."""
    if row.resumed is None:
        row.resumed = time.monotonic()
        signal_group(row, signal.SIGCONT)
    try:
        row.proc.wait(timeout=seconds)
        done = True
    except subprocess.TimeoutExpired:
        signal_group(row, signal.SIGSTOP)
        done = False
    row.running.append((row.resumed, time.monotonic()))
    row.resumed = None
    return done


def exit_status(returncode: int | None) -> str:
    """How a row's process ended, in words: a crash (a signal) leaves no traceback in its log,
    whose last lines are then only what the process happened to print before it."""
    if returncode is not None and returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    if returncode == 0:
        return "exit 0 without a result file"
    return f"exit {returncode}"


def finish(row: Launched, others_cpu_share: float, load_before: float) -> dict[str, Any]:
    """The row's result, summarized over the time it ran; or its error and its log's end."""
    spec = row.spec
    if row.proc.returncode != 0 or not row.result.exists():
        tail = row.log.read_text(errors="replace").strip().splitlines()[-12:]
        return {
            "row": spec.name,
            "system": spec.system,
            "error": "\n".join(tail),
            "exit": exit_status(row.proc.returncode),
            "log": str(row.log),
        }
    out = json.loads(row.result.read_text())
    raw = out.pop("clock")
    clock = StepClock(**{**raw, "inside": [tuple(x) if x else None for x in raw["inside"]]})
    out["train"] = clock.summary(row.running)
    out["profile"], out["row_info"] = clock.profile, clock.row_info
    out["inference"] = inference_summary(out.pop("inference_raw"), row.running)
    out["ran_seconds"] = sum(b - a for a, b in row.running)
    out["slices"] = len(row.running)
    out["load_before"] = load_before
    out["others_cpu_share"] = others_cpu_share
    out["load_after"] = os.getloadavg()[0]
    return out


def run_round(
    specs: list[RowSpec],
    pythons: dict[str, Path | str],
    data_dir: Path,
    s: Settings,
    logs: Path,
    interleave: float | None,
) -> list[dict[str, Any]]:
    """Every row once. Without ``interleave``, one after the other. With it, the rows' processes
    take turns of ``interleave`` seconds (the others stopped by SIGSTOP), so that every row is
    timed across the whole round: a slow or fast minute of this shared machine then falls on
    all rows alike instead of on whichever row ran in it. Only one row runs at any time."""
    load_before = os.getloadavg()[0]
    busy_before, ours_before, started = busy_cpu_seconds(), children_cpu_seconds(), time.time()
    errors: dict[str, dict[str, Any]] = {}
    finished: dict[str, Launched] = {}
    live: list[Launched] = []
    turns: deque[RowSpec | Launched] = deque(specs)  # launched at its first turn
    try:
        while turns:
            item = turns.popleft()
            if isinstance(item, RowSpec):
                python = pythons[item.venv]
                if isinstance(python, str):
                    errors[item.name] = {"row": item.name, "system": item.system, "error": python}
                    continue
                print(f"throughput: {item.name}", file=sys.stderr, flush=True)
                item = launch(item, python, data_dir, s, logs)
                live.append(item)
            if run_slice(item, interleave):
                finished[item.spec.name] = item
                live.remove(item)
            else:
                turns.append(item)
    finally:
        for row in live:  # interrupted: leave no stopped process behind
            signal_group(row, signal.SIGKILL)
            signal_group(row, signal.SIGCONT)
            row.proc.wait()
    wall = time.time() - started
    # The share of the machine that other processes used during the round: the load average
    # cannot tell (it lags, and counts our own rows), /proc/stat minus our own CPU time can.
    others = (busy_cpu_seconds() - busy_before) - (children_cpu_seconds() - ours_before)
    share = max(0.0, others / (wall * (os.cpu_count() or 1)))
    results = {name: finish(row, share, load_before) for name, row in finished.items()}
    return [results.get(spec.name) or errors[spec.name] for spec in specs]


def combine(runs: list[dict[str, Any]], interleaved: bool) -> dict[str, Any]:
    """A row's result over the rounds (each round is kept whole in the report's ``rounds``).
    Sequential rounds: the round with the best training throughput and the best inference of
    all (the other load on a shared machine only ever slows a run down). Interleaved rounds:
    every row saw the same machine, so the mean of the rounds' rates and times, and the largest
    peak RSS."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return runs[-1]
    if interleaved:
        out = dict(ok[-1])
        out["train"], out["inference"] = dict(out["train"]), dict(out["inference"])
        for part, key in (
            ("train", "samples_per_s"),
            ("inference", "samples_per_s"),
            ("train", "median_step_ms"),
            ("train", "time_to_first_step_s"),
        ):
            values = [r[part][key] for r in ok if r[part][key] is not None]  # a median: below
            out[part][key] = float(np.mean(values)) if values else None
        out["peak_rss_mib"] = max(r["peak_rss_mib"] for r in ok)
        # A round in which a pause cut every steady step has no median step and no breakdown:
        # the mean of the rounds that have one, and the note says so. With none, the last
        # round's None and its note stand.
        parts = [b for r in ok if (b := r["train"]["breakdown_ms_per_step"])]
        if parts:
            out["train"]["breakdown_ms_per_step"] = {
                k: float(np.mean([b[k] for b in parts])) for k in parts[0]
            }
            out["train"]["breakdown_note"] = (
                None
                if len(parts) == len(ok)
                else f"mean of {len(parts)} of {len(ok)} rounds: in the others {ALL_PAUSED}"
            )
    else:
        out = dict(max(ok, key=lambda r: r["train"]["samples_per_s"]))
        out["inference"] = max((r["inference"] for r in ok), key=lambda i: i["samples_per_s"])
    out["failed_runs"] = len(runs) - len(ok)
    return out


def run_rows(
    specs: list[RowSpec],
    s: Settings,
    data_dir: Path,
    work: Path,
    repeat: int,
    interleave: float | None = None,
) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]:
    """``repeat`` rounds of every row (see run_round); each row combined over the rounds, and
    the rounds themselves."""
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    pythons: dict[str, Path | str] = {"own": Path(sys.executable)}
    if any(spec.venv == "torchrec" for spec in specs):
        pythons["torchrec"] = torchrec_python()
    if any(spec.venv == "fuxictr" for spec in specs):
        pythons["fuxictr"] = fuxictr_python()
    if any(spec.venv == "peers" for spec in specs):
        try:
            pythons["peers"] = peers_python(work, logs / "peers-venv.log")
        except subprocess.CalledProcessError as err:
            pythons["peers"] = f"the peers' venv did not install: {err}"
    rounds = []
    for round_ in range(repeat):
        print(f"throughput: round {round_ + 1}/{repeat}", file=sys.stderr, flush=True)
        rounds.append(run_round(specs, pythons, data_dir, s, logs, interleave))
    combined = [combine([r[k] for r in rounds], interleave is not None) for k in range(len(specs))]
    return combined, rounds
