-- The CKA diagonal (each layer against the same layer of the pruned model) against sparsity, for
-- one experiment ($experiment): per seed group, variant, CKA setting, layer and step, the mean
-- over seeds with the min/max across seeds. Degenerate values are left out.
-- $experiment NULL (as the report runs it): every experiment at once, each apart, its name in the last column.
WITH per_run AS (
    SELECT
        c.experiment,
        g.group_label,
        c.variant,
        c.representation,
        c.pooling,
        c.estimator,
        c.layer_base AS layer,
        c.step,
        c.run_id,
        avg(c.sparsity) AS sparsity,
        avg(c.value)    AS cka
    FROM cka AS c
    JOIN run_groups AS g USING (run_id)
    WHERE ($experiment IS NULL OR c.experiment = $experiment)
      AND c.layer_base = c.layer_pruned
      AND NOT coalesce(c.degenerate, false)
    GROUP BY ALL
)
SELECT
    group_label,
    variant,
    representation,
    pooling,
    estimator,
    layer,
    step,
    avg(sparsity) AS sparsity,
    avg(cka)      AS mean_cka,
    min(cka)      AS min_cka,
    max(cka)      AS max_cka,
    count(*)      AS n_seeds,
    experiment
FROM per_run
GROUP BY ALL
ORDER BY experiment, group_label, representation, pooling, estimator, variant, layer, step
