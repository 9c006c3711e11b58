-- Score against sparsity for one experiment ($experiment), by each run's primary metric: per seed group,
-- evaluation set, subcase ('all' = the whole set) and pruning step, the mean over seeds with the min/max
-- across seeds. keep_line is where the keep rule draws the line on the ID score (ratio: threshold x the
-- full model's; margin: the full model's - threshold), averaged over the group's runs.
-- $experiment NULL (as the report runs it): every experiment at once, each apart, its name in the last column.
WITH per_run AS (
    SELECT
        s.experiment,
        g.group_label,
        s.eval_set,
        s.kind,
        s.subcase,
        s.step,
        s.run_id,
        any_value(s.metric) AS metric,
        avg(s.x)            AS x,
        avg(s.sparsity)     AS sparsity,
        avg(s.value)        AS value
    FROM primary_steps AS s
    JOIN run_groups AS g USING (run_id)
    WHERE ($experiment IS NULL OR s.experiment = $experiment) AND s.variant = 'pruned'
    GROUP BY ALL
), keep_lines AS (
    SELECT r.experiment, g.group_label,
           avg(keep_line(r.keep_rule, r.keep_threshold, f.value)) AS keep_line
    FROM runs AS r
    JOIN run_groups AS g USING (run_id)
    JOIN primary_steps AS f USING (run_id)
    WHERE ($experiment IS NULL OR r.experiment = $experiment) AND f.step = 0 AND f.variant = 'pruned' AND f.kind = 'id'
      AND f.subcase = 'all'
    GROUP BY r.experiment, g.group_label
)
SELECT
    p.group_label,
    p.eval_set,
    p.kind,
    p.subcase,
    p.step,
    any_value(p.metric) AS metric,
    avg(p.x)            AS x,
    avg(p.sparsity)     AS sparsity,
    avg(p.value)        AS mean_value,
    min(p.value)        AS min_value,
    max(p.value)        AS max_value,
    count(*)            AS n_seeds,
    any_value(k.keep_line) AS keep_line,
    p.experiment
FROM per_run AS p
LEFT JOIN keep_lines AS k USING (experiment, group_label)
GROUP BY p.experiment, p.group_label, p.eval_set, p.kind, p.subcase, p.step
ORDER BY p.experiment, p.group_label, p.kind, p.eval_set, p.subcase <> 'all', p.subcase, p.step
