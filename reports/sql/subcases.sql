-- Per-subcase score of the full model (step 0) against the step each run kept (selected), for one
-- experiment ($experiment), by each run's primary metric: means over seeds per seed group and variant.
-- $experiment NULL (as the report runs it): every experiment at once, each apart, its name in the last column.
WITH acc AS (
    SELECT s.*, g.group_label
    FROM primary_steps AS s
    JOIN run_groups AS g USING (run_id)
    WHERE $experiment IS NULL OR s.experiment = $experiment
),
-- Step 0 is the unpruned model; averaging per run first means variants that all log it count once.
full_per_run AS (
    SELECT experiment, group_label, run_id, eval_set, kind, subcase, avg(value) AS value
    FROM acc
    WHERE step = 0
    GROUP BY ALL
),
full_model AS (
    SELECT experiment, group_label, eval_set, kind, subcase, avg(value) AS full_value
    FROM full_per_run
    GROUP BY ALL
),
selected_per_run AS (
    SELECT experiment, group_label, variant, run_id, eval_set, kind, subcase, any_value(metric) AS metric,
           avg(sparsity) AS sparsity, avg(value) AS value
    FROM acc
    WHERE selected
    GROUP BY ALL
),
selected AS (
    SELECT experiment, group_label, variant, eval_set, kind, subcase,
           any_value(metric) AS metric,
           avg(sparsity)     AS selected_sparsity,
           avg(value)        AS selected_value,
           count(*)          AS n_seeds
    FROM selected_per_run
    GROUP BY ALL
)
SELECT
    s.group_label,
    s.variant,
    s.eval_set,
    s.kind,
    s.subcase,
    s.metric,
    f.full_value,
    s.selected_value,
    s.selected_value - f.full_value AS delta,
    s.selected_sparsity,
    s.n_seeds,
    s.experiment
FROM selected AS s
LEFT JOIN full_model AS f USING (experiment, group_label, eval_set, kind, subcase)
ORDER BY s.experiment, s.group_label, s.variant, s.kind, s.eval_set, s.subcase <> 'all', s.subcase
