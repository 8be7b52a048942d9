-- One JSON object describing a database's content: per table of schema public, its row count and
-- the md5 of all its rows in a stable order; plus the views, functions and sequence values, so a
-- restore that lost or half-applied anything shows up as a difference.
SELECT json_build_object(
    'tables', (SELECT coalesce(json_object_agg(c.relname, (
        xpath('/row/h/text()', query_to_xml(format(
            'SELECT count(*) || '':'' || md5(coalesce(string_agg(x::text, E''\n'' ORDER BY x::text), '''')) AS h '
            'FROM %I.%I x', n.nspname, c.relname), false, true, '')))[1]::text ORDER BY c.relname), '{}')
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r' AND n.nspname = 'public'),
    'views', (SELECT coalesce(json_agg(viewname ORDER BY viewname), '[]') FROM pg_views WHERE schemaname = 'public'),
    'functions', (SELECT coalesce(json_agg(proname ORDER BY proname), '[]') FROM pg_proc
        WHERE pronamespace = 'public'::regnamespace),
    'sequences', (SELECT coalesce(json_object_agg(sequencename, last_value ORDER BY sequencename), '{}')
        FROM pg_sequences WHERE schemaname = 'public')
);
