-- One row per run, naming the group it belongs to. Runs that differ only in their seeds share a
-- group fingerprint (runs.group_id); the report's means and min/max bands are taken over a group.
-- group_label is the method, plus the grid values (axes) that tell the groups of one method apart.
WITH grid AS (
    SELECT run_id, string_agg(axis || '=' || value, ', ' ORDER BY axis) AS grid_label
    FROM axes
    WHERE axis NOT IN ('seed', 'prune_seed')
    GROUP BY run_id
), keyed AS (
    SELECT
        r.experiment,
        r.run_id,
        r.fingerprint,
        r.seed,
        r.method,
        r.label,
        coalesce(r.group_id, r.fingerprint) AS group_key,  -- files before contract v2 carry no group
        g.grid_label
    FROM runs AS r
    LEFT JOIN grid AS g USING (run_id)
)
SELECT
    *,
    method || CASE
        WHEN count(DISTINCT group_key) OVER (PARTITION BY experiment, method) > 1
        THEN ' [' || coalesce(grid_label, left(group_key, 6)) || ']'
        ELSE ''
    END AS group_label
FROM keyed
