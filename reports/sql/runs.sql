-- The finished runs of one experiment ($experiment) and why each stopped: the kept (selected) step with its
-- score on each whole evaluation set, by the run's primary metric; the stop reason and whether the kept
-- step was chosen by the keep rule (a later step failed it) or by a cap (max_steps, the declared
-- strengths/targets or the prunable units ran out while every step held); and, for L0 runs (x = target),
-- the steps whose gates' expected unit sparsity at the end of training missed the target by more than 0.05
-- (the mask itself is cut to the target, so a miss says the schedule was too short for the gates to agree).
-- $experiment NULL (as the report runs it): every experiment at once, each apart, its name in the last column.
WITH pruned AS (
    SELECT *
    FROM primary_steps
    WHERE ($experiment IS NULL OR experiment = $experiment) AND variant = 'pruned' AND subcase = 'all'
), kept AS (
    SELECT run_id, eval_set, kind, avg(value) AS value
    FROM pruned
    WHERE selected
    GROUP BY run_id, eval_set, kind
), per_run AS (
    SELECT
        p.run_id,
        any_value(p.metric)                                                     AS metric,
        max(p.value) FILTER (WHERE p.step = 0 AND p.kind = 'id')                AS full_id,
        max(p.step) FILTER (WHERE p.kind = 'id')                                AS last_step,
        any_value(p.x) FILTER (WHERE p.selected AND p.kind = 'id')              AS kept_x,
        any_value(p.unit_sparsity) FILTER (WHERE p.selected AND p.kind = 'id')  AS kept_unit_sparsity,
        bool_or(NOT p.passed AND p.step > r.final_step) FILTER (WHERE p.kind = 'id') AS failed_after_kept,
        list(struct_pack(target := p.x, expected := p.expected_unit_sparsity) ORDER BY p.step)
            FILTER (WHERE p.kind = 'id' AND r.x_axis = 'target' AND p.step > 0
                    AND abs(p.expected_unit_sparsity - p.x) > 0.05)             AS missed_targets
    FROM pruned AS p
    JOIN runs AS r USING (run_id)
    GROUP BY p.run_id
)
SELECT
    r.run_id,
    left(r.fingerprint, 10)                            AS fingerprint_short,
    g.run_label,
    r.label,
    r.seed,
    r.prune_seed,
    r.method,
    g.group_label,
    coalesce(p.metric, r.primary_metric, 'accuracy')   AS metric,
    p.full_id                                          AS full_id_value,
    r.final_step,
    r.x_axis,
    p.kept_x,
    r.final_sparsity,
    p.kept_unit_sparsity,
    r.stop_reason,
    p.last_step,
    CASE WHEN coalesce(p.failed_after_kept, false) THEN 'keep rule'
         WHEN r.stop_reason = 'callback' THEN 'search'
         WHEN r.stop_reason = 'keep_rule' THEN 'keep rule'
         ELSE 'cap' END                                AS chosen_by,
    p.missed_targets,
    r.study,
    r.trial,
    max(k.value) FILTER (WHERE k.kind = 'id')          AS kept_id_value,
    max(k.value) FILTER (WHERE k.kind = 'id')          AS final_id_accuracy,  -- its name before primary metrics
    list(struct_pack(eval_set := k.eval_set, value := k.value) ORDER BY k.eval_set)
        FILTER (WHERE k.kind = 'ood')                  AS kept_ood,
    r.experiment
FROM runs AS r
JOIN run_groups AS g USING (run_id)
LEFT JOIN per_run AS p USING (run_id)
LEFT JOIN kept AS k USING (run_id)
WHERE $experiment IS NULL OR r.experiment = $experiment
GROUP BY ALL
ORDER BY r.experiment, g.group_label, r.seed, r.prune_seed, r.label, r.run_id
