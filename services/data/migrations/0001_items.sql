-- Per-owner JSON items in named collections.

CREATE TABLE items (
  owner_id    uuid NOT NULL,
  collection  text NOT NULL,
  id          uuid NOT NULL,
  data        jsonb NOT NULL,
  version     bigint NOT NULL DEFAULT 1,
  create_time timestamptz NOT NULL DEFAULT now(),
  update_time timestamptz NOT NULL DEFAULT now(),
  -- Serves get-by-id (all three columns) and the list query
  -- `WHERE owner_id = $1 AND collection = $2 AND id < $cursor ORDER BY id DESC`
  -- (UUIDv7 ids sort by creation time).
  PRIMARY KEY (owner_id, collection, id)
);
-- Item ids are unique on their own too (a client may hold an id without its collection).
CREATE UNIQUE INDEX items_id_key ON items (id);
