"""``GET /dashboard``: one small page for a person watching Popeye.

Server-rendered, no front-end build: health and queue at the top, recent
jobs with a progress bar for uploads under way, failures with their reason
and a retry button.  It refreshes itself every few seconds.
"""

from html import escape
from urllib.parse import urlencode

from popeye.config import Settings
from popeye.health import Health
from popeye.jobs import JobRunner
from popeye.journal import FAILED, RUNNING, job_view
from popeye.uploads import uploads_in_errors
from popeye.web.routing import Application, Request, Response, check_token

REFRESH_SECONDS = 5
RECENT = 50

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; margin: 0 0 .5em; }
.summary { display: flex; gap: 1.5em; align-items: baseline; margin-bottom: 1em; }
.ready { color: #176117; font-weight: bold; } .failing { color: #a40000; font-weight: bold; }
table { border-collapse: collapse; width: 100%; font-size: .9em; }
th, td { text-align: left; padding: .3em .5em; border-bottom: 1px solid #ddd; vertical-align: top; }
tr.failed td { background: #fff1f0; } tr.running td { background: #f0f6ff; }
code { font-size: .95em; } progress { width: 8em; }
"""


def dashboard_app(settings: Settings, runner: JobRunner, health: Health) -> Application:
    def page(request: Request) -> Response:
        check_token(request, settings.notify_token)
        token = request.query.get("token")
        report = health.report()
        retryable = set(uploads_in_errors(settings.upload_dir))
        rows = "".join(_row(job_view(e), e["uuid"] in retryable, token) for e in runner.journal.recent(None, RECENT))
        failing = [name for name, check in report["checks"].items() if not check["ok"]]
        state = ('<span class="ready">ready</span>' if report["ready"] else
                 f'<span class="failing">not ready: {escape(", ".join(failing))}</span>')
        details = "".join(f"<li>{escape(name)}: {escape(check['detail'])}</li>"
                          for name, check in report["checks"].items() if not check["ok"])
        html = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<title>Popeye</title><style>{STYLE}</style></head>
<body>
<h1>Popeye</h1>
<div class="summary"><div id="health">health: {state}</div>
<div id="queue">queued: {len(runner.queue)}</div>
<div id="running">running: {len(runner.active)}</div>
<div>failed uploads in errors/: {len(retryable)}</div></div>
{f'<ul class="failing">{details}</ul>' if details else ''}
<table id="jobs"><thead><tr><th>upload</th><th>state</th><th>step</th><th>progress</th><th>attempts</th>
<th>retries</th><th>updated (UTC)</th><th>last error</th><th></th></tr></thead>
<tbody>{rows or '<tr><td colspan="9">no jobs yet</td></tr>'}</tbody></table>
</body></html>
"""
        return Response(html.encode("utf-8"), content_type="text/html; charset=utf-8",
                        headers=[("Referrer-Policy", "no-referrer")])

    return Application([("/dashboard/?", page)])


def _row(view: dict, retryable: bool, token: str | None) -> str:
    progress = ""
    if view["bytes_total"]:
        progress = (f'<progress value="{view["bytes_done"]}" max="{view["bytes_total"]}"></progress> '
                    f'{view["progress"]}%')
    action = ""
    if view["state"] == FAILED and retryable:
        query = urlencode({"uuid": view["uuid"], "next": "dashboard", **({"token": token} if token else {})})
        action = f'<form method="post" action="/processor/retry?{escape(query)}"><button>retry</button></form>'
    css = view["state"] if view["state"] in (FAILED, RUNNING) else ""
    cells = [f"<code>{escape(view['uuid'])}</code>", escape(view["state"]), escape(view["step"] or ""), progress,
             str(view["attempts"]), str(view["retries"]), escape((view["updated"] or "")[:19].replace("T", " ")),
             escape(view["last_error"] or ""), action]
    return f'<tr class="{css}" data-state="{escape(view["state"])}">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"
