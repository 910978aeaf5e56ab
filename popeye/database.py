"""Engine and session factory for the legacy database.

MySQL (RDS) in production: the schema is not ours, so nothing here creates or
alters a table there.  SQLite is the embedded default: its tables are created
at start from :mod:`popeye.models`, with the lookup rows seeded.
"""

import os

from sqlalchemy import Engine, PrimaryKeyConstraint, create_engine, event, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.schema import CreateColumn

from popeye.config import Settings
from popeye.models import LOOKUPS, Base


def _numbered_in_composite_key(column) -> bool:
    table = column.table
    return len(table.primary_key.columns) > 1 and table.autoincrement_column is column


@compiles(CreateColumn, "sqlite")
def _sqlite_column(element, compiler, **kw):
    """SQLite auto-numbers only a single ``INTEGER PRIMARY KEY`` column, so the
    ``id`` of a legacy composite key (``media``: id + user_id) becomes that
    rowid column in the embedded schema; the other key columns stay NOT NULL."""
    column = element.element
    if _numbered_in_composite_key(column):
        return f"{compiler.preparer.format_column(column)} INTEGER PRIMARY KEY AUTOINCREMENT"
    return compiler.visit_create_column(element, **kw)


@compiles(PrimaryKeyConstraint, "sqlite")
def _sqlite_primary_key(constraint, compiler, **kw):
    if any(_numbered_in_composite_key(c) for c in constraint.columns):
        return None  # the id column carries the key itself (see above)
    return compiler.visit_primary_key_constraint(constraint, **kw)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    """WAL and a busy timeout let the WSGI threads read while a job writes."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def create_database_engine(settings: Settings) -> Engine:
    url = settings.database_url
    if url.get_backend_name() == "sqlite":
        engine = create_engine(url, echo=settings.db_verbose)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(
        url,
        echo=settings.db_verbose,
        pool_pre_ping=True,  # RDS drops idle connections
        pool_recycle=3600,
        pool_size=settings.worker_threads + 2,
        connect_args={"connect_timeout": 10, "read_timeout": 60, "write_timeout": 60},
    )


def create_embedded_schema(engine: Engine) -> None:
    """Create the embedded SQLite tables and lookup rows; never on MySQL."""
    if engine.dialect.name != "sqlite":
        return
    Base.metadata.create_all(engine)
    with Session(engine) as session, session.begin():
        for model, column, values in LOOKUPS:
            present = set(session.scalars(select(getattr(model, column))))
            session.add_all(model(**{column: v}) for v in values if v not in present)


def open_database(settings: Settings) -> sessionmaker[Session]:
    """The session factory for Settings; creates the embedded schema if needed."""
    url = settings.database_url
    if url.get_backend_name() == "sqlite" and url.database:
        os.makedirs(os.path.dirname(os.path.abspath(url.database)), exist_ok=True)
    engine = create_database_engine(settings)
    create_embedded_schema(engine)
    engine.dispose()  # no connection opened before twistd forks is carried over
    return sessionmaker(engine, expire_on_commit=False)
