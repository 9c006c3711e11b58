-- Finding 3, "When BERT plays the lottery": bad subnetworks are worse than random ones of the same size, pruned
-- and re-fine-tuned.
-- Checked on every experiment that logged a random or bad control, and every m- or s-pruning experiment
-- (method magnitude or importance, iterative, with a keep rule); in domain, by each run's primary metric, at each
-- run's kept step: variants `bad` vs `random` (pruned) and `bad_retrained` vs `random_retrained` (re-fine-tuned).
-- Worse: the bad mean over seeds at least worse_by below the random mean.
-- holds: worse both pruned and re-fine-tuned; does not hold: not worse in either (whatever the other shows);
-- not enough data: a pair not logged (and the other worse, or not logged either).
WITH params AS (
    SELECT
        0.01 AS worse_by, -- worse: the bad mean at least this far (1 point) below the random mean
        3    AS claim_no,
        'When BERT plays the lottery (Prasanna et al. 2020)' AS study,
        'Bad subnetworks are worse than random ones of the same size, pruned and re-fine-tuned.' AS claim,
        'reports/sql/findings/lottery_bad.sql' AS sql_file
), fits AS (
    SELECT experiment
    FROM runs
    GROUP BY experiment
    HAVING bool_or(method IN ('magnitude', 'importance') AND coalesce(x_axis, 'step') = 'step' AND keep_threshold > 0)
        OR experiment IN (SELECT experiment FROM steps
                          WHERE variant IN ('random', 'bad', 'random_retrained', 'bad_retrained'))
), variants AS (  -- each control, pruned and re-fine-tuned: its mean and SD over runs
    SELECT experiment, metric,
           scores['bad'].n AS n_bad, scores['bad'].mean AS bad, scores['bad'].sd AS sd_bad,
           scores['random'].n AS n_random, scores['random'].mean AS random, scores['random'].sd AS sd_random,
           scores['bad_retrained'].n AS n_bad_rt, scores['bad_retrained'].mean AS bad_rt,
           scores['bad_retrained'].sd AS sd_bad_rt,
           scores['random_retrained'].n AS n_random_rt, scores['random_retrained'].mean AS random_rt,
           scores['random_retrained'].sd AS sd_random_rt,
           sparsity, n_runs, seeds, prune_seeds
    FROM kept_id_scores(['random', 'bad', 'random_retrained', 'bad_retrained'])
), judged AS (
    SELECT
        f.experiment, v.*,
        CASE WHEN v.n_bad > 0 AND v.n_random > 0 THEN v.bad <= v.random - p.worse_by END           AS pruned_ok,
        CASE WHEN v.n_bad_rt > 0 AND v.n_random_rt > 0 THEN v.bad_rt <= v.random_rt - p.worse_by END AS retrained_ok
    FROM fits AS f
    CROSS JOIN params AS p
    LEFT JOIN variants AS v USING (experiment)
)
SELECT
    p.claim_no, p.study, p.claim, j.experiment, NULL::VARCHAR AS scope,
    coalesce(j.metric, 'score') || ' in domain'
        || CASE WHEN j.sparsity IS NULL THEN '' ELSE ' at the kept step (' || pct(j.sparsity) || ' sparse)' END || ': '
        || coalesce(concat_ws('; ',
               CASE WHEN j.n_bad > 0 OR j.n_random > 0 THEN 'pruned: bad '
                   || CASE WHEN j.n_bad > 0 THEN pm(j.bad, j.sd_bad) || ' (n=' || j.n_bad || ')' ELSE 'not logged' END
                   || ' vs random '
                   || CASE WHEN j.n_random > 0 THEN pm(j.random, j.sd_random) || ' (n=' || j.n_random || ')'
                           ELSE 'not logged' END END,
               CASE WHEN j.n_bad_rt > 0 OR j.n_random_rt > 0 THEN 're-fine-tuned: bad '
                   || CASE WHEN j.n_bad_rt > 0 THEN pm(j.bad_rt, j.sd_bad_rt) || ' (n=' || j.n_bad_rt || ')'
                           ELSE 'not logged' END
                   || ' vs random '
                   || CASE WHEN j.n_random_rt > 0 THEN pm(j.random_rt, j.sd_random_rt) || ' (n=' || j.n_random_rt || ')'
                           ELSE 'not logged' END END), '')
        || CASE WHEN coalesce(j.n_runs, 0) = 0 THEN 'no control was logged at the kept step' ELSE '' END AS numbers,
    coalesce(j.n_runs, 0) AS n,
    CASE WHEN j.seeds IS NOT NULL THEN seeds_text(j.seeds, j.prune_seeds) END AS seeds,
    CASE WHEN NOT j.pruned_ok OR NOT j.retrained_ok THEN 'does not hold'
         WHEN j.pruned_ok AND j.retrained_ok THEN 'holds'
         ELSE 'not enough data' END AS verdict,
    CASE
        WHEN NOT j.pruned_ok OR NOT j.retrained_ok THEN concat_ws('; ',
            CASE WHEN NOT j.pruned_ok THEN 'pruned, the bad subnetworks (' || f3(j.bad) || ') are not worse than the '
                || 'random ones (' || f3(j.random) || ') by ' || p.worse_by || ': the gap is '
                || f3(j.random - j.bad) END,
            CASE WHEN NOT j.retrained_ok THEN 're-fine-tuned, the bad subnetworks (' || f3(j.bad_rt)
                || ') are not worse '
                || 'than the random ones (' || f3(j.random_rt) || ') by ' || p.worse_by || ': the gap is '
                || f3(j.random_rt - j.bad_rt) END)
        WHEN j.pruned_ok AND j.retrained_ok THEN 'bad below random by at least ' || p.worse_by || ': pruned by '
            || f3(j.random - j.bad) || ', re-fine-tuned by ' || f3(j.random_rt - j.bad_rt)
        WHEN j.pruned_ok IS NULL AND j.retrained_ok IS NULL THEN 'no bad and random pair was logged (declare '
            || 'prune.controls = ["random", "bad"]; prune.retrain = true re-fine-tunes them)'
        ELSE concat_ws('; ',
            CASE WHEN j.pruned_ok IS NULL THEN 'no pruned bad and random pair was logged (declare prune.controls = '
                || '["random", "bad"])' END,
            CASE WHEN j.retrained_ok IS NULL THEN 'no re-fine-tuned bad and random pair was logged (declare '
                || 'prune.controls = ["random", "bad"] and prune.retrain = true)' END)
            || CASE WHEN j.pruned_ok OR j.retrained_ok THEN '; the other pair is worse, as claimed' ELSE '' END
    END AS why,
    p.sql_file
FROM judged AS j
CROSS JOIN params AS p
UNION ALL
SELECT p.claim_no, p.study, p.claim, NULL, NULL, NULL, 0, NULL, 'not enough data',
       'no experiment logged bad and random subnetworks: studies/lottery.toml declares them (prune.controls = '
       || '["random", "bad"], prune.retrain = true)',
       p.sql_file
FROM params AS p
WHERE NOT EXISTS (SELECT 1 FROM fits)
ORDER BY experiment
