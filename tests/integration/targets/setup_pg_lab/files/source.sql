-- A RAT-shaped source database for the pg_dump/pg_restore targets: enum, jsonb, uuid, bytea,
-- foreign keys, a view, a function, a sequence, names with spaces and non-ASCII characters.
-- Rows: :rows runs (psql variable).
CREATE TYPE run_status AS ENUM ('pending', 'running', 'success', 'failed');
CREATE TABLE namespaces (id serial PRIMARY KEY, name text UNIQUE NOT NULL, created_at timestamptz NOT NULL);
CREATE TABLE pipelines (
    id uuid PRIMARY KEY,
    namespace_id int NOT NULL REFERENCES namespaces (id),
    name text NOT NULL,
    config jsonb NOT NULL,
    code bytea
);
CREATE TABLE runs (
    id bigserial PRIMARY KEY,
    pipeline_id uuid NOT NULL REFERENCES pipelines (id),
    status run_status NOT NULL,
    started_at timestamptz NOT NULL,
    duration interval,
    log text
);
CREATE TABLE "Quality tests ü" (id int PRIMARY KEY, "check name" text, passed boolean);
CREATE SEQUENCE ticket_seq START 100;
CREATE VIEW failed_runs AS SELECT r.id, p.name FROM runs r JOIN pipelines p ON p.id = r.pipeline_id
    WHERE r.status = 'failed';
CREATE FUNCTION run_count(p uuid) RETURNS bigint LANGUAGE sql STABLE AS
    $$ SELECT count(*) FROM runs WHERE pipeline_id = p $$;

INSERT INTO namespaces (name, created_at)
    SELECT 'ns' || g, timestamptz '2026-01-01 00:00:00+00' + g * interval '1 day' FROM generate_series(1, 5) g;
INSERT INTO pipelines
    SELECT md5('p' || g)::uuid, 1 + g % 5, 'pipeline ' || g, jsonb_build_object('layer', 'silver', 'n', g),
           decode(md5(g::text), 'hex')
    FROM generate_series(1, 50) g;
INSERT INTO runs (pipeline_id, status, started_at, duration, log)
    SELECT md5('p' || (1 + g % 50))::uuid, (ARRAY['pending', 'running', 'success', 'failed'])[1 + g % 4]::run_status,
           timestamptz '2026-02-01 00:00:00+00' + g * interval '1 minute', g * interval '1 second',
           repeat(md5(g::text), 2)
    FROM generate_series(1, :rows) g;
INSERT INTO "Quality tests ü" VALUES (1, 'not null ✓', true), (2, 'unique', false), (3, NULL, NULL);
SELECT setval('ticket_seq', 123);
