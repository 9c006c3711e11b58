-- One row per run, naming the group it belongs to. Runs that differ only in their seeds share a
-- group fingerprint (runs.group_id); the report's means and min/max bands are taken over a group.
-- group_label is the method, plus the grid values (axes) that tell the groups of one method apart;
-- run_label adds the run's own seeds (runs.label), so sibling runs read `ablation=mean, seed=1`, never
-- a hash.
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
        r.prune_seed,
        r.method,
        r.label,
        coalesce(r.group_id, r.fingerprint) AS group_key,  -- files before contract v2 carry no group
        -- without logged axes, the run's label less its seeds names the grid point
        coalesce(g.grid_label, nullif(regexp_replace(regexp_replace(coalesce(r.label, ''),
                 '(^|, )(prune_)?seed=[^,]*', '', 'g'), '^, ', ''), '')) AS grid_label
    FROM runs AS r
    LEFT JOIN grid AS g USING (run_id)
)
SELECT
    *,
    method || CASE
        WHEN count(DISTINCT group_key) OVER (PARTITION BY experiment, method) > 1
        THEN ' [' || coalesce(grid_label, 'group ' || left(group_key, 6)) || ']'
        ELSE ''
    END AS group_label,
    method || ' · ' || coalesce(nullif(label, ''), 'seed=' || seed) AS run_label
FROM keyed
