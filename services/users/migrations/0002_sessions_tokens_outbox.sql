-- Refresh-token rotation with a grace window, sign-in throttling, personal
-- access tokens and the outbox that purges a deleted account's data.

-- A rotated token keeps the random nonce its successor was derived from:
-- successor = SHA-256(token || nonce), so within the grace window the same
-- successor can be handed out again without storing it.
ALTER TABLE refresh_tokens ADD COLUMN rotation_nonce text;

-- Failed sign-ins per account (normalised e-mail, known or not), so the
-- throttle holds across replicas.
CREATE TABLE login_failures (
  email        text PRIMARY KEY,
  failures     integer NOT NULL DEFAULT 0,
  last_failure timestamptz NOT NULL DEFAULT now(),
  locked_until timestamptz
);

-- Personal access tokens, stored only as their SHA-256.
CREATE TABLE personal_tokens (
  id          uuid PRIMARY KEY,
  user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  name        text NOT NULL,
  token_hash  text NOT NULL UNIQUE,
  scopes      text NOT NULL,  -- space-separated
  create_time timestamptz NOT NULL DEFAULT now(),
  expire_time timestamptz,
  revoke_time timestamptz
);
CREATE INDEX personal_tokens_user_id_idx ON personal_tokens (user_id);

-- Owners whose data must be purged from the data service; a row is written
-- in the transaction that deletes the account and removed once the purge
-- succeeded.
CREATE TABLE purge_outbox (
  owner_id          uuid PRIMARY KEY,
  create_time       timestamptz NOT NULL DEFAULT now(),
  attempts          integer NOT NULL DEFAULT 0,
  next_attempt_time timestamptz NOT NULL DEFAULT now(),
  last_error        text NOT NULL DEFAULT ''
);
