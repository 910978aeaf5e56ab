"""The mappings of popeye.models against SQLite and the legacy MySQL tables."""

import os

from sqlalchemy import create_engine, inspect, select
from sqlalchemy.orm import sessionmaker
from twisted.trial.unittest import TestCase

from popeye.config import Settings
from popeye.database import create_embedded_schema, open_database
from popeye.models import Base, Media, MediaAlbum, MediaAsset, MediaWorkflowStage, User
from tests.support import MariaDB


def round_trip(testcase, session_factory):
    """Write one media with its asset, stage and album link; read them back."""
    with session_factory() as session, session.begin():
        user = User(uuid="u-1", email="ann@example.com", displayname="Ann")
        session.add(user)
        session.flush()
        album = Media(uuid="album-1", user_id=user.id, media_type="original", is_album=True)
        media = Media(uuid="m-1", user_id=user.id, media_type="original", title="été", status="pending")
        session.add_all([album, media])
        session.flush()
        session.add_all(
            [
                MediaAsset(uuid="a-1", media_id=media.id, user_id=user.id, asset_type="original", bytes=5 << 30),
                MediaWorkflowStage(media_id=media.id, user_id=user.id, workflow_stage="PopeyeComplete"),
                MediaAlbum(album_id=album.id, media_id=media.id),
            ]
        )
    with session_factory() as session:
        media = session.scalars(select(Media).where(Media.uuid == "m-1")).one()
        testcase.assertEqual(media.title, "été")
        testcase.assertIsNotNone(media.created_date)
        asset = session.scalars(select(MediaAsset).where(MediaAsset.media_id == media.id)).one()
        testcase.assertEqual(asset.bytes, 5 << 30)  # a 5 GiB original fits
        testcase.assertEqual(session.scalar(select(MediaAlbum.album_id)), session.scalar(
            select(Media.id).where(Media.uuid == "album-1")))
        ids = session.scalars(select(Media.id).order_by(Media.id)).all()
        testcase.assertEqual(len(set(ids)), 2, "media ids are assigned by the database")


class EmbeddedSQLiteTests(TestCase):
    def test_models_create_on_sqlite_and_hold_a_full_job(self):
        state = os.path.abspath(self.mktemp())
        session_factory = open_database(Settings(state_dir=state))
        self.assertTrue(os.path.isfile(os.path.join(state, "popeye.db")))
        round_trip(self, session_factory)

    def test_schema_creation_is_repeatable(self):
        engine = create_engine("sqlite://")
        create_embedded_schema(engine)
        create_embedded_schema(engine)
        self.assertIn("media_albums", inspect(engine).get_table_names())


class LegacyMySQLTests(TestCase):
    def setUp(self):
        self.db = MariaDB(self)
        self.engine = create_engine(self.db.url)
        self.addCleanup(self.engine.dispose)

    def test_every_mapped_column_exists_in_the_legacy_tables(self):
        inspector = inspect(self.engine)
        for table in Base.metadata.sorted_tables:
            legacy = {c["name"]: c for c in inspector.get_columns(table.name)}
            for column in table.columns:
                self.assertIn(column.name, legacy, f"{table.name}.{column.name}")
            self.assertEqual(
                sorted(inspector.get_pk_constraint(table.name)["constrained_columns"]),
                sorted(c.name for c in table.primary_key.columns),
                f"primary key of {table.name}",
            )

    def test_models_write_and_read_the_legacy_tables(self):
        round_trip(self, sessionmaker(self.engine))

    def test_opening_a_mysql_database_creates_nothing(self):
        before = sorted(inspect(self.engine).get_table_names())
        self.db.execute_script("DROP TABLE media_albums")
        open_database(Settings(db_url=self.db.url))
        self.assertEqual(sorted(inspect(self.engine).get_table_names()), [t for t in before if t != "media_albums"])
