-- What the lab claims about database rat (lab/seed.sql), as one JSON document.
SELECT json_build_object(
    'owner', (SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()),
    'tables', (SELECT json_agg(relname ORDER BY relname) FROM pg_class
                WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'),
    'row_counts', json_build_object(
        'namespaces', (SELECT count(*) FROM namespaces),
        'pipelines', (SELECT count(*) FROM pipelines),
        'runs', (SELECT count(*) FROM runs),
        'runs_distinct_uuid', (SELECT count(DISTINCT run_uuid) FROM runs)),
    'run_status_labels', (SELECT json_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_enum e
                           JOIN pg_type t ON t.oid = e.enumtypid WHERE t.typname = 'run_status'),
    'column_types', (SELECT json_object_agg(table_name || '.' || column_name, udt_name)
                       FROM information_schema.columns
                      WHERE table_schema = 'public'
                        AND (table_name, column_name) IN (('pipelines', 'config'), ('runs', 'run_uuid'),
                                                          ('runs', 'log_tail'), ('runs', 'status'))),
    'jsonb_rows', (SELECT count(*) FROM pipelines WHERE config ? 'owner'),
    'bytea_rows', (SELECT count(*) FROM runs WHERE octet_length(log_tail) = 32),
    'large_object_sizes', (SELECT json_agg(length(lo_get(oid))) FROM pg_largeobject_metadata),
    'large_object_referenced', (SELECT count(*) FROM namespaces n
                                  JOIN pg_largeobject_metadata m ON m.oid = n.logo),
    'views', (SELECT json_agg(viewname ORDER BY viewname) FROM pg_views WHERE schemaname = 'public'),
    'plpgsql_functions', (SELECT json_agg(p.proname ORDER BY p.proname) FROM pg_proc p
                           JOIN pg_language l ON l.oid = p.prolang
                          WHERE l.lanname = 'plpgsql' AND p.pronamespace = 'public'::regnamespace),
    'foreign_keys', (SELECT count(*) FROM pg_constraint
                      WHERE contype = 'f' AND connamespace = 'public'::regnamespace),
    'sequences', (SELECT count(*) FROM pg_sequences WHERE schemaname = 'public'),
    'view_rows', (SELECT sum(runs) FROM pipeline_run_stats)
);
