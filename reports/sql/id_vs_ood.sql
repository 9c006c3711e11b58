-- ID against OOD for every subnetwork of one experiment ($experiment): each pruned step (step > 0) of each
-- run is one subnetwork (a run x step, i.e. a target or strength x seed for one-shot and L0 methods), with
-- its ID score and its score on each OOD set and subcase, by the run's primary metric. The full models
-- (step 0) are included once per fine-tuned model, with full_model = true.
-- $experiment NULL (as the report runs it): every experiment at once, each apart, its name in the last column.
WITH pts AS (
    SELECT s.experiment, s.run_id, s.step, s.x, s.sparsity, s.eval_set, s.kind, s.subcase, s.metric, s.value, s.passed,
           s.selected, r.finetune_fingerprint
    FROM primary_steps AS s
    JOIN runs AS r USING (run_id)
    WHERE ($experiment IS NULL OR s.experiment = $experiment) AND s.variant = 'pruned'
), id AS (
    SELECT run_id, step, value AS id_value
    FROM pts
    WHERE kind = 'id' AND subcase = 'all'
)
SELECT
    g.method,
    g.group_label,
    g.run_label,
    g.seed,
    g.prune_seed,
    p.step = 0        AS full_model,
    p.step,
    p.x,
    p.sparsity,
    p.passed,
    p.selected,
    p.eval_set,
    p.subcase,
    p.metric,
    i.id_value,
    p.value           AS ood_value,
    p.experiment
FROM pts AS p
JOIN id AS i USING (run_id, step)
JOIN run_groups AS g USING (run_id)
WHERE p.kind = 'ood'
QUALIFY p.step > 0
     OR row_number() OVER (PARTITION BY p.experiment, p.finetune_fingerprint, p.step = 0, p.eval_set, p.subcase
                           ORDER BY g.run_label, p.run_id) = 1
ORDER BY p.experiment, p.eval_set, p.subcase <> 'all', p.subcase, full_model DESC, g.method, g.run_label, p.step,
         p.run_id  -- runs of one label (a grid value not among the axes) in one order every time
