-- Finding 2, "When BERT plays the lottery": s-pruned good subnetworks, re-fine-tuned, come close to the full
-- model, and so do random subnetworks of the same size ("a lottery you can't lose").
-- Checked on every s-pruning experiment (method importance, iterative, with a keep rule) and every importance
-- experiment that logged a re-fine-tuned subnetwork; in domain, by each run's primary metric:
--   the full model: step 0, one score per fine-tuned model;
--   good and random re-fine-tuned: variants `retrained` and `random_retrained` at each run's kept step.
-- Close: a mean over seeds >= close_ratio x the full models' mean (the lottery's own 90% rule).
-- holds: both close; does not hold: either below the line (with the other missing or not);
-- not enough data: one or both not logged (and none below the line), or no full model.
WITH params AS (
    SELECT
        0.9 AS close_ratio, -- close to the full model: at least this fraction of its score
        2   AS claim_no,
        'When BERT plays the lottery (Prasanna et al. 2020)' AS study,
        's-pruned good subnetworks, re-fine-tuned, come close to the full model, and so do random subnetworks of the '
            || 'same size ("a lottery you can''t lose").' AS claim,
        'reports/sql/findings/lottery_s_pruning.sql' AS sql_file
), fits AS (
    SELECT experiment
    FROM runs
    WHERE method = 'importance'
    GROUP BY experiment
    HAVING bool_or(coalesce(x_axis, 'step') = 'step' AND keep_threshold > 0)
        OR experiment IN (SELECT experiment FROM steps WHERE variant IN ('retrained', 'random_retrained'))
), variants AS (  -- the good and random subnetworks re-fine-tuned: their means and SDs over runs
    SELECT experiment, scores['retrained'].n AS n_good, scores['retrained'].mean AS mean_good,
           scores['retrained'].sd AS sd_good, scores['random_retrained'].n AS n_random,
           scores['random_retrained'].mean AS mean_random, scores['random_retrained'].sd AS sd_random, sparsity,
           n_runs, seeds, prune_seeds
    FROM kept_id_scores(['retrained', 'random_retrained'])
), judged AS (
    SELECT
        f.experiment, fs.metric, fs.n_full, fs.mean_full, fs.sd_full, fs.full_seeds,
        v.n_good, v.mean_good, v.sd_good, v.n_random, v.mean_random, v.sd_random, v.sparsity, v.n_runs, v.seeds,
        v.prune_seeds,
        p.close_ratio * fs.mean_full AS line,
        CASE WHEN coalesce(v.n_good, 0) > 0 THEN v.mean_good >= p.close_ratio * fs.mean_full END   AS good_ok,
        CASE WHEN coalesce(v.n_random, 0) > 0 THEN v.mean_random >= p.close_ratio * fs.mean_full END AS random_ok
    FROM fits AS f
    CROSS JOIN params AS p
    LEFT JOIN full_id_scores() AS fs USING (experiment)
    LEFT JOIN variants AS v USING (experiment)
)
SELECT
    p.claim_no, p.study, p.claim, j.experiment, NULL::VARCHAR AS scope,
    coalesce(j.metric, 'score') || ' in domain: '
        || CASE WHEN coalesce(j.n_good, 0) = 0 THEN ''
                ELSE 'good re-fine-tuned ' || pm(j.mean_good, j.sd_good) || ' (n=' || j.n_good || '), ' END
        || CASE WHEN coalesce(j.n_random, 0) = 0 THEN ''
                ELSE 'random re-fine-tuned ' || pm(j.mean_random, j.sd_random) || ' (n=' || j.n_random || '), ' END
        || CASE WHEN j.sparsity IS NULL THEN '' ELSE pct(j.sparsity) || ' sparse; ' END
        || full_model_text(j.mean_full, j.sd_full, j.n_full) AS numbers,
    coalesce(j.n_runs, 0) AS n,
    seeds_text(coalesce(j.seeds, j.full_seeds), coalesce(j.prune_seeds, j.full_seeds)) AS seeds,
    CASE WHEN j.n_full IS NULL THEN 'not enough data'
         WHEN NOT j.good_ok OR NOT j.random_ok THEN 'does not hold'
         WHEN j.good_ok AND j.random_ok THEN 'holds'
         ELSE 'not enough data' END AS verdict,
    CASE
        WHEN j.n_full IS NULL THEN 'no full-model score (step 0) was logged'
        WHEN NOT j.good_ok OR NOT j.random_ok THEN
            concat_ws(' and ',
                CASE WHEN NOT j.good_ok THEN 'the good subnetworks re-fine-tuned reach ' || f3(j.mean_good) END,
                CASE WHEN NOT j.random_ok THEN 'the random ones re-fine-tuned reach ' || f3(j.mean_random) END)
            || ', below ' || p.close_ratio || ' x the full model''s ' || f3(j.mean_full) || ' = ' || f3(j.line)
        WHEN j.good_ok AND j.random_ok THEN 'good (' || f3(j.mean_good) || ') and random (' || f3(j.mean_random)
            || ') re-fine-tuned both reach ' || p.close_ratio || ' x the full model''s ' || f3(j.mean_full) || ' = '
            || f3(j.line)
        ELSE concat_ws('; ',
                CASE WHEN j.good_ok IS NULL
                     THEN 'no re-fine-tuned good subnetwork was logged (declare prune.retrain = true)' END,
                CASE WHEN j.random_ok IS NULL
                     THEN 'no re-fine-tuned random subnetwork was logged (declare prune.controls = ["random", "bad"] '
                          || 'and prune.retrain = true)' END)
    END AS why,
    p.sql_file
FROM judged AS j
CROSS JOIN params AS p
UNION ALL
SELECT p.claim_no, p.study, p.claim, NULL, NULL, NULL, 0, NULL, 'not enough data',
       'no s-pruning experiment (method importance, iterative, with a keep rule) was run: studies/lottery.toml '
       || 'declares them, with random controls, re-fine-tuning and 5 seeds',
       p.sql_file
FROM params AS p
WHERE NOT EXISTS (SELECT 1 FROM fits)
ORDER BY experiment
