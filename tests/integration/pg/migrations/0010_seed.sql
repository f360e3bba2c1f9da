INSERT INTO widgets (name) VALUES ('first');
INSERT INTO widgets (name) VALUES ('second');
