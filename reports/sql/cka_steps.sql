-- CKA between the full model's layers (layer_base) and the pruned model's (layer_pruned) at every logged
-- step of one experiment ($experiment), for the heatmaps' small multiples: the mean over seeds per seed
-- group, variant (controls and re-fine-tuned models carry their kept step's number), CKA setting and
-- step. kept is true where the step is some run's kept step. Degenerate cells (a constant
-- representation) are left out of the mean and counted instead.
-- $experiment NULL (as the report runs it): every experiment at once, each apart, its name in the last column.
WITH kept_steps AS (
    SELECT DISTINCT run_id, variant, step
    FROM steps
    WHERE ($experiment IS NULL OR experiment = $experiment) AND selected
)
SELECT
    g.group_label,
    c.variant,
    c.representation,
    c.pooling,
    c.estimator,
    c.step,
    c.layer_base,
    c.layer_pruned,
    bool_or(k.run_id IS NOT NULL)                                     AS kept,
    avg(c.value) FILTER (WHERE NOT coalesce(c.degenerate, false))   AS mean_cka,
    min(c.value) FILTER (WHERE NOT coalesce(c.degenerate, false))   AS min_cka,
    max(c.value) FILTER (WHERE NOT coalesce(c.degenerate, false))   AS max_cka,
    count(*) FILTER (WHERE NOT coalesce(c.degenerate, false))       AS n_seeds,
    count(*) FILTER (WHERE coalesce(c.degenerate, false))           AS n_degenerate,
    avg(c.sparsity)                                                  AS sparsity,
    c.experiment
FROM cka AS c
JOIN run_groups AS g USING (run_id)
LEFT JOIN kept_steps AS k USING (run_id, variant, step)
WHERE $experiment IS NULL OR c.experiment = $experiment
GROUP BY c.experiment, g.group_label, c.variant, c.representation, c.pooling, c.estimator, c.step, c.layer_base,
         c.layer_pruned
ORDER BY c.experiment, g.group_label, c.representation, c.pooling, c.estimator, c.variant <> 'pruned', c.variant, c.step,
         c.layer_base, c.layer_pruned
