\set ON_ERROR_STOP 0
CREATE TABLE contacts (id serial PRIMARY KEY, name text NOT NULL, email text, score numeric(5,2), created date);
INSERT INTO contacts (name, email, score, created) VALUES ('Zoë', 'z@example.com', 12.5, '2024-01-02'), ('李雷', NULL, NULL, '2023-12-31');
SELECT * FROM contacts ORDER BY id;
\d contacts
SELECT 1 AS a; SELECT 2 AS b;
SELECT * FROM missing_table;
BEGIN;
UPDATE contacts SET score = score + 1 WHERE id = 1;
SELECT 1/0;
SELECT 1;
ROLLBACK;
SELECT score FROM contacts WHERE id = 1;
COPY contacts (name) FROM STDIN;
alpha
beta
\.
SELECT count(*) FROM contacts;
\copy contacts (name, email) to stdout
\x on
SELECT id, name FROM contacts WHERE id = 1;
\x off
DO $$ BEGIN RAISE NOTICE 'hello %', 42; END $$;
SELECT NULL::text IS NULL AS isnull, E'a\nb' AS s, E'tab\there' AS t, 'ünïcødé ✓' AS u;
CREATE VIEW v AS SELECT name FROM contacts;
\dv
SELECT * FROM v ORDER BY 1;
INSERT INTO contacts (name) VALUES (NULL);
SELECT pg_typeof(1.5), pg_typeof(now()::date);
BEGIN; SELECT 1; COMMIT;
WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 5) SELECT sum(n) FROM t;
PREPARE p(int) AS SELECT $1 + 1;
EXECUTE p(41);
DEALLOCATE p;
SET search_path TO pg_catalog, public;
SHOW search_path;
\echo done
