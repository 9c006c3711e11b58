-- The trials of each search of one experiment ($experiment) and its Pareto front: each trial's kept
-- subnetwork with its sparsity and its score on every whole evaluation set (the run's primary metric).
-- A trial is on the front when no other trial of its study is at least as sparse and scores at least as
-- well on every set, and strictly better on one of them.
-- $experiment NULL (as the report runs it): every experiment at once, each apart, its name in the last column.
WITH kept AS (
    SELECT r.experiment, r.study, r.trial, s.run_id, s.step, s.x, s.eval_set, s.kind, s.metric, s.value, s.sparsity
    FROM primary_steps AS s
    JOIN runs AS r USING (run_id)
    WHERE ($experiment IS NULL OR r.experiment = $experiment) AND r.study IS NOT NULL AND s.selected AND s.variant = 'pruned'
      AND s.subcase = 'all'
), dominated AS (
    SELECT a.run_id
    FROM kept AS a
    JOIN kept AS b ON b.experiment = a.experiment AND b.study = a.study AND b.eval_set = a.eval_set AND b.run_id <> a.run_id
    GROUP BY a.run_id, b.run_id
    HAVING bool_and(b.value >= a.value AND b.sparsity >= a.sparsity)
       AND bool_or(b.value > a.value OR b.sparsity > a.sparsity)
)
SELECT
    k.study,
    k.trial,
    g.run_label,
    g.method,
    k.step,
    k.x,
    any_value(k.metric)                                   AS metric,
    any_value(k.sparsity)                                 AS sparsity,
    max(k.value) FILTER (WHERE k.kind = 'id')             AS id_value,
    list(struct_pack(eval_set := k.eval_set, value := k.value) ORDER BY k.eval_set)
        FILTER (WHERE k.kind = 'ood')                     AS ood,
    k.run_id NOT IN (SELECT run_id FROM dominated)        AS on_front,
    k.experiment
FROM kept AS k
JOIN run_groups AS g USING (run_id)
GROUP BY k.experiment, k.study, k.trial, g.run_label, g.method, k.step, k.x, k.run_id
ORDER BY k.experiment, k.study, k.trial, g.run_label, k.run_id
