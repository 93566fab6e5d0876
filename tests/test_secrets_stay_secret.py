"""Secrets in every form stay secret, and what a peer sends never drives the terminal: keys echoed across
a cut or URL-encoded, passwords in a base URL, webhook URLs in the log, control sequences and spreadsheet
formulas in output. Real `llmpulse` processes against the simulated fleet and a real webhook receiver."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from urllib.parse import quote

from llmpulse.core.simulator.fleet import FakeProvider, Fleet, Response
from tests.cli_helpers import run_cli

KEY = "sk-proj-LEAKCANARY0123456789abcdefghij"
ODD_KEY = "Pa$$/w+rd=LEAKODD0042"  # a key with characters a provider's echo would encode
PASSWORD = "hunter2LEAKPASS"


def no_part_of(secret: str, *texts: str) -> bool:
    """True when no 8 consecutive characters of `secret` appear in any of `texts`."""
    return not any(secret[i : i + 8] in text for text in texts for i in range(len(secret) - 7))


def database_bytes(db: Path) -> str:
    return "".join(p.read_bytes().decode("latin-1") for p in db.parent.glob(db.name + "*"))


def test_a_key_echoed_across_the_cut_or_encoded_never_shows(tmp_path):
    with Fleet([FakeProvider("openai", key=KEY), FakeProvider("groq", kind="groq", key=ODD_KEY)]) as fleet:
        fleet.add_route(
            "openai",
            "GET",
            "/models",  # the key starts just before the 300-character cut of an error line
            lambda fake, req: Response.json(
                401,
                {"error": {"message": "x" * 292 + f" Incorrect API key provided: {KEY}", "code": "invalid_api_key"}},
            ),
        )
        fleet.add_route(
            "groq",
            "GET",
            "/models",
            lambda fake, req: Response.json(
                401,
                {"error": {"message": f"bad key {quote(ODD_KEY, safe='')} or {json.dumps(ODD_KEY)}", "code": "x"}},
            ),
        )
        (tmp_path / "llmpulse.toml").write_text(
            '[probe]\ntimeout = "2s"\n'
            f'[providers.openai]\nbase_url = "{fleet.base_url("openai")}"\n'
            f'[providers.groq]\nbase_url = "{fleet.base_url("groq")}"\n'
        )
        db = tmp_path / "k.db"
        env = {"OPENAI_API_KEY": KEY, "GROQ_API_KEY": ODD_KEY}
        table = run_cli(tmp_path, "--db", str(db), "check", env=env)
        as_json = run_cli(tmp_path, "--db", str(db), "check", "--json", env=env)
        assert "invalid_api_key" in as_json.stdout or "auth" in as_json.stdout, as_json.stdout
        outputs = (table.stdout, table.stderr, as_json.stdout, as_json.stderr, database_bytes(db))
        assert no_part_of(KEY[8:], *outputs)  # past the well-known "sk-proj-"
        for form in (ODD_KEY, quote(ODD_KEY, safe=""), json.dumps(ODD_KEY)[1:-1]):
            assert form not in "".join(outputs)


def test_a_password_in_a_base_url_never_shows(tmp_path):
    with Fleet([FakeProvider("openai", key=KEY)]) as fleet:
        url = fleet.base_url("openai").replace("http://", f"http://ops:{PASSWORD}@")
        (tmp_path / "llmpulse.toml").write_text(f'[probe]\ntimeout = "2s"\n[providers.openai]\nbase_url = "{url}"\n')
        fleet.set_behaviour("openai", "server_error")
        db = tmp_path / "p.db"
        env = {"OPENAI_API_KEY": KEY}
        runs = [
            run_cli(tmp_path, "--db", str(db), *args, env=env)
            for args in (("providers",), ("providers", "--json"), ("check",), ("check", "--json"))
        ]
        assert all("Traceback" not in r.stderr for r in runs)
        assert "openai" in runs[0].stdout
        texts = [t for r in runs for t in (r.stdout, r.stderr)] + [database_bytes(db)]
        assert no_part_of(PASSWORD, *texts)


def test_control_sequences_never_reach_the_terminal_and_csv_cells_are_never_formulas(tmp_path):
    evil = "\x1b]0;pwned\x07\x1b[2J\x1b[31mred"
    with Fleet([FakeProvider("openai", key=KEY)]) as fleet:
        fleet.add_route(
            "openai", "GET", "/models", lambda fake, req: Response.json(500, {"error": {"message": f"boom {evil}"}})
        )
        (tmp_path / "llmpulse.toml").write_text(
            f'[probe]\ntimeout = "2s"\n[providers.openai]\nbase_url = "{fleet.base_url("openai")}"\n'
        )
        db = tmp_path / "t.db"
        check = run_cli(tmp_path, "--db", str(db), "check", env={"OPENAI_API_KEY": KEY})
    lines = [
        {"provider": "openai", "model": "gpt-4o", "input_tokens": 10, "department": f"ops{evil}"},
        {"provider": "openai", "model": "gpt-4o", "input_tokens": 10, "department": '=HYPERLINK("http://x","y")'},
        {"provider": "openai", "model": "gpt-4o", "input_tokens": 10, "department": "+cmd|' /C calc'!A0"},
    ]
    (tmp_path / "u.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert run_cli(tmp_path, "--db", str(db), "import", str(tmp_path / "u.jsonl")).returncode == 0
    table = run_cli(tmp_path, "--db", str(db), "report", "--by", "department")
    csv_out = run_cli(tmp_path, "--db", str(db), "report", "--by", "department", "--format", "csv")
    for text in (check.stdout, check.stderr, table.stdout, csv_out.stdout):
        assert "\x1b" not in text and "\x07" not in text, repr(text)
    assert "boom" in check.stdout + check.stderr and "opsred" in table.stdout
    cells = [line.split(",", 1)[0] for line in csv_out.stdout.splitlines()[1:]]
    assert '\'=HYPERLINK(""http://x""' in csv_out.stdout or any(c.startswith("\"'=HYPERLINK") for c in cells)
    assert not any(c.lstrip('"').startswith(("=", "+", "@")) for c in cells), cells


def test_the_daemon_log_never_shows_a_webhook_token(tmp_path):
    import http.server
    import threading

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            body = f"invalid_token: {self.path}".encode()  # Slack-like: the reply names the URL it got
            self.send_response(404)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    token = "xoxbLEAKTOKEN0123456789"
    url = f"http://127.0.0.1:{server.server_address[1]}/services/T0LEAK01/B0LEAK02/{token}?token=q{token}"
    try:
        (tmp_path / "llmpulse.toml").write_text(
            '[[budgets]]\nscope = "total"\nperiod = "month"\nlimit_usd = 0.01\n\n'
            '[[alerts.channels]]\nname = "hook"\ntype = "slack"\nurl_env = "SLACK_URL"\nmin_severity = "info"\n'
            "retries = 0\n"
        )
        db = tmp_path / "w.db"
        run_cli(
            tmp_path,
            "--db",
            str(db),
            "record",
            "--provider",
            "openai",
            "--model",
            "gpt-4o",
            "--input-tokens",
            "9000000",
        )
        once = run_cli(tmp_path, "--db", str(db), "daemon", "--once", env={"SLACK_URL": url})
        shown = run_cli(tmp_path, "--db", str(db), "alerts", "show", "1")
    finally:
        server.shutdown()
        server.server_close()
    with sqlite3.connect(db) as con:
        errors = [r[0] for r in con.execute("SELECT error FROM alert_deliveries")]
    assert errors and all(e and "404" in e for e in errors), errors
    for text in (once.stderr, once.stdout, shown.stdout, shown.stderr, database_bytes(db)):
        assert token not in text and "T0LEAK01/B0LEAK02" not in text
