-- The legacy production tables Popeye maps onto (SPEC section 4), as MySQL
-- DDL.  Popeye never creates these on MySQL; the tests create them in a
-- scratch MariaDB database to prove the mappings fit.  Columns Popeye does
-- not use (password, provider, ...) are here too, with defaults, because the
-- real tables have more than Popeye touches.

CREATE TABLE media_types (type VARCHAR(16) NOT NULL PRIMARY KEY) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE asset_types (type VARCHAR(16) NOT NULL PRIMARY KEY) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE workflow_stages (stage VARCHAR(32) NOT NULL PRIMARY KEY) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

INSERT INTO media_types VALUES ('original');
INSERT INTO asset_types VALUES ('original'), ('main'), ('thumbnail'), ('poster'), ('poster_animated'), ('metadata');
INSERT INTO workflow_stages VALUES ('PopeyeComplete');

CREATE TABLE users (
  id INT NOT NULL AUTO_INCREMENT,
  uuid VARCHAR(36) NOT NULL,
  email VARCHAR(256) DEFAULT NULL,
  displayname VARCHAR(128) DEFAULT NULL,
  password VARCHAR(128) DEFAULT NULL,
  provider VARCHAR(16) DEFAULT NULL,
  accepted_terms TINYINT(1) DEFAULT NULL,
  created_date DATETIME DEFAULT NULL,
  updated_date DATETIME DEFAULT NULL,
  PRIMARY KEY (id),
  UNIQUE KEY uuid_UNIQUE (uuid)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE media (
  id INT NOT NULL AUTO_INCREMENT,
  user_id INT NOT NULL,
  uuid VARCHAR(36) NOT NULL,
  media_type VARCHAR(16) NOT NULL,
  is_album TINYINT(1) NOT NULL DEFAULT 0,
  title VARCHAR(200) DEFAULT NULL,
  filename VARCHAR(1024) DEFAULT NULL,
  description TEXT DEFAULT NULL,
  recording_date DATETIME DEFAULT NULL,
  view_count INT DEFAULT 0,
  status VARCHAR(32) DEFAULT NULL,
  skip_faces TINYINT(1) DEFAULT 0,
  unique_hash VARCHAR(32) DEFAULT NULL,
  lat DECIMAL(11,8) DEFAULT NULL,
  lng DECIMAL(11,8) DEFAULT NULL,
  created_date DATETIME DEFAULT NULL,
  updated_date DATETIME DEFAULT NULL,
  PRIMARY KEY (id, user_id),
  UNIQUE KEY uuid_UNIQUE (uuid),
  KEY fk_media_users (user_id),
  KEY media_unique_hash (unique_hash),
  CONSTRAINT fk_media_users FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE,
  CONSTRAINT fk_media_media_types FOREIGN KEY (media_type) REFERENCES media_types (type)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE media_assets (
  id INT NOT NULL AUTO_INCREMENT,
  media_id INT NOT NULL,
  user_id INT NOT NULL,
  uuid VARCHAR(36) NOT NULL,
  asset_type VARCHAR(16) NOT NULL,
  mimetype VARCHAR(40) DEFAULT NULL,
  uri TEXT DEFAULT NULL,
  metadata_uri TEXT DEFAULT NULL,
  bytes BIGINT DEFAULT NULL,
  width INT DEFAULT NULL,
  height INT DEFAULT NULL,
  duration DECIMAL(14,6) DEFAULT NULL,
  location VARCHAR(28) DEFAULT NULL,
  view_count INT DEFAULT 0,
  created_date DATETIME DEFAULT NULL,
  updated_date DATETIME DEFAULT NULL,
  PRIMARY KEY (id, media_id, user_id),
  UNIQUE KEY uuid_UNIQUE (uuid),
  CONSTRAINT fk_media_assets_media FOREIGN KEY (media_id) REFERENCES media (id) ON DELETE CASCADE,
  CONSTRAINT fk_media_assets_users FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE,
  CONSTRAINT fk_media_assets_asset_types FOREIGN KEY (asset_type) REFERENCES asset_types (type)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE media_workflow_stages (
  id INT NOT NULL AUTO_INCREMENT,
  media_id INT NOT NULL,
  user_id INT NOT NULL,
  workflow_stage VARCHAR(32) NOT NULL,
  created_date DATETIME DEFAULT NULL,
  updated_date DATETIME DEFAULT NULL,
  PRIMARY KEY (id),
  CONSTRAINT fk_mws_media FOREIGN KEY (media_id) REFERENCES media (id) ON DELETE CASCADE,
  CONSTRAINT fk_mws_users FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE,
  CONSTRAINT fk_mws_stages FOREIGN KEY (workflow_stage) REFERENCES workflow_stages (stage)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE media_albums (
  album_id INT NOT NULL,
  media_id INT NOT NULL,
  created_date DATETIME DEFAULT NULL,
  updated_date DATETIME DEFAULT NULL,
  PRIMARY KEY (album_id, media_id),
  CONSTRAINT fk_media_albums_album FOREIGN KEY (album_id) REFERENCES media (id) ON DELETE CASCADE,
  CONSTRAINT fk_media_albums_media FOREIGN KEY (media_id) REFERENCES media (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE contacts (
  id INT NOT NULL AUTO_INCREMENT,
  user_id INT DEFAULT NULL,
  contact_name VARCHAR(128) DEFAULT NULL,
  contact_email VARCHAR(256) DEFAULT NULL,
  PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE contact_groups (
  group_id INT NOT NULL,
  contact_id INT NOT NULL,
  PRIMARY KEY (group_id, contact_id),
  CONSTRAINT fk_contact_groups_contacts FOREIGN KEY (contact_id) REFERENCES contacts (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE communities (
  id INT NOT NULL AUTO_INCREMENT,
  user_id INT DEFAULT NULL,
  uuid VARCHAR(36) DEFAULT NULL,
  name VARCHAR(128) DEFAULT NULL,
  media_id INT DEFAULT NULL,
  members_id INT DEFAULT NULL,
  PRIMARY KEY (id),
  UNIQUE KEY uuid_UNIQUE (uuid),
  CONSTRAINT fk_communities_users FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE,
  CONSTRAINT fk_communities_media FOREIGN KEY (media_id) REFERENCES media (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
