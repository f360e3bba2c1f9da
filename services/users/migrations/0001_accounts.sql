-- Accounts, sign-in sessions and the keys that sign access tokens.

CREATE TABLE users (
  id            uuid PRIMARY KEY,
  email         text NOT NULL,
  display_name  text NOT NULL,
  password_hash text NOT NULL,
  role          text NOT NULL DEFAULT 'USER' CHECK (role IN ('USER', 'ADMIN')),
  disabled      boolean NOT NULL DEFAULT false,
  create_time   timestamptz NOT NULL DEFAULT now(),
  update_time   timestamptz NOT NULL DEFAULT now()
);
-- Sign-in and registration find a user by e-mail (stored trimmed and
-- lower-cased); uniqueness makes a racing duplicate registration fail.
CREATE UNIQUE INDEX users_email_key ON users (email);

-- Ed25519 keys that sign access tokens. The newest is used for signing;
-- the JWKS publishes the newest two so tokens outlive a rotation.
CREATE TABLE signing_keys (
  kid         text PRIMARY KEY,
  public_key  text NOT NULL,  -- base64url, 32 bytes
  secret_key  text NOT NULL,  -- base64url, 64 bytes (libsodium seed||public form)
  create_time timestamptz NOT NULL DEFAULT now()
);

-- One row per sign-in; refresh tokens belong to a session.
CREATE TABLE sessions (
  id             uuid PRIMARY KEY,
  user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  create_time    timestamptz NOT NULL DEFAULT now(),
  last_use_time  timestamptz NOT NULL DEFAULT now(),
  user_agent     text NOT NULL DEFAULT '',
  client_address text NOT NULL DEFAULT '',
  revoke_time    timestamptz
);
-- Listing and revoking a user's sessions.
CREATE INDEX sessions_user_id_idx ON sessions (user_id);

-- Refresh tokens are stored only as their SHA-256.
CREATE TABLE refresh_tokens (
  token_hash  text PRIMARY KEY,
  session_id  uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
  create_time timestamptz NOT NULL DEFAULT now(),
  expire_time timestamptz NOT NULL,
  use_time    timestamptz
);
-- Revoking every token of a session (and the ON DELETE CASCADE from sessions).
CREATE INDEX refresh_tokens_session_id_idx ON refresh_tokens (session_id);
