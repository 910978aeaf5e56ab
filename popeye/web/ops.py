"""Routes for operators: ``/health`` and ``/metrics``.

Both honour ``notify_token`` when it is set, and neither shows a secret.
"""

from popeye.config import Settings
from popeye.health import Health
from popeye.jobs import JobRunner
from popeye.metrics import CONTENT_TYPE
from popeye.web.routing import Application, Request, Response, check_token


def ops_app(settings: Settings, runner: JobRunner, health: Health) -> Application:
    def readiness(request: Request) -> Response:
        """200 when every backend answers, 503 with the failing checks when not."""
        check_token(request, settings.notify_token)
        report = health.report()
        report["queue_depth"] = len(runner.queue)
        report["jobs_running"] = len(runner.active)
        report["accepting_jobs"] = runner.accepting
        ready = report["ready"] and runner.accepting
        return Response(report, status=200 if ready else 503)

    def metrics(request: Request) -> Response:
        check_token(request, settings.notify_token)
        return Response(runner.metrics.render(), content_type=CONTENT_TYPE)

    return Application([("/health/?", readiness), ("/metrics/?", metrics)])
