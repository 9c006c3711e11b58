-- The effective size: per experiment, method, seed, pruning seed and evaluation set, the smallest
-- subnetwork (largest sparsity) whose accuracy still holds against the full model's under the run's
-- keep rule (ratio: >= keep_threshold x full; margin: >= full - keep_threshold). Scanning sparsities from
-- high to low and taking the first that holds (the Heuristic Core's rule) picks the same step.
-- A grid's subnetworks are the steps of its runs (one group); a search's are its trials (one study).
-- effective_size counts prunable parameters; effective_units counts units (heads + MLPs, or neurons).
-- Scores are each run's primary metric (metric: accuracy, mcc, f1, ...); full_accuracy and accuracy keep
-- their names for scripts written before, and hold that metric's values.
WITH full_model AS (
    SELECT run_id, eval_set, value AS full_accuracy
    FROM primary_steps
    WHERE step = 0 AND variant = 'pruned' AND subcase = 'all'
), candidates AS (
    SELECT
        r.experiment, r.method, r.seed, r.prune_seed, r.keep_rule, r.keep_threshold,
        coalesce(r.study, r.group_id) AS found_in,
        CASE WHEN r.study IS NULL THEN 'grid' ELSE 'search' END AS found_by,
        s.run_id, s.step, s.eval_set, s.kind, s.metric, s.x, s.sparsity, s.unit_sparsity, s.value, f.full_accuracy,
        s.value >= keep_line(r.keep_rule, r.keep_threshold, f.full_accuracy) AS holds
    FROM primary_steps AS s
    JOIN runs AS r USING (run_id)
    JOIN full_model AS f USING (run_id, eval_set)
    WHERE s.variant = 'pruned' AND s.subcase = 'all' AND s.step > 0
)
SELECT
    experiment,
    method,
    seed,
    prune_seed,
    eval_set,
    kind,
    found_by,
    found_in,
    keep_rule,
    keep_threshold,
    count(DISTINCT run_id)                                     AS runs_used,
    count(*)                                                   AS subnetworks_evaluated,
    avg(full_accuracy)                                         AS full_accuracy,
    max(sparsity) FILTER (WHERE holds)                         AS sparsity,
    1 - max(sparsity) FILTER (WHERE holds)                     AS effective_size,
    1 - max(unit_sparsity) FILTER (WHERE holds)                AS effective_units,
    -- at the largest holding sparsity; ties (search trials of one size) go to the smaller x, then the best score
    arg_max(x, [sparsity, -coalesce(x, 0), value]) FILTER (WHERE holds)      AS x,
    arg_max(value, [sparsity, -coalesce(x, 0), value]) FILTER (WHERE holds)  AS accuracy,
    any_value(metric)                                          AS metric
FROM candidates
GROUP BY ALL
ORDER BY experiment, method, found_by, seed, prune_seed, kind, eval_set
