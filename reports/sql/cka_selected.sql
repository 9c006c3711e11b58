-- CKA between the full model's layers (layer_base) and the pruned model's (layer_pruned) at the
-- step each run selected, for one experiment ($experiment): mean over seeds per seed group,
-- variant and CKA setting. Degenerate cells (a constant representation) are left out of the mean
-- and counted instead.
WITH selected_steps AS (
    SELECT DISTINCT run_id, variant, step
    FROM steps
    WHERE experiment = $experiment AND selected
)
SELECT
    g.group_label,
    c.variant,
    c.representation,
    c.pooling,
    c.estimator,
    c.layer_base,
    c.layer_pruned,
    avg(c.value) FILTER (WHERE NOT coalesce(c.degenerate, false))   AS mean_cka,
    min(c.value) FILTER (WHERE NOT coalesce(c.degenerate, false))   AS min_cka,
    max(c.value) FILTER (WHERE NOT coalesce(c.degenerate, false))   AS max_cka,
    count(*) FILTER (WHERE NOT coalesce(c.degenerate, false))       AS n_seeds,
    count(*) FILTER (WHERE coalesce(c.degenerate, false))           AS n_degenerate,
    avg(c.sparsity)                                                  AS sparsity
FROM cka AS c
JOIN selected_steps USING (run_id, variant, step)
JOIN run_groups AS g USING (run_id)
GROUP BY ALL
ORDER BY g.group_label, c.variant, c.representation, c.pooling, c.estimator,
         c.layer_base, c.layer_pruned
