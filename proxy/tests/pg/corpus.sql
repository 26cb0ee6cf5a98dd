CREATE TABLE contacts (id bigserial PRIMARY KEY, name text NOT NULL, email text UNIQUE, phone varchar(32), score numeric(10,2), active boolean DEFAULT true, tags text[], meta jsonb, created_at timestamptz DEFAULT '2024-01-01 00:00:00+00', birthday date)
CREATE TABLE deals (id serial PRIMARY KEY, contact_id bigint REFERENCES contacts(id) ON DELETE CASCADE, amount numeric(12,2) CHECK (amount >= 0), stage text NOT NULL DEFAULT 'new', closed_at timestamp)
CREATE INDEX deals_stage_idx ON deals (stage)
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')
CREATE TABLE notes (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, contact_id bigint, body text, m mood, blob bytea, at interval, ip inet, u uuid, pt point, r int4range)
INSERT INTO contacts (name, email, phone, score, tags, meta, birthday) VALUES ('Alice', 'a@example.com', '+1 555 0100', 10.5, ARRAY['vip','eu'], '{"plan":"pro","seats":5}', '1990-05-17')
INSERT INTO contacts (name, email, score, tags, meta) VALUES ('Bob', 'b@example.com', NULL, '{}', 'null'), ('Zoë', 'z@example.com', 99.99, ARRAY['ünïcødé'], '{"nested":{"a":[1,2,3]}}') RETURNING id, name
INSERT INTO contacts (name) VALUES ('李雷'), ('Ωmega'), ('emoji 🎉'), (E'quote''s'), ('back\slash')
INSERT INTO contacts (name, email) VALUES ('Dup', 'a@example.com')
INSERT INTO contacts (email) VALUES ('nobody@example.com')
INSERT INTO deals (contact_id, amount, stage) SELECT id, id * 100.25, CASE WHEN id % 2 = 0 THEN 'won' ELSE 'open' END FROM contacts
INSERT INTO deals (contact_id, amount) VALUES (1, -5)
INSERT INTO deals (contact_id, amount) VALUES (424242, 5)
INSERT INTO notes (contact_id, body, m, blob, at, ip, u, pt, r) VALUES (1, 'first', 'happy', '\x00ff10', '1 day 02:03:04', '10.0.0.1/8', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '(1.5,2)', '[1,10)')
INSERT INTO notes (contact_id, body, m) VALUES (2, NULL, NULL), (3, '', 'sad')
INSERT INTO notes (id, body) VALUES (5, 'x')
INSERT INTO notes (body, m) VALUES ('bad', 'angry')
SELECT id, name, email, phone, score, active, tags, meta, created_at, birthday FROM contacts ORDER BY id
SELECT * FROM deals ORDER BY id
SELECT * FROM notes ORDER BY id
SELECT count(*), sum(amount), avg(amount)::numeric(12,4), min(stage), max(closed_at) FROM deals
SELECT stage, count(*) FROM deals GROUP BY stage ORDER BY stage
SELECT c.name, d.amount FROM contacts c JOIN deals d ON d.contact_id = c.id WHERE d.amount > 300 ORDER BY d.amount DESC
SELECT c.name, count(d.id) FROM contacts c LEFT JOIN deals d ON d.contact_id = c.id GROUP BY c.name ORDER BY 2 DESC, 1
SELECT name FROM contacts WHERE name ILIKE '%o%' ORDER BY name
SELECT name, length(name), octet_length(name), upper(name), lower(name) FROM contacts ORDER BY id
SELECT meta->>'plan' AS plan, meta->'nested'->'a'->1 AS second, jsonb_typeof(meta) FROM contacts ORDER BY id
SELECT tags, array_length(tags, 1), 'vip' = ANY(tags) FROM contacts ORDER BY id
SELECT unnest(ARRAY[1,2,NULL,4]) AS v
SELECT NULL AS a, NULL::int AS b, NULL::text IS NULL AS c, coalesce(NULL, 'x') AS d, nullif(1, 1) AS e
SELECT 1::int2, 2::int4, 3::int8, 4.5::float4, 6.25::float8, 7.125::numeric, 'x'::char(3), 'y'::varchar(2)
SELECT true, false, NULL::bool, 't'::bool AND 'f'::bool
SELECT '2024-02-29'::date, '12:34:56.789'::time, '2024-01-01 10:00:00+02'::timestamptz, '2024-01-01 10:00'::timestamp, '3 months 2 days'::interval
SELECT '\xdeadbeef'::bytea, decode('aGVsbG8=', 'base64'), encode('hello'::bytea, 'hex')
SELECT 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid, '192.168.0.1'::inet, '08:00:2b:01:02:03'::macaddr
SELECT '{"a":1}'::json, '[1,"two",null]'::jsonb, jsonb_build_object('k', 'v', 'n', NULL)
SELECT ARRAY[[1,2],[3,4]], ARRAY['a', NULL, 'c'], '{}'::int[]
SELECT int4range(1, 5), '[2024-01-01,2024-02-01)'::daterange, numrange(1.5, 2.5, '[]')
SELECT point(1, 2), box(point(0,0), point(1,1)), circle(point(0,0), 2)
SELECT 1e308::float8 * 10
SELECT 'NaN'::float8, 'Infinity'::float8, '-Infinity'::numeric
SELECT 9223372036854775807::int8 + 1
SELECT 2147483647::int4 + 1
SELECT 'abc'::int
SELECT '2024-13-01'::date
SELECT 1/0
SELECT 5 % 0
SELECT sqrt(-1)
SELECT repeat('ab', 3), reverse('héllo'), translate('abc', 'ab', 'xy'), split_part('a,b,c', ',', 2)
SELECT format('%s-%I-%L', 'x', 'My Table', 'it''s')
SELECT string_agg(name, ', ' ORDER BY name) FROM contacts WHERE email IS NOT NULL
SELECT regexp_replace('hello world', 'o', '0', 'g'), regexp_matches('a1b22c333', '\d+', 'g')
SELECT to_char(1234567.891, 'FM9,999,999.00'), to_char('2024-03-05'::date, 'YYYY/MM/DD Dy')
SELECT md5('vigil'), sha256('vigil'::bytea)
SELECT generate_series(1, 5) AS n, generate_series(1, 5) * 2 AS m
SELECT g, g % 3 AS r FROM generate_series(1, 10) g WHERE g % 3 <> 0 ORDER BY g DESC LIMIT 4 OFFSET 1
SELECT * FROM (VALUES (1, 'one'), (2, 'two'), (3, NULL)) AS t(n, word)
SELECT row_number() OVER (ORDER BY amount), amount, sum(amount) OVER (ORDER BY amount ROWS UNBOUNDED PRECEDING) FROM deals ORDER BY amount
SELECT stage, rank() OVER (PARTITION BY stage ORDER BY amount DESC), amount FROM deals ORDER BY stage, amount DESC
WITH big AS (SELECT * FROM deals WHERE amount > 200) SELECT count(*) FROM big
WITH RECURSIVE fib(a, b, n) AS (SELECT 0::numeric, 1::numeric, 1 UNION ALL SELECT b, a + b, n + 1 FROM fib WHERE n < 50) SELECT max(b) FROM fib
SELECT EXISTS (SELECT 1 FROM contacts WHERE name = 'Alice'), (SELECT count(*) FROM deals) AS deals
SELECT name FROM contacts WHERE id IN (SELECT contact_id FROM deals WHERE stage = 'won') ORDER BY 1
SELECT name FROM contacts UNION SELECT stage FROM deals ORDER BY 1
SELECT name FROM contacts INTERSECT SELECT name FROM contacts WHERE id < 3 ORDER BY 1
SELECT name FROM contacts EXCEPT SELECT name FROM contacts WHERE id < 3 ORDER BY 1
SELECT CASE WHEN score IS NULL THEN 'none' WHEN score > 50 THEN 'high' ELSE 'low' END, count(*) FROM contacts GROUP BY 1 ORDER BY 1
SELECT DISTINCT ON (stage) stage, amount FROM deals ORDER BY stage, amount DESC
SELECT * FROM contacts WHERE false
SELECT
;
SELECT 1; SELECT 2; SELECT 3
SELECT 1 AS a; SELECT 'two' AS b, NULL AS c; VALUES (3)
SELECT 1; SELECT * FROM missing_table; SELECT 3
BEGIN; INSERT INTO deals (contact_id, amount) VALUES (1, 1); SELECT count(*) FROM deals; ROLLBACK
BEGIN; UPDATE deals SET stage = 'lost' WHERE amount < 200; COMMIT
BEGIN; SELECT 1/0; COMMIT
BEGIN
SELECT count(*) FROM deals
SELECT * FROM missing_in_tx
SELECT 1
ROLLBACK
BEGIN ISOLATION LEVEL SERIALIZABLE; SELECT count(*) FROM contacts; COMMIT
SAVEPOINT outside_tx
BEGIN; SAVEPOINT s1; INSERT INTO contacts (name) VALUES ('sp'); ROLLBACK TO s1; RELEASE s1; COMMIT
SELECT count(*) FROM contacts WHERE name = 'sp'
UPDATE contacts SET score = score * 2 WHERE score IS NOT NULL
UPDATE contacts SET score = 1 WHERE false
UPDATE contacts SET phone = '+44 20 7946 0000' WHERE name = 'Bob' RETURNING name, phone
DELETE FROM deals WHERE stage = 'lost' RETURNING id
DELETE FROM contacts WHERE name = 'nobody'
INSERT INTO contacts (name, email) VALUES ('Carol', 'c@example.com') ON CONFLICT (email) DO NOTHING
INSERT INTO contacts (name, email) VALUES ('Carol2', 'c@example.com') ON CONFLICT (email) DO UPDATE SET name = EXCLUDED.name RETURNING name
MERGE INTO deals d USING (SELECT 1 AS cid) s ON d.contact_id = s.cid WHEN MATCHED THEN UPDATE SET stage = 'merged'
SELECT stage FROM deals WHERE contact_id = 1 ORDER BY id
CREATE VIEW won_deals AS SELECT * FROM deals WHERE stage = 'won'
SELECT count(*) FROM won_deals
CREATE MATERIALIZED VIEW deal_totals AS SELECT stage, sum(amount) AS total FROM deals GROUP BY stage
REFRESH MATERIALIZED VIEW deal_totals
SELECT * FROM deal_totals ORDER BY stage
CREATE FUNCTION add_one(int) RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT $1 + 1 $$
SELECT add_one(41), add_one(NULL)
CREATE FUNCTION noisy() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RAISE NOTICE 'noisy % %', 1, 'ü'; RAISE WARNING 'careful'; RETURN 7; END $$
SELECT noisy()
DO $$ BEGIN RAISE EXCEPTION 'custom failure' USING ERRCODE = 'P0001', HINT = 'a hint'; END $$
DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = '23505', MESSAGE = 'fake unique'; END $$
CREATE TABLE contacts (id int)
CREATE TABLE IF NOT EXISTS contacts (id int)
DROP TABLE IF EXISTS does_not_exist
DROP TABLE does_not_exist
ALTER TABLE contacts ADD COLUMN nickname text
ALTER TABLE contacts ADD COLUMN nickname text
ALTER TABLE contacts RENAME COLUMN nickname TO alias
SELECT alias FROM contacts LIMIT 1
COMMENT ON TABLE contacts IS 'CRM contacts'
SELECT obj_description('contacts'::regclass)
SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE table_name = 'deals' ORDER BY ordinal_position
SELECT indexname FROM pg_indexes WHERE tablename = 'deals' ORDER BY 1
SELECT relname, relkind FROM pg_class WHERE relname IN ('contacts', 'won_deals', 'deal_totals') ORDER BY 1
TRUNCATE notes
SELECT count(*) FROM notes
SELECT pg_typeof(1), pg_typeof(1.0), pg_typeof('x'::text), pg_typeof(now())
SELECT current_user, session_user, current_database() = current_database()
SHOW server_encoding
SHOW client_encoding
SHOW standard_conforming_strings
SELECT 'single ''quoted''', $$dollar $ quoted$$, $tag$with ; semicolon$tag$
SELECT 'semi;colon' AS a; SELECT 'second' AS b
SELECT /* comment ; */ 1 -- trailing ; comment
SELEC 1
SELECT * FROM
SELECT 1 +
SELECT "Quoted Column" FROM (SELECT 1 AS "Quoted Column") t
SELECT 1 AS "ünïcødé column", 2 AS "emoji 🎉"
SELECT repeat('x', 100000) AS big
SELECT array_agg(g) FROM generate_series(1, 1000) g
SELECT lpad('', 10, '·'), E'line1\nline2\ttab', E'\\backslash'
SELECT chr(0)
SELECT E'\xff'
SELECT 'abc' COLLATE "C" < 'abd'
SELECT now() > '2000-01-01'::timestamptz
LOCK TABLE deals IN SHARE MODE
VACUUM ANALYZE deals
EXPLAIN (COSTS OFF) SELECT * FROM deals WHERE stage = 'won'
PREPARE sql_prep(int) AS SELECT $1 * 10
EXECUTE sql_prep(5)
DEALLOCATE sql_prep
EXECUTE sql_prep(6)
NOTIFY some_channel, 'payload'
SELECT pg_notify('x', 'y')
COPY (SELECT 1) TO STDOUT
