-- CRLF line endings, quotes and a raw-string terminator stay byte-exact: )" )sql"
ALTER TABLE widgets ADD COLUMN color text NOT NULL DEFAULT 'it''s "blue"';
