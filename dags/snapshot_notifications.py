"""Failure reporting for the portfolio_daily_snapshot DAG.

send_failure_notification is the on_failure_callback of every task. It logs
one structured message, then hands the failure to each of Airflow's notifiers
that has a connection configured:

* SMTP: connection ``snapshot_alerts_smtp`` (an smtp connection; its extra
  holds ``{"to": "ops@example.com", "from_email": "airflow@example.com"}``);
* a JSON-lines file: connection ``snapshot_alerts_file`` (extra
  ``{"path": "/var/log/airflow/snapshot_failures.jsonl"}``), for log shippers.

With none configured it only logs. It never raises: a broken notifier must
not hide the task's own failure.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Callable

from airflow.sdk import BaseHook, BaseNotifier

log = logging.getLogger(__name__)

SMTP_CONN_ID = "snapshot_alerts_smtp"
FILE_CONN_ID = "snapshot_alerts_file"


def failure_message(context: Any) -> dict[str, Any]:
    """The facts of a failure, from a task's callback context."""
    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    snapshot_date = None
    if ti is not None:
        try:
            snapshot_date = ti.xcom_pull(task_ids="resolve_snapshot_date")
        except Exception:  # the date task itself may be what failed
            snapshot_date = None
    if snapshot_date is None and dag_run is not None:
        snapshot_date = (getattr(dag_run, "conf", None) or {}).get("snapshot_date")
    exception = context.get("exception")
    return {
        "event": "portfolio_snapshot_failure",
        "dag_id": getattr(ti, "dag_id", None),
        "task_id": getattr(ti, "task_id", None),
        "run_id": getattr(ti, "run_id", None),
        "try_number": getattr(ti, "try_number", None),
        "snapshot_date": snapshot_date,
        "exception": f"{type(exception).__name__}: {exception}" if exception else None,
        "log_url": getattr(ti, "log_url", None),
    }


class JsonLinesFileNotifier(BaseNotifier):
    """Append each failure as one JSON line to a file."""

    template_fields = ("path",)

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def notify(self, context: Any) -> None:
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(json.dumps(failure_message(context), default=str) + "\n")


def _connection_extra(conn_id: str) -> dict[str, Any] | None:
    """The extra of a configured connection, or None when there is none."""
    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception:
        return None
    return conn.extra_dejson or {}


def _smtp_notifier(extra: dict[str, Any]) -> BaseNotifier:
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    return SmtpNotifier(
        to=extra["to"],
        from_email=extra.get("from_email"),
        smtp_conn_id=SMTP_CONN_ID,
        subject="[portfolio snapshot] {{ ti.dag_id }}.{{ ti.task_id }} failed for run {{ ti.run_id }}",
        html_content=(
            "<p>Task {{ ti.task_id }} of {{ ti.dag_id }} failed (try {{ ti.try_number }}).</p>"
            "<p>{{ exception }}</p><p><a href='{{ ti.log_url }}'>Log</a>; failed portfolios are "
            "in snapshot.snapshot_run_errors.</p>"
        ),
    )


NOTIFIERS: dict[str, Callable[[dict[str, Any]], BaseNotifier]] = {
    SMTP_CONN_ID: _smtp_notifier,
    FILE_CONN_ID: lambda extra: JsonLinesFileNotifier(path=extra["path"]),
}


def configured_notifiers() -> list[BaseNotifier]:
    """One notifier for each channel whose connection exists."""
    notifiers = []
    for conn_id, make in NOTIFIERS.items():
        extra = _connection_extra(conn_id)
        if extra is None:
            continue
        try:
            notifiers.append(make(extra))
        except Exception:
            log.exception("connection %s is not a usable notification channel", conn_id)
    return notifiers


def send_failure_notification(context: Any) -> None:
    """on_failure_callback: log the failure, then notify every configured channel."""
    try:
        message = failure_message(context)
        log.error("portfolio snapshot failure: %s", json.dumps(message, default=str))
        for notifier in configured_notifiers():
            try:
                notifier.notify(context)
            except Exception:
                log.exception("notifier %s could not deliver the failure", type(notifier).__name__)
    except Exception:
        log.exception("send_failure_notification failed")
