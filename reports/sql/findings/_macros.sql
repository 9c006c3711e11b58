-- Helpers the findings (reports/sql/findings/*.sql) share, defined on every warehouse connection (as the keep rule's
-- keep_line is), so each findings file also runs on its own with `subnets query --file`: text helpers for their
-- `numbers` and `why` columns, and table macros for the scores several claims are judged by. (The warehouse runs
-- this file after its derived views: DuckDB binds a table macro's body, over runs and primary_steps, when it is
-- created.)
CREATE OR REPLACE MACRO f3(x) AS coalesce(printf('%.3f', x), 'n/a');
CREATE OR REPLACE MACRO pct(x) AS coalesce(printf('%.1f%%', 100 * x), 'n/a');
-- a mean with its sample SD over seeds (none for one value)
CREATE OR REPLACE MACRO pm(mean, sd) AS f3(mean) || CASE WHEN sd IS NULL THEN '' ELSE ' ± ' || f3(sd) END;
-- the fine-tuning seeds, and the pruning seeds where they differ: "seeds 0, 1, 2" or "seed 0; pruning seeds 42, 43"
CREATE OR REPLACE MACRO seeds_text(seeds, prune_seeds) AS
    CASE WHEN len(list_distinct(seeds)) = 1 THEN 'seed ' ELSE 'seeds ' END
    || array_to_string(list_sort(list_distinct(seeds)), ', ')
    || CASE WHEN list_sort(list_distinct(prune_seeds)) = list_sort(list_distinct(seeds)) THEN ''
            ELSE CASE WHEN len(list_distinct(prune_seeds)) = 1 THEN '; pruning seed ' ELSE '; pruning seeds ' END
                 || array_to_string(list_sort(list_distinct(prune_seeds)), ', ') END;
-- the full model's scores over fine-tuned models (see full_id_scores): "full model 0.800 ± 0.020 (n=3 fine-tuned
-- models)"
CREATE OR REPLACE MACRO full_model_text(mean, sd, n) AS
    'full model ' || pm(mean, sd) || ' (n=' || coalesce(n, 0) || ' fine-tuned model'
    || CASE WHEN coalesce(n, 0) = 1 THEN '' ELSE 's' END || ')';

-- The full model's ID score, per experiment: one score per fine-tuned model (step 0 of variant pruned, in domain, by
-- each run's primary metric; the runs that prune one fine-tuned model logged the same step 0, so their mean), then
-- over the fine-tuned models their count n_full, mean_full, sample SD sd_full and fine-tuning seeds full_seeds.
CREATE OR REPLACE MACRO full_id_scores() AS TABLE
    SELECT experiment, any_value(metric) AS metric, count(*) AS n_full, avg(value) AS mean_full,
           stddev_samp(value) AS sd_full, list(seed) AS full_seeds
    FROM (
        SELECT r.experiment, r.finetune_fingerprint, min(r.seed) AS seed, any_value(s.metric) AS metric,
               avg(s.value) AS value
        FROM primary_steps AS s
        JOIN runs AS r USING (run_id)
        WHERE s.variant = 'pruned' AND s.step = 0 AND s.kind = 'id' AND s.subcase = 'all'
        GROUP BY r.experiment, r.finetune_fingerprint
    )
    GROUP BY experiment;

-- The kept subnetworks' ID scores, per experiment, for the given variants (e.g. ['retrained', 'random_retrained']):
-- each run's score at its kept (selected) step, in domain, by its primary metric; then per experiment `scores`, a
-- map from each variant logged to its {n: runs, mean, sd: sample SD} over runs (scores['retrained'].mean; NULL
-- where a variant was not logged), and over all those runs their metric, mean sparsity, count n_runs and seeds.
CREATE OR REPLACE MACRO kept_id_scores(variants) AS TABLE
    WITH per_run AS (
        SELECT r.experiment, s.variant, r.run_id, r.seed, r.prune_seed, any_value(s.metric) AS metric,
               avg(s.value) AS value, avg(s.sparsity) AS sparsity
        FROM primary_steps AS s
        JOIN runs AS r USING (run_id)
        WHERE list_contains(variants, s.variant) AND s.selected AND s.kind = 'id' AND s.subcase = 'all'
        GROUP BY r.experiment, s.variant, r.run_id, r.seed, r.prune_seed
    ), per_variant AS (
        SELECT experiment, variant, count(*) AS n, avg(value) AS mean, stddev_samp(value) AS sd
        FROM per_run
        GROUP BY experiment, variant
    )
    SELECT experiment, any_value(metric) AS metric, avg(sparsity) AS sparsity, count(DISTINCT run_id) AS n_runs,
           list(DISTINCT seed) AS seeds, list(DISTINCT prune_seed) AS prune_seeds,
           any_value(v.scores) AS scores
    FROM per_run
    JOIN (SELECT experiment, map_from_entries(list((variant, {'n': n, 'mean': mean, 'sd': sd}))) AS scores
          FROM per_variant
          GROUP BY experiment) AS v USING (experiment)
    GROUP BY experiment;

-- Sampling noise of accuracies over n examples. k subnetworks' accuracies on the same n examples, were they all equally
-- accurate (p) with independent errors, would range (max - min) up to range_q95(k) x sqrt(p (1 - p) / n) in 95% of
-- evaluations: range_q95(k) is the 95% quantile of the range of k independent standard normal values (Tukey's
-- studentized range with infinite degrees of freedom; tests/reports/test_findings.py checks it against scipy's), for
-- k = 2..50; a larger k takes k = 50's (a little low). Subnetworks of one model evaluated on the same examples err
-- together more often than independent ones, so their real range under equal accuracy is narrower: the bound leans
-- toward calling a spread noise. For k = 2 it is 1.96 x the SD of the difference of two accuracies.
CREATE OR REPLACE MACRO range_q95(k) AS
    CAST([NULL, 2.772, 3.314, 3.633, 3.858, 4.030, 4.170, 4.286, 4.387, 4.474, 4.552, 4.622, 4.685, 4.743, 4.796, 4.845,
     4.891, 4.934, 4.974, 5.012, 5.047, 5.081, 5.113, 5.144, 5.173, 5.201, 5.228, 5.253, 5.278, 5.301, 5.324,
     5.346, 5.367, 5.388, 5.407, 5.427, 5.445, 5.463, 5.481, 5.498, 5.515, 5.531, 5.546, 5.562, 5.577, 5.591,
     5.605, 5.619, 5.633, 5.646] AS DOUBLE[])[least(k, 50)];
-- The accuracy p, over n examples, that the SD is taken at: one more right and one more wrong answer ((p n + 1) /
-- (n + 2)), so that an accuracy of 0 or 1 on a small set does not claim that it has no noise.
CREATE OR REPLACE MACRO noise_p(p, n) AS (p * n + 1) / (n + 2);
CREATE OR REPLACE MACRO accuracy_range_noise(k, p, n) AS range_q95(k) * sqrt(noise_p(p, n) * (1 - noise_p(p, n)) / n);
-- The difference of two accuracies on two separate sets (p1 on n1 examples, p2 on n2), were both equally accurate,
-- exceeds this in 5% of evaluations: 1.96 x its SD.
CREATE OR REPLACE MACRO difference_noise(p1, n1, p2, n2) AS
    1.96 * sqrt(noise_p(p1, n1) * (1 - noise_p(p1, n1)) / n1 + noise_p(p2, n2) * (1 - noise_p(p2, n2)) / n2);
