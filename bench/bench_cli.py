"""CLI start-up vs `python -c "import textual"` (issue 14): `llmpulse --help`, `check`, `budgets`, `alerts`.

Each command runs for real (a fresh database, a config with no providers configured, no keys) as a new
process, interleaved with the baseline so load on the machine hits both alike; the median wall time of
each is compared. Also reported: whether the command imported the price table (genai_prices), which
only commands that price may do.

Target: each <= 1.2x the baseline; no genai_prices in any of these four.

    python bench/bench_cli.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = (("--help",), ("check",), ("budgets",), ("alerts",))


def wall(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - started


def imports_prices(argv: list[str], env: dict[str, str]) -> bool:
    out = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], env=env, capture_output=True, text=True)
    return "genai_prices" in out.stderr


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "llmpulse.toml"
        config.write_text("")
        (Path(tmp) / ".env").write_text("")
        env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and not k.startswith("LLMPULSE_")}
        env.update(HOME=tmp, XDG_CONFIG_HOME=tmp, XDG_DATA_HOME=tmp)
        # Bytecode as an installed package has it (pip compiles on install): without it every run of an
        # editable checkout compiles llmpulse's sources again (~170 ms), while textual's are compiled.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        base = [py, "-c", "import textual"]
        cli = [py, "-m", "llmpulse.core.cli", "--config", str(config), "--db", str(Path(tmp) / "b.db")]
        cli += ["--env-file", str(Path(tmp) / ".env")]
        for cmd in COMMANDS:  # creates the database, writes the bytecode
            subprocess.run([*cli, *cmd], env=env, capture_output=True, check=False)
        times: dict[str, list[float]] = {"baseline": []}
        for _ in range(args.runs):
            times["baseline"].append(wall(base, env))
            for cmd in COMMANDS:
                times.setdefault(" ".join(cmd), []).append(wall([*cli, *cmd], env))
        baseline = statistics.median(times["baseline"])
        print(f"baseline python -c 'import textual': median {baseline * 1000:.0f} ms over {args.runs} runs")
        ok = True
        for cmd in COMMANDS:
            name = " ".join(cmd)
            median = statistics.median(times[name])
            prices = imports_prices([*cli, *cmd], env)
            good = median <= 1.2 * baseline and not prices
            ok &= good
            print(
                f"llmpulse {name:<8} median {median * 1000:4.0f} ms = {median / baseline:.2f}x import textual "
                f"(target <= 1.2x) | price table imported: {'yes' if prices else 'no'}  {'OK' if good else 'MISSED'}"
            )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
