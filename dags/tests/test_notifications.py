"""send_failure_notification: logs always, notifies configured channels, never raises."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import snapshot_notifications as notifications


class FakeTI(SimpleNamespace):
    def xcom_pull(self, task_ids: str):
        assert task_ids == "resolve_snapshot_date"
        return self.snapshot_date


def _context() -> dict:
    ti = FakeTI(dag_id="portfolio_daily_snapshot", task_id="verify_run", run_id="scheduled__2026-11-30",
                try_number=1, log_url="http://airflow/log", snapshot_date="2026-11-29")
    return {"ti": ti, "dag_run": SimpleNamespace(conf={}), "exception": RuntimeError("run 8 is partial")}


def test_message_names_dag_task_run_date_exception_and_log() -> None:
    assert notifications.failure_message(_context()) == {
        "event": "portfolio_snapshot_failure",
        "dag_id": "portfolio_daily_snapshot",
        "task_id": "verify_run",
        "run_id": "scheduled__2026-11-30",
        "try_number": 1,
        "snapshot_date": "2026-11-29",
        "exception": "RuntimeError: run 8 is partial",
        "log_url": "http://airflow/log",
    }


def test_without_channels_it_logs_and_does_not_raise(monkeypatch, caplog) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_SNAPSHOT_ALERTS_FILE", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_SNAPSHOT_ALERTS_SMTP", raising=False)
    with caplog.at_level(logging.ERROR, logger=notifications.__name__):
        notifications.send_failure_notification(_context())
    assert notifications.configured_notifiers() == []
    logged = [r.getMessage() for r in caplog.records if "portfolio snapshot failure" in r.getMessage()]
    assert len(logged) == 1 and '"task_id": "verify_run"' in logged[0]


def test_file_channel_receives_one_json_line(monkeypatch, tmp_path) -> None:
    path = tmp_path / "alerts.jsonl"
    monkeypatch.setenv("AIRFLOW_CONN_SNAPSHOT_ALERTS_FILE",
                       json.dumps({"conn_type": "fs", "extra": {"path": str(path)}}))
    notifications.send_failure_notification(_context())
    lines = path.read_text().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["exception"] == "RuntimeError: run 8 is partial"


def test_smtp_channel_is_built_from_its_connection(monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_SNAPSHOT_ALERTS_SMTP", json.dumps(
        {"conn_type": "smtp", "host": "localhost", "port": 25,
         "extra": {"to": "ops@example.com", "from_email": "airflow@example.com"}}))
    [notifier] = notifications.configured_notifiers()
    assert type(notifier).__name__ == "SmtpNotifier"
    assert notifier.to == "ops@example.com" and notifier.smtp_conn_id == "snapshot_alerts_smtp"


def test_a_broken_channel_never_raises(monkeypatch, tmp_path, caplog) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_SNAPSHOT_ALERTS_FILE",
                       json.dumps({"conn_type": "fs", "extra": {"path": str(tmp_path / "missing" / "a.jsonl")}}))
    monkeypatch.setenv("AIRFLOW_CONN_SNAPSHOT_ALERTS_SMTP", json.dumps({"conn_type": "smtp", "extra": {}}))
    with caplog.at_level(logging.ERROR, logger=notifications.__name__):
        notifications.send_failure_notification(_context())
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "could not deliver" in messages and "not a usable notification channel" in messages
