-- Owners whose data was purged (their account was deleted).
--
-- PurgeOwner deletes the owner's owner_seqs row with everything else, so a
-- write that was waiting on that row, or any later write made with the
-- deleted user's access token (still valid until it expires), would
-- otherwise insert a fresh owner_seqs row and new items that nobody can ever
-- purge again. Every write therefore looks its owner up here after taking the
-- owner's owner_seqs row, in the same transaction, and is refused if found.
CREATE TABLE purged_owners (
  owner_id   uuid PRIMARY KEY,  -- serves the per-write lookup `WHERE owner_id = $1`
  purge_time timestamptz NOT NULL DEFAULT now()  -- the first purge
);
