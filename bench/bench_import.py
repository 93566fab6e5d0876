"""`llmpulse import` of 1M JSON lines in random time order vs a parse-only pass (issue 14).

The file has varied attribution (300 users, each in one of 8 departments and working through 3 of 40
agents; 8 models), a request id on every line, 3% errors, and times spread over 20 days in random order. The baseline, in the same run, reads the same file and parses
every line with json.loads (what any importer must at least do; the import parses with the same
decoder, json.loads' C scanner). The import runs as the command does (`llmpulse import FILE`, in this process, which starts
its worker process for a file this big), into a fresh database. Besides the wall-clock figures it prints
the CPU seconds of both processes against the parse-only pass's: what a shared machine cannot skew.

Targets: >= 100,000 lines/s; <= 4x the parse-only pass.

    python bench/bench_import.py [--lines 1000000] [--ids ordered|chatcmpl]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import string
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import psutil

from llmpulse.core.cli import build_parser

MODELS = [
    ("openai", "gpt-4o"),
    ("openai", "gpt-4o-mini"),
    ("anthropic", "claude-sonnet-4-5"),
    ("anthropic", "claude-haiku-4-5"),
    ("groq", "llama-3.3-70b-versatile"),
    ("gemini", "gemini-2.5-flash"),
    ("mistral", "mistral-small-latest"),
    ("ollama", "llama3.2"),
]


USERS = 300


BASE62 = string.ascii_letters + string.digits


def request_id(rng: random.Random, i: int, ids: str) -> str:
    """In file order ("req-00000001-9f3a0c1e": a hex shape), or as OpenAI's ("chatcmpl-" + 29 random base62:
    an opaque shape, landing all over the unique request-id index)."""
    if ids == "chatcmpl":
        return "chatcmpl-" + "".join(rng.choices(BASE62, k=29))
    return f"req-{i:08d}-{rng.getrandbits(32):08x}"


def write_lines(path: Path, n: int, seed: int = 14, ids: str = "ordered") -> None:
    rng = random.Random(seed)
    start = time.time() - 20 * 86400
    with path.open("w") as out:
        for i in range(n):
            provider, model = MODELS[rng.randrange(len(MODELS))]
            user = rng.randrange(USERS)  # each user in one department, working through a few agents
            rec = {
                "ts": round(start + rng.random() * 20 * 86400, 3),
                "provider": provider,
                "model": model,
                "input_tokens": rng.randint(50, 6000),
                "output_tokens": rng.randint(5, 900),
                "latency_ms": round(rng.uniform(80, 6000), 1),
                "department": f"dept-{user % 8}",
                "agent": f"agent-{(user * 7 + rng.randrange(3)) % 40}",
                "user": f"user-{user}",
                "request_id": request_id(rng, i, ids),
            }
            if rng.random() < 0.03:
                rec["status"], rec["error_kind"] = "error", "rate_limited"
            out.write(json.dumps(rec) + "\n")


def cpu_seconds() -> float:
    """CPU time of this process and of its children that ended (the import's worker)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def parse_only(path: Path) -> tuple[float, float]:
    """(wall, CPU) seconds."""
    started, cpu = time.perf_counter(), cpu_seconds()
    with path.open(encoding="utf-8") as f:
        for line in f:
            json.loads(line)
    return time.perf_counter() - started, cpu_seconds() - cpu


def children_cpu_seconds() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return children.ru_utime + children.ru_stime


def run_import(path: Path, db: Path, config: Path) -> tuple[float, float, float]:
    """(wall, CPU, the worker process's CPU) seconds; the CPU of both processes."""
    args = build_parser().parse_args(["--config", str(config), "--db", str(db), "import", str(path)])
    started, cpu, worker = time.perf_counter(), cpu_seconds(), children_cpu_seconds()
    code = asyncio.run(args.handler(args))
    elapsed = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"import exited {code}")
    return elapsed, cpu_seconds() - cpu, children_cpu_seconds() - worker


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument(
        "--ids",
        choices=("ordered", "chatcmpl"),
        default="ordered",
        help="request ids in file order, or random OpenAI ones",
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path, db, config = Path(tmp) / "usage.jsonl", Path(tmp) / "import.db", Path(tmp) / "llmpulse.toml"
        config.write_text("")
        write_lines(path, args.lines, ids=args.ids)
        parse, parse_cpu = parse_only(path)
        rss = psutil.Process().memory_info().rss
        took, took_cpu, worker_cpu = run_import(path, db, config)
        peak_mb = (psutil.Process().memory_info().rss - rss) / 2**20
        again, again_cpu = parse_only(path)  # the better of two: the machine is shared
        parse, parse_cpu = min(parse, again), min(parse_cpu, again_cpu)
    rate = args.lines / took
    ratio = took / parse
    good = rate >= 100_000 and ratio <= 4
    print(f"{args.lines:,} lines in random time order, varied attribution, a request id each ({args.ids})")
    print(
        f"parse-only pass (read + json.loads): {parse:.2f} s ({args.lines / parse:,.0f} lines/s), {parse_cpu:.2f} s CPU"
    )
    print(
        f"llmpulse import: {took:.2f} s = {rate:,.0f} lines/s (target >= 100,000) = {ratio:.2f}x parse-only "
        f"(target <= 4x), +{max(peak_mb, 0):.0f} MB resident after, worker process peak "
        f"{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f} MB  {'OK' if good else 'MISSED'}"
    )
    print(
        f"CPU of the import, both processes: {took_cpu:.2f} s = {took_cpu / parse_cpu:.2f}x the parse-only pass's "
        f"(the worker judging {worker_cpu:.2f} s, this process storing {took_cpu - worker_cpu:.2f} s) "
        f"(on a shared machine the wall-clock ratio depends on how much of the two cores is free; load "
        f"{os.getloadavg()[0]:.1f})"
    )
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
