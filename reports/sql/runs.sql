-- The finished runs of one experiment ($experiment), with the ID and OOD accuracy of the
-- pruned model at the step whose mask the run kept (selected), on each whole evaluation set.
WITH final AS (
    SELECT run_id, eval_set, kind, avg(value) AS accuracy
    FROM steps
    WHERE experiment = $experiment
      AND selected
      AND variant = 'pruned'
      AND metric = 'accuracy'
      AND subcase = 'all'
    GROUP BY run_id, eval_set, kind
)
SELECT
    r.run_id,
    left(r.fingerprint, 10)                          AS fingerprint_short,
    r.seed,
    r.method,
    g.group_label,
    r.baseline_id_accuracy,
    r.final_step,
    r.final_sparsity,
    max(f.accuracy) FILTER (WHERE f.kind = 'id')     AS final_id_accuracy,
    list(struct_pack(eval_set := f.eval_set, accuracy := f.accuracy) ORDER BY f.eval_set)
        FILTER (WHERE f.kind = 'ood')                AS final_ood
FROM runs AS r
JOIN run_groups AS g USING (run_id)
LEFT JOIN final AS f USING (run_id)
WHERE r.experiment = $experiment
GROUP BY r.run_id, r.fingerprint, r.seed, r.method, g.group_label, r.baseline_id_accuracy,
         r.final_step, r.final_sparsity
ORDER BY g.group_label, r.seed, r.fingerprint
