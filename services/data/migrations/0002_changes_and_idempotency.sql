-- Change feed, idempotent creates and listing indexes.

-- One row per owner: the last change sequence number handed out. Every write
-- takes it with `INSERT ... ON CONFLICT DO UPDATE ... RETURNING last_seq` and
-- holds the row lock until it commits, so one owner's writes commit in seq
-- order and a reader that has seen seq n has seen every smaller one (items.cc
-- explains why this matters for the feed).
CREATE TABLE owner_seqs (
  owner_id   uuid PRIMARY KEY,
  last_seq   bigint NOT NULL,
  -- Highest seq of a tombstone removed by retention: a feed reader whose
  -- `since` is in (0, pruned_seq) may have missed a deletion (410).
  pruned_seq bigint NOT NULL DEFAULT 0
);

-- The latest change of every item: an upsert (the item is joined from
-- `items`) or a tombstone. A newer change of an item replaces its row, so the
-- feed holds one row per live item plus the tombstones inside retention.
CREATE TABLE changes (
  item_id     uuid PRIMARY KEY,  -- serves the per-item upsert ON CONFLICT (item_id)
  owner_id    uuid NOT NULL,
  collection  text NOT NULL,
  seq         bigint NOT NULL,
  deleted     boolean NOT NULL,
  version     bigint NOT NULL,
  create_time timestamptz NOT NULL,
  update_time timestamptz NOT NULL  -- of a tombstone: when the item was deleted
);
-- Serves the feed `WHERE owner_id = $1 AND collection = $2 AND seq > $3
-- ORDER BY seq LIMIT $4`, and PurgeOwner's `WHERE owner_id = $1`.
CREATE UNIQUE INDEX changes_feed ON changes (owner_id, collection, seq);
-- Serves retention: `DELETE ... WHERE deleted AND update_time < $cutoff`.
CREATE INDEX changes_tombstones ON changes (update_time) WHERE deleted;

-- Items stored before the feed existed enter it as upserts, numbered per
-- owner in id (creation) order, so a replay from 0 still yields everything.
INSERT INTO owner_seqs (owner_id, last_seq) SELECT owner_id, count(*) FROM items GROUP BY owner_id;
INSERT INTO changes (item_id, owner_id, collection, seq, deleted, version, create_time, update_time)
SELECT id, owner_id, collection, row_number() OVER (PARTITION BY owner_id ORDER BY id), false,
       version, create_time, update_time
FROM items;

-- First results of creates sent with an Idempotency-Key.
CREATE TABLE idempotency_keys (
  owner_id     uuid NOT NULL,
  key          text NOT NULL,
  request_hash bytea NOT NULL,  -- SHA-256 of the canonical (jsonb) request
  response     text NOT NULL,   -- the created Item, proto3 JSON
  expire_time  timestamptz NOT NULL,
  -- Serves the lookup `WHERE owner_id = $1 AND key = $2` and PurgeOwner.
  PRIMARY KEY (owner_id, key)
);
-- Serves expiry: `DELETE ... WHERE expire_time < now()`.
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expire_time);

-- Serves filters: equality compiles to `data @> $n::jsonb`, which a GIN
-- jsonb_path_ops index answers; the planner combines it with the owner and
-- collection from the primary key.
CREATE INDEX items_data ON items USING gin (data jsonb_path_ops);
-- Serve `orderBy=createTime|updateTime` pages: `WHERE owner_id = $1 AND
-- collection = $2 AND (create_time, id) > ($k, $id) ORDER BY create_time, id`.
CREATE INDEX items_by_create_time ON items (owner_id, collection, create_time, id);
CREATE INDEX items_by_update_time ON items (owner_id, collection, update_time, id);
