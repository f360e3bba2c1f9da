-- The trace of the request that deleted the account, so that the purge the
-- outbox delivers later shows up in the same trace (W3C traceparent and the
-- request id; empty for rows written before this column existed).
ALTER TABLE purge_outbox
  ADD COLUMN traceparent text NOT NULL DEFAULT '',
  ADD COLUMN request_id  text NOT NULL DEFAULT '';
