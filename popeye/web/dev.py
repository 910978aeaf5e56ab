"""``/dev``: the legacy liveness and diagnostics routes (SPEC section 1)."""

from sqlalchemy import select

from popeye.models import User
from popeye.web.routing import Application, HTTPError, Request, computes_only


@computes_only
def ping(request: Request) -> dict[str, str]:
    """Echo the query: the liveness check ops have always used."""
    return request.query


def error_stdout(request: Request) -> dict[str, str]:
    request.log.debug("dev/error/stdout called with %s", request.query)
    return request.query


def error_exception(request: Request):
    """The documented way the app reports a handled error."""
    raise HTTPError("bummer")


def users(request: Request) -> dict[str, str]:
    """Each user's email -> uuid, in id order (a later duplicate email wins)."""
    rows = request.orm.execute(select(User.email, User.uuid).order_by(User.id))
    return {email: uuid for email, uuid in rows}


dev_app = Application(
    [
        ("/ping/?", ping),
        ("/error/stdout/?", error_stdout),
        ("/error/exception/?", error_exception),
        ("/users/?", users),
    ]
)
