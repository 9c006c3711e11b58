-- The experiments that have finished runs, with what the latest run says about them.
SELECT
    experiment,
    arg_max(description, started_at)           AS description,
    string_agg(DISTINCT model, ', ' ORDER BY model)   AS models,
    string_agg(DISTINCT task, ', ' ORDER BY task)     AS tasks,
    string_agg(DISTINCT method, ', ' ORDER BY method) AS methods,
    count(*)                                   AS n_runs,
    count(DISTINCT seed)                       AS n_seeds,
    max(started_at)::TIMESTAMP                 AS last_started_at  -- in UTC
FROM runs
GROUP BY experiment
ORDER BY experiment
