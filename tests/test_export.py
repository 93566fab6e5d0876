"""`llmpulse export`: real subprocesses on real files — every kind of file with a manifest, usage that
round-trips through `llmpulse import`, no secret in any file, CSV safe for terminals and spreadsheets."""

from __future__ import annotations

import asyncio
import csv
import json
import sqlite3
import time
import uuid
from pathlib import Path

from llmpulse.core.alerts.engine import AlertEngine
from llmpulse.core.alerts.rules import Condition
from llmpulse.core.clock import ManualClock
from llmpulse.core.store import Store
from tests.cli_helpers import run_cli

CANARY = "sk-proj-LEAKCANARY0123456789abcdef"
NOW = time.time()


def request_id(i: int) -> str:
    """Ids of the shapes providers and SDKs use (stored by shape, request_ids.py) and of none."""
    u = uuid.UUID(int=(i + 1) * 0x9E3779B97F4A7C15F39CC0605CEDC834 % (1 << 128))
    shapes = [
        f"req-{i}",
        str(u),
        str(u).upper(),
        "chatcmpl-" + u.hex[:29].replace("a", "Q"),
        u.hex + u.hex[:16],  # an OTLP trace id + span id
        f"{u}@groq",
        f"req_{u.hex}",
        f"запрос-{i}",
        f"  odd id {i}:/" + "x" * (i % 3),
    ]
    return shapes[i % len(shapes)].strip()


def usage_lines(n: int) -> list[dict]:
    models = [("openai", "gpt-4o"), ("anthropic", "claude-sonnet-4-20250514"), ("openai", "gpt-4o-mini")]
    lines = []
    for i in range(n):
        provider, model = models[i % len(models)]
        lines.append(
            {
                "ts": NOW - 3600 * (i + 1),
                "provider": provider,
                "model": model,
                "input_tokens": 100 + 7 * i,
                "output_tokens": 20 + 3 * i,
                "latency_ms": 250.0 + i,
                "status": "error" if i % 5 == 0 else "ok",
                "error_kind": "server_error" if i % 5 == 0 else None,
                "department": "Marketing" if i % 2 else "Support",
                "request_id": request_id(i),
            }
        )
    return [{k: v for k, v in line.items() if v is not None} for line in lines]


def seed(tmp_path: Path, lines: list[dict]) -> Path:
    db = tmp_path / "src.db"
    src = tmp_path / "calls.jsonl"
    src.write_text("".join(json.dumps(line) + "\n" for line in lines))
    proc = run_cli(tmp_path, "--db", str(db), "import", str(src))
    assert proc.returncode == 0, proc.stderr

    async def alerts_and_probes() -> None:
        store = await Store.open(db)
        clock = ManualClock(NOW - 7200)
        engine = AlertEngine(store, None, clock)
        [opened] = await engine.process([Condition("provider_down", "openai", "critical", f"OpenAI down: {CANARY}")])
        clock.advance(60)
        await engine.ack(opened.alert_id, "oncall")
        await store.execute(
            "INSERT INTO probe_results (provider_id, checked_at, status, error_kind, error, latency_ms, http_status) "
            "VALUES ('openai', ?, 'failed', 'auth', ?, 120.0, 401)",
            (NOW - 60, f"Incorrect API key provided: {CANARY}"),
        )
        await store.close()

    asyncio.run(alerts_and_probes())
    return db


def test_export_jsonl_round_trips_usage_and_keeps_secrets_out(tmp_path: Path) -> None:
    lines = usage_lines(40)
    db = seed(tmp_path, lines)
    out = tmp_path / "out"
    proc = run_cli(
        tmp_path, "--db", str(db), "export", "--since", "30d", "--out", str(out), env={"OPENAI_API_KEY": CANARY}
    )
    assert proc.returncode == 0, proc.stderr

    manifest = json.loads((out / "manifest.json").read_text())
    names = {f["name"]: f["rows"] for f in manifest["files"]}
    for kind in (
        "usage",
        "usage_rollups",
        "probes",
        "alerts",
        "alert_transitions",
        "alert_deliveries",
        "budgets",
        "migrations",
        "migration_events",
    ):
        assert f"{kind}.jsonl" in names and (out / f"{kind}.jsonl").exists()
    assert names["usage.jsonl"] == len(lines)
    assert names["alerts.jsonl"] == 1 and names["alert_transitions.jsonl"] == 2  # opened, acknowledged
    assert names["probes.jsonl"] == 1
    assert manifest["period"]["until"] - manifest["period"]["since"] >= 30 * 86400
    for path in out.iterdir():
        assert "LEAKCANARY" not in path.read_text(), path.name

    # Round trip: the exported usage imported into a fresh database is the same traffic.
    back = tmp_path / "back.db"
    proc = run_cli(tmp_path, "--db", str(back), "import", str(out / "usage.jsonl"))
    assert proc.returncode == 0, proc.stderr
    with sqlite3.connect(back) as conn:
        got = conn.execute(
            "SELECT COUNT(*), SUM(input_tokens), SUM(output_tokens), SUM(status = 'error'), SUM(latency_ms) "
            "FROM usage_records"
        ).fetchone()
        per_department = dict(conn.execute("SELECT department, COUNT(*) FROM usage_records GROUP BY department"))
    expected = (
        len(lines),
        sum(line["input_tokens"] for line in lines),
        sum(line["output_tokens"] for line in lines),
        sum(1 for line in lines if line["status"] == "error"),
        sum(line["latency_ms"] for line in lines),
    )
    assert got == expected
    assert per_department == {
        d: sum(1 for line in lines if line["department"] == d) for d in {line["department"] for line in lines}
    }
    with sqlite3.connect(db) as a, sqlite3.connect(back) as b:
        cost_a = a.execute("SELECT SUM(cost_usd) FROM usage_records").fetchone()[0]
        cost_b = b.execute("SELECT SUM(cost_usd) FROM usage_records").fetchone()[0]
    assert cost_a is not None and abs(cost_a - cost_b) < 1e-9  # priced again to the same figure
    # every request id byte for byte (in the file and in the database it went into), and the export
    # imported again into the database it came from adds nothing
    exported = [json.loads(line)["request_id"] for line in (out / "usage.jsonl").read_text().splitlines()]
    assert sorted(exported) == sorted(line["request_id"] for line in lines)
    with sqlite3.connect(back) as b:
        assert sorted(r[0] for r in b.execute("SELECT request_id FROM usage_records")) == sorted(exported)
    proc = run_cli(tmp_path, "--db", str(db), "import", str(out / "usage.jsonl"))
    assert proc.returncode == 0 and f"imported 0 records ({len(lines)} already there" in proc.stdout, proc.stdout


def test_export_csv_is_safe_for_terminals_and_spreadsheets(tmp_path: Path) -> None:
    lines = usage_lines(3)
    lines[0]["task_type"] = '=HYPERLINK("http://evil")'
    lines[1]["user"] = "\x1b]0;pwned\x07bob"
    db = seed(tmp_path, lines)
    out = tmp_path / "csv"
    proc = run_cli(tmp_path, "--db", str(db), "export", "--since", "7d", "--out", str(out), "--format", "csv")
    assert proc.returncode == 0, proc.stderr
    with (out / "usage.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(lines)
    cells = [cell for row in rows for cell in row.values()]
    assert '\'=HYPERLINK("http://evil")' in cells
    assert not any("\x1b" in cell or "\x07" in cell for cell in cells)
    assert "bob" in {row["user"][-3:] for row in rows}
    assert (out / "usage.jsonl").exists()  # the import form is always there
    assert json.loads((out / "manifest.json").read_text())["format"] == "csv"


def test_export_bad_arguments_are_one_line_errors(tmp_path: Path) -> None:
    db = seed(tmp_path, usage_lines(1))
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    for args, word in (
        (["--since", "soon", "--out", str(tmp_path / "o")], "--since"),
        (["--out", str(a_file)], "--out"),
    ):
        proc = run_cli(tmp_path, "--db", str(db), "export", *args)
        assert proc.returncode == 2
        assert word in proc.stderr and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
