-- Embedded into pg_integration_test; the test compares these bytes with the file.
CREATE TABLE widgets (
  id   bigserial PRIMARY KEY,
  name text NOT NULL UNIQUE
);
