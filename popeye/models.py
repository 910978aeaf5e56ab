"""SQLAlchemy 2.x mappings onto the legacy schema (SPEC section 4).

The production MySQL schema is shared with other services: these classes map
the columns Popeye reads or writes and nothing more, and are never used to
create or alter tables there.  Only the embedded SQLite database is created
from them (see :mod:`popeye.database`).
"""

from datetime import datetime, timezone

from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    """Naive UTC, as the legacy DATETIME columns hold it."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Timestamps:
    created_date: Mapped[datetime | None] = mapped_column(DateTime, default=utcnow)
    updated_date: Mapped[datetime | None] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class MediaType(Base):
    __tablename__ = "media_types"
    type: Mapped[str] = mapped_column(String(16), primary_key=True)


class AssetType(Base):
    __tablename__ = "asset_types"
    type: Mapped[str] = mapped_column(String(16), primary_key=True)


class WorkflowStage(Base):
    __tablename__ = "workflow_stages"
    stage: Mapped[str] = mapped_column(String(32), primary_key=True)


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str | None] = mapped_column(String(36), unique=True)
    email: Mapped[str | None] = mapped_column(String(256))
    displayname: Mapped[str | None] = mapped_column(String(128))


class Media(Timestamps, Base):
    __tablename__ = "media"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True, autoincrement=False)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    media_type: Mapped[str] = mapped_column(ForeignKey("media_types.type"))
    is_album: Mapped[bool] = mapped_column(Boolean, default=False)
    title: Mapped[str | None] = mapped_column(String(200))
    filename: Mapped[str | None] = mapped_column(String(1024))
    view_count: Mapped[int | None] = mapped_column(Integer, default=0)
    status: Mapped[str | None] = mapped_column(String(32))
    skip_faces: Mapped[bool | None] = mapped_column(Boolean, default=False)
    unique_hash: Mapped[str | None] = mapped_column(String(32), index=True)


class MediaAsset(Timestamps, Base):
    __tablename__ = "media_assets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    media_id: Mapped[int] = mapped_column(ForeignKey("media.id"), primary_key=True, autoincrement=False)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True, autoincrement=False)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    asset_type: Mapped[str] = mapped_column(ForeignKey("asset_types.type"))
    uri: Mapped[str | None] = mapped_column(Text)
    metadata_uri: Mapped[str | None] = mapped_column(Text)
    bytes: Mapped[int | None] = mapped_column(BigInteger)
    location: Mapped[str | None] = mapped_column(String(28))
    view_count: Mapped[int | None] = mapped_column(Integer, default=0)


class MediaWorkflowStage(Timestamps, Base):
    __tablename__ = "media_workflow_stages"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    media_id: Mapped[int] = mapped_column(ForeignKey("media.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    workflow_stage: Mapped[str] = mapped_column(ForeignKey("workflow_stages.stage"))


class MediaAlbum(Timestamps, Base):
    __tablename__ = "media_albums"
    album_id: Mapped[int] = mapped_column(ForeignKey("media.id"), primary_key=True)
    media_id: Mapped[int] = mapped_column(ForeignKey("media.id"), primary_key=True)


class Community(Base):
    __tablename__ = "communities"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    uuid: Mapped[str | None] = mapped_column(String(36), unique=True)
    media_id: Mapped[int | None] = mapped_column(ForeignKey("media.id"))
    members_id: Mapped[int | None] = mapped_column(Integer)


class Contact(Base):
    __tablename__ = "contacts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    contact_email: Mapped[str | None] = mapped_column(String(256))


class ContactGroup(Base):
    __tablename__ = "contact_groups"
    group_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"), primary_key=True)


#: Lookup rows the legacy foreign keys need; seeded into the embedded database.
LOOKUPS = (
    (MediaType, "type", ("original",)),
    (AssetType, "type", ("original", "main", "thumbnail", "poster", "poster_animated", "metadata")),
    (WorkflowStage, "stage", ("PopeyeComplete",)),
)
