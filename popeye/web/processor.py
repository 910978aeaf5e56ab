"""``/processor``: Brewtus's notification that an upload is complete.

The route never does slow work: it checks the request, hands the upload to
the job runner and answers (SPEC section 1).
"""

import hmac

from popeye.config import Settings
from popeye.jobs import JobRunner, Unavailable
from popeye.uploads import Refused, UploadRoot, confine, is_complete
from popeye.web.routing import Application, HTTPError, Request


def check_token(request: Request, expected: str) -> None:
    """``notify_token``, when set, must arrive as ``token`` or ``X-Popeye-Token``."""
    if not expected:
        return
    given = request.query.get("token") or request.header("X-Popeye-Token") or ""
    if not hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8")):
        raise HTTPError("Missing or wrong token", status=403)


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

    return Application([("/process/?", process)])
