"""``/processor``: Brewtus's notification that an upload is complete.

The route never does slow work: it checks the request, hands the upload to
the job runner and answers (SPEC section 1).
"""

from typing import Any
from urllib.parse import urlencode

from popeye.config import Settings
from popeye.jobs import JobRunner, Unavailable
from popeye.journal import STATES, job_view
from popeye.uploads import Refused, UploadRoot, confine, is_complete, restore_from_errors, return_to_errors
from popeye.web.routing import Application, HTTPError, Request, Response, accepts_post, check_token


def processor_app(settings: Settings, runner: JobRunner) -> Application:
    upload_root = UploadRoot(settings.upload_dir)

    def process(request: Request) -> dict[str, str]:
        check_token(request, settings.notify_token)
        path = request.query.get("path")
        if not path:
            raise HTTPError("Missing path param")
        try:
            upload = confine(path, upload_root)
        except Refused as refusal:
            raise HTTPError(refusal.message, status=refusal.status) from None
        if not is_complete(upload):
            raise HTTPError("upload is not complete (info offset != finalLength, or no metadata)", status=409)
        try:
            job = runner.submit(upload)
        except Unavailable as refusal:
            raise HTTPError(str(refusal), status=503) from None
        return {"full_filename": path, "uuid": upload.uuid, "job": job}

    def status(request: Request) -> dict[str, Any]:
        """One job as the journal has it: state, step, bytes sent, retries."""
        check_token(request, settings.notify_token)
        uuid = request.query.get("uuid")
        if not uuid:
            raise HTTPError("Missing uuid param", status=400)
        entry = runner.journal.get(uuid)
        if entry is None:
            raise HTTPError(f"No job for {uuid}", status=404)
        return job_view(entry)

    def jobs(request: Request) -> dict[str, Any]:
        """Recent jobs, newest first, optionally of one state."""
        check_token(request, settings.notify_token)
        state = request.query.get("state") or None
        if state is not None and state not in STATES:
            raise HTTPError(f"state must be one of {', '.join(STATES)}", status=400)
        try:
            limit = min(max(int(request.query.get("limit", "50")), 1), MAX_JOBS)
        except ValueError:
            raise HTTPError("limit must be a whole number", status=400) from None
        return {"jobs": [job_view(e) for e in runner.journal.recent(state, limit)]}

    @accepts_post
    def retry(request: Request) -> Response:
        """Move a failed upload back from ``errors/`` and queue it again (the
        dashboard's retry button; ``next=dashboard`` answers with a redirect)."""
        check_token(request, settings.notify_token)
        uuid = request.query.get("uuid")
        if not uuid:
            raise HTTPError("Missing uuid param", status=400)
        try:
            path = restore_from_errors(settings.upload_dir, uuid)
        except Refused as refusal:
            raise HTTPError(refusal.message, status=refusal.status) from None
        try:
            job = runner.submit(confine(path, upload_root))
        except (Refused, Unavailable) as refusal:
            return_to_errors(settings.upload_dir, uuid)
            raise HTTPError(str(refusal), status=getattr(refusal, "status", 503)) from None
        if request.query.get("next") == "dashboard":
            token = request.query.get("token")
            location = "/dashboard" + (f"?{urlencode({'token': token})}" if token else "")
            return Response({"uuid": uuid, "job": job}, status=303, headers=[("Location", location)])
        return Response({"uuid": uuid, "job": job})

    return Application(
        [("/process/?", process), ("/status/?", status), ("/jobs/?", jobs), ("/retry/?", retry)]
    )


#: The most jobs one ``/processor/jobs`` answer lists.
MAX_JOBS = 500
