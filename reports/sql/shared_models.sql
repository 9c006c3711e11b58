-- Experiments compared across one fine-tuned model: for every fine-tuned model (runs.finetune_fingerprint)
-- pruned by more than one experiment, per experiment, method and whole evaluation set, the full model's
-- score and the kept subnetworks' mean, min and max (the run's primary metric), with their mean sparsity.
WITH shared AS (
    SELECT finetune_fingerprint
    FROM runs
    GROUP BY finetune_fingerprint
    HAVING count(DISTINCT experiment) > 1
), per_run AS (
    SELECT r.finetune_fingerprint, r.model, r.task, r.experiment, r.method, s.run_id, s.eval_set, s.kind,
           any_value(s.metric) AS metric,
           max(s.value) FILTER (WHERE s.step = 0)                         AS full_value,
           avg(s.value) FILTER (WHERE s.selected)                         AS kept_value,
           avg(s.sparsity) FILTER (WHERE s.selected)                      AS kept_sparsity
    FROM primary_steps AS s
    JOIN runs AS r USING (run_id)
    JOIN shared USING (finetune_fingerprint)
    WHERE s.variant = 'pruned' AND s.subcase = 'all'
    GROUP BY ALL
)
SELECT
    finetune_fingerprint,
    any_value(model)     AS model,
    any_value(task)      AS task,
    experiment,
    method,
    eval_set,
    kind,
    any_value(metric)    AS metric,
    count(*)             AS n_runs,
    avg(full_value)      AS full_value,
    avg(kept_value)      AS mean_kept_value,
    min(kept_value)      AS min_kept_value,
    max(kept_value)      AS max_kept_value,
    avg(kept_sparsity)   AS mean_kept_sparsity
FROM per_run
GROUP BY finetune_fingerprint, experiment, method, eval_set, kind
ORDER BY finetune_fingerprint, kind, eval_set, experiment, method
