-- Finding 1, "When BERT plays the lottery": m-pruned good subnetworks, re-fine-tuned, reach the full model's
-- score, within the task's spread over seeds.
-- Checked on every m-pruning experiment (method magnitude, iterative, with a keep rule) and every magnitude
-- experiment that logged a re-fine-tuned good subnetwork; in domain, by each run's primary metric:
--   the full model: step 0, one score per fine-tuned model (the fine-tuning seeds give the spread);
--   the good subnetwork re-fine-tuned: variant `retrained` at each run's kept step.
-- holds: mean(re-fine-tuned) >= mean(full) - spread_sds x the full models' sample SD over seeds (or >= mean(full));
-- does not hold: below that line;
-- not enough data: no re-fine-tuned good subnetwork, no full model, or (re-fine-tuned below the full model's
-- mean) fewer than min_finetunes fine-tuned models to measure the spread.
WITH params AS (
    SELECT
        1.0 AS spread_sds,    -- the task's spread over seeds: this many sample SDs of the full models' scores
        2   AS min_finetunes, -- a spread needs at least this many fine-tuned models (fine-tuning seeds)
        1   AS claim_no,
        'When BERT plays the lottery (Prasanna et al. 2020)' AS study,
        'm-pruned good subnetworks, re-fine-tuned, reach the full model''s score, within the task''s spread over seeds.'
            AS claim,
        'reports/sql/findings/lottery_m_pruning.sql' AS sql_file
), fits AS (
    SELECT experiment
    FROM runs
    WHERE method = 'magnitude'
    GROUP BY experiment
    HAVING bool_or(coalesce(x_axis, 'step') = 'step' AND keep_threshold > 0)
        OR experiment IN (SELECT experiment FROM steps WHERE variant = 'retrained')
), good AS (  -- the good subnetworks re-fine-tuned: their mean and SD over runs
    SELECT experiment, scores['retrained'].n AS n_good, scores['retrained'].mean AS mean_good,
           scores['retrained'].sd AS sd_good, sparsity, seeds, prune_seeds
    FROM kept_id_scores(['retrained'])
), judged AS (
    SELECT
        f.experiment, fs.metric, fs.n_full, fs.mean_full, fs.sd_full, fs.full_seeds,
        g.n_good, g.mean_good, g.sd_good, g.sparsity, g.seeds, g.prune_seeds,
        fs.mean_full - p.spread_sds * fs.sd_full AS line,
        CASE WHEN g.n_good IS NULL OR fs.n_full IS NULL THEN NULL
             WHEN g.mean_good >= fs.mean_full THEN true
             WHEN fs.n_full < p.min_finetunes THEN NULL
             ELSE g.mean_good >= fs.mean_full - p.spread_sds * fs.sd_full END AS ok
    FROM fits AS f
    CROSS JOIN params AS p
    LEFT JOIN full_id_scores() AS fs USING (experiment)
    LEFT JOIN good AS g USING (experiment)
)
SELECT
    p.claim_no, p.study, p.claim, j.experiment, NULL::VARCHAR AS scope,
    coalesce(j.metric, 'score') || ' in domain: '
        || CASE WHEN j.n_good IS NULL THEN ''
                ELSE 'good subnetworks re-fine-tuned ' || pm(j.mean_good, j.sd_good) || ' (n=' || j.n_good || ', '
                     || pct(j.sparsity) || ' sparse) vs ' END
        || full_model_text(j.mean_full, j.sd_full, j.n_full) AS numbers,
    coalesce(j.n_good, 0) AS n,
    seeds_text(coalesce(j.seeds, j.full_seeds), coalesce(j.prune_seeds, j.full_seeds)) AS seeds,
    CASE j.ok WHEN true THEN 'holds' WHEN false THEN 'does not hold' ELSE 'not enough data' END AS verdict,
    CASE
        WHEN j.n_full IS NULL THEN 'no full-model score (step 0) was logged'
        WHEN j.n_good IS NULL THEN 'no re-fine-tuned good subnetwork was logged (declare prune.retrain = true)'
        WHEN j.ok IS NULL THEN 'the re-fine-tuned subnetworks average ' || f3(j.mean_good)
            || ', below the full model''s '
            || f3(j.mean_full) || '; whether that is within the spread over seeds needs at least ' || p.min_finetunes
            || ' fine-tuned models (seeds), and ' || j.n_full || ' was logged'
        WHEN j.mean_good >= j.mean_full THEN 'the re-fine-tuned mean ' || f3(j.mean_good)
            || ' reaches the full model''s ' || f3(j.mean_full)
        WHEN j.ok THEN 'the re-fine-tuned mean ' || f3(j.mean_good) || ' is within the spread: >= ' || f3(j.mean_full)
            || ' - ' || p.spread_sds || ' SD (' || f3(j.sd_full) || ') = ' || f3(j.line)
        ELSE 'the re-fine-tuned mean ' || f3(j.mean_good) || ' is ' || f3(j.mean_full - j.mean_good)
            || ' below the full model''s ' || f3(j.mean_full) || ', outside the spread over seeds: < '
            || f3(j.mean_full)
            || ' - ' || p.spread_sds || ' SD (' || f3(j.sd_full) || ') = ' || f3(j.line)
    END AS why,
    p.sql_file
FROM judged AS j
CROSS JOIN params AS p
UNION ALL
SELECT p.claim_no, p.study, p.claim, NULL, NULL, NULL, 0, NULL, 'not enough data',
       'no m-pruning experiment (method magnitude, iterative, with a keep rule) was run: studies/lottery.toml '
       || 'declares them, with re-fine-tuned good subnetworks and 5 seeds',
       p.sql_file
FROM params AS p
WHERE NOT EXISTS (SELECT 1 FROM fits)
ORDER BY experiment
