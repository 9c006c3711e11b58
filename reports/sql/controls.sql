-- Good, random and bad subnetworks (the lottery study) of one experiment ($experiment), pruned and
-- re-fine-tuned: at each run's kept step, every variant (pruned = the good subnetwork; random and bad =
-- controls of its size; *_retrained = re-fine-tuned from the pre-trained weights with the mask applied) on
-- each whole evaluation set, by the run's primary metric. Per seed group and variant: the per-seed values,
-- their mean, sample standard deviation, min and max. Only runs that logged a control or re-fine-tuned
-- variant are counted.
-- $experiment NULL (as the report runs it): every experiment at once, each apart, its name in the last column.
WITH with_variants AS (
    SELECT DISTINCT run_id
    FROM steps
    WHERE ($experiment IS NULL OR experiment = $experiment) AND variant <> 'pruned'
), kept AS (
    SELECT s.experiment, g.group_label, s.variant, s.eval_set, s.kind, s.metric, g.seed, g.prune_seed, g.run_label, s.run_id,
           s.sparsity, s.value
    FROM primary_steps AS s
    JOIN with_variants USING (run_id)
    JOIN run_groups AS g USING (run_id)
    WHERE ($experiment IS NULL OR s.experiment = $experiment) AND s.selected AND s.subcase = 'all'
)
SELECT
    group_label,
    variant,
    eval_set,
    kind,
    any_value(metric)                                              AS metric,
    avg(sparsity)                                                  AS sparsity,
    count(*)                                                       AS n_seeds,
    avg(value)                                                     AS mean_value,
    stddev_samp(value)                                             AS sd_value,
    min(value)                                                     AS min_value,
    max(value)                                                     AS max_value,
    list(struct_pack(run := run_label, value := value) ORDER BY seed, prune_seed, run_label, run_id) AS per_seed,
    experiment
FROM kept
GROUP BY experiment, group_label, variant, eval_set, kind
ORDER BY experiment, group_label, kind, eval_set,
         CASE variant WHEN 'pruned' THEN 0 WHEN 'random' THEN 1 WHEN 'bad' THEN 2 WHEN 'retrained' THEN 3
                      WHEN 'random_retrained' THEN 4 WHEN 'bad_retrained' THEN 5 ELSE 6 END, variant
