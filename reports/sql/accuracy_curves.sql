-- Accuracy against sparsity on each whole evaluation set of one experiment ($experiment):
-- per seed group, variant and pruning step, the mean over seeds with the min/max across seeds.
WITH per_run AS (
    SELECT
        g.group_label,
        s.variant,
        s.eval_set,
        s.kind,
        s.step,
        s.run_id,
        avg(s.sparsity) AS sparsity,
        avg(s.value)    AS accuracy
    FROM steps AS s
    JOIN run_groups AS g USING (run_id)
    WHERE s.experiment = $experiment AND s.metric = 'accuracy' AND s.subcase = 'all'
    GROUP BY ALL
)
SELECT
    group_label,
    variant,
    eval_set,
    kind,
    step,
    avg(sparsity)  AS sparsity,
    avg(accuracy)  AS mean_accuracy,
    min(accuracy)  AS min_accuracy,
    max(accuracy)  AS max_accuracy,
    count(*)       AS n_seeds
FROM per_run
GROUP BY ALL
ORDER BY group_label, kind, eval_set, variant, step
