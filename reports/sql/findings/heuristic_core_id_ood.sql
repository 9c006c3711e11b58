-- Finding 4, "The Heuristic Core": subnetworks of one fine-tuned model whose ID scores lie within 1 point of each
-- other differ widely out of domain. The paper's figure: 12 pruning seeds of one bert-base MNLI model at ~50% of
-- units removed matched ID (80.1-81.9) but scored 2.2-36.1 on HANS's subject/object swap, 3.2-41.4 on preposition.
-- One row per experiment, OOD set and non-entailment subcase (a subcase named <heuristic>/non_entailment, or a HANS
-- fine-grained one, ln_/sn_/cn_...): ID by each run's primary metric, the subcase by accuracy (its only metric);
-- the full model's accuracy there from step 0. Subnetworks: every pruned step (step > 0) of
-- every run; each opens a window [its ID, its ID + id_window] among the subnetworks of its fine-tuned model (as
-- reports/sql/id_ood_spread.sql does per experiment); the row is the window with the widest OOD spread among those
-- holding at least min_in_window subnetworks (ties: the lowest ID).
-- Sampling noise: k subnetworks' accuracies on the subcase's n examples would range up to accuracy_range_noise(k, p,
-- n) were they all equally accurate (their mean, p), in 95% of evaluations (_macros.sql). A spread within it says
-- nothing; and a set too small to tell a spread of wide_spread from noise, at any accuracy (p = 0.5), cannot show
-- that the subnetworks agree.
-- holds: that spread >= wide_spread, and beyond the noise;
-- not enough data: the full model scores below min_full_ood on the subcase (it does not generalize there, so no
--   subnetwork has any generalization left to lose), or fewer than min_in_window subnetworks lie within one window,
--   or the spread is wide but within the noise, or narrow on a set too small to tell wide_spread from noise;
-- does not hold: the spread is below wide_spread although the full model generalizes, the window is full and the set
--   large enough to show a spread of wide_spread.
WITH params AS (
    SELECT
        0.01 AS id_window,     -- ID scores within 1 point of each other
        0.10 AS wide_spread,   -- "differ widely": an OOD spread of at least 10 points
        3    AS min_in_window, -- a spread needs at least this many subnetworks with matching ID scores
        0.10 AS min_full_ood,  -- the full model generalizes on a subcase: it scores at least this there
        '(^|/)(non|not)[_-]entailment($|/)|(^|/)[lsc]n_' AS non_entailment,  -- a non-entailment subcase's name
        4    AS claim_no,
        'The Heuristic Core (Bhaskar et al. 2024)' AS study,
        'Subnetworks of one fine-tuned model whose ID scores lie within 1 point of each other differ widely out of '
            || 'domain.' AS claim,
        'reports/sql/findings/heuristic_core_id_ood.sql' AS sql_file
), subcases AS (  -- what the claim is checked on: each non-entailment subcase of an OOD set
    SELECT DISTINCT s.experiment, s.eval_set, s.subcase
    FROM steps AS s, params AS p
    WHERE s.kind = 'ood' AND regexp_matches(s.subcase, p.non_entailment)
), id_pts AS (  -- each subnetwork's ID score, by the run's primary metric
    SELECT s.run_id, s.step, s.metric, s.value
    FROM primary_steps AS s
    WHERE s.variant = 'pruned' AND s.step > 0 AND s.kind = 'id' AND s.subcase = 'all'
), pairs AS (  -- and its accuracy on each non-entailment subcase
    SELECT o.experiment, r.finetune_fingerprint AS ft, o.eval_set, o.subcase, i.metric AS id_metric, r.seed,
           r.prune_seed, o.sparsity, i.value AS id_value, o.value AS ood_value, o.n AS n_examples
    FROM steps AS o
    JOIN id_pts AS i USING (run_id, step)
    JOIN runs AS r USING (run_id)
    JOIN subcases AS c ON c.experiment = o.experiment AND c.eval_set = o.eval_set AND c.subcase = o.subcase
    WHERE o.variant = 'pruned' AND o.metric = 'accuracy'
), windows AS (
    SELECT
        experiment, ft, eval_set, subcase, id_metric, id_value AS id_low,
        max(id_value)     OVER w AS id_high,
        count(*)          OVER w AS n_in_window,
        min(ood_value)    OVER w AS ood_min,
        max(ood_value)    OVER w AS ood_max,
        avg(ood_value)    OVER w AS ood_mean,
        min(n_examples)   OVER w AS n_examples,
        min(sparsity)     OVER w AS sparsity_min,
        max(sparsity)     OVER w AS sparsity_max,
        list(seed)        OVER w AS seeds,
        list(prune_seed)  OVER w AS prune_seeds,
        count(*) OVER (PARTITION BY experiment, ft, eval_set, subcase) AS n_subnetworks
    FROM pairs
    WINDOW w AS (PARTITION BY experiment, ft, eval_set, subcase ORDER BY id_value
                 RANGE BETWEEN CURRENT ROW AND 0.010000001 FOLLOWING)  -- id_window (a frame's constant), float-safe
), widest AS (
    SELECT w.*
    FROM windows AS w, params AS p
    QUALIFY row_number() OVER (PARTITION BY experiment, eval_set, subcase
                               ORDER BY n_in_window >= p.min_in_window DESC, ood_max - ood_min DESC, id_low, ft) = 1
), full_model AS (  -- the full model's score on each subcase, per fine-tuned model
    SELECT s.experiment, r.finetune_fingerprint AS ft, s.eval_set, s.subcase, avg(s.value) AS full_value
    FROM steps AS s
    JOIN runs AS r USING (run_id)
    WHERE s.variant = 'pruned' AND s.step = 0 AND s.kind = 'ood' AND s.metric = 'accuracy'
    GROUP BY ALL
), judged AS (
    SELECT
        c.experiment, c.eval_set, c.subcase, w.id_metric, w.n_in_window, w.n_subnetworks, w.id_low, w.id_high,
        w.ood_min, w.ood_max, w.ood_max - w.ood_min AS spread, w.sparsity_min, w.sparsity_max, w.seeds,
        w.prune_seeds, f.full_value, w.n_examples,
        -- runs that logged no example count are judged by the thresholds alone
        coalesce(accuracy_range_noise(w.n_in_window, w.ood_mean, w.n_examples), 0) AS noise,
        coalesce(accuracy_range_noise(w.n_in_window, 0.5, w.n_examples), 0) AS noise_at_half,
        -- without subnetworks, the full model of any fine-tuned model the experiment pruned
        coalesce(f.full_value, (SELECT min(g.full_value) FROM full_model AS g
                                WHERE g.experiment = c.experiment AND g.eval_set = c.eval_set
                                  AND g.subcase = c.subcase)) AS full_any
    FROM subcases AS c
    LEFT JOIN widest AS w USING (experiment, eval_set, subcase)
    LEFT JOIN full_model AS f ON f.experiment = c.experiment AND f.ft = w.ft AND f.eval_set = c.eval_set
                              AND f.subcase = c.subcase
)
SELECT
    p.claim_no, p.study, p.claim, j.experiment, j.eval_set || ' · ' || j.subcase AS scope,
    CASE WHEN j.n_in_window IS NULL THEN 'no pruned subnetwork was scored on it; full model ' || f3(j.full_any)
         ELSE j.n_in_window || ' subnetworks within ID ' || j.id_metric || ' ' || f3(j.id_low) || '-' || f3(j.id_high)
             || ' ('
             || CASE WHEN j.sparsity_min = j.sparsity_max THEN pct(j.sparsity_min)
                     ELSE pct(j.sparsity_min) || '-' || pct(j.sparsity_max) END
             || ' sparse; of ' || j.n_subnetworks || ' scored): ' || j.subcase || ' accuracy '
             || f3(j.ood_min) || '-' || f3(j.ood_max) || coalesce(' on ' || j.n_examples || ' examples', '')
             || ', spread ' || f3(j.spread)
             || CASE WHEN j.n_examples IS NOT NULL THEN ' (sampling noise up to ' || f3(j.noise) || ')' ELSE '' END
             || '; full model ' || f3(j.full_value) END AS numbers,
    coalesce(j.n_in_window, 0) AS n,
    CASE WHEN j.seeds IS NOT NULL THEN seeds_text(j.seeds, j.prune_seeds) END AS seeds,
    CASE WHEN j.n_in_window >= p.min_in_window AND j.spread >= p.wide_spread AND j.spread > j.noise THEN 'holds'
         WHEN coalesce(j.full_value, j.full_any) < p.min_full_ood THEN 'not enough data'
         WHEN coalesce(j.n_in_window, 0) < p.min_in_window THEN 'not enough data'
         WHEN coalesce(j.full_value, j.full_any) IS NULL THEN 'not enough data'
         WHEN j.spread >= p.wide_spread OR j.noise_at_half >= p.wide_spread THEN 'not enough data'
         ELSE 'does not hold' END AS verdict,
    CASE WHEN j.n_in_window >= p.min_in_window AND j.spread >= p.wide_spread AND j.spread > j.noise THEN
             'an OOD spread of ' || f3(j.spread) || ' among ' || j.n_in_window || ' subnetworks within 1 point ID '
             || '(wide: >= ' || p.wide_spread || '; beyond the ' || f3(j.noise) || ' that sampling noise reaches)'
         WHEN coalesce(j.full_value, j.full_any) < p.min_full_ood THEN
             'the full model does not generalize on this subcase (' || f3(coalesce(j.full_value, j.full_any))
             || ' < ' || p.min_full_ood || '), so no subnetwork has any generalization left to lose'
         WHEN coalesce(j.n_in_window, 0) < p.min_in_window THEN
             CASE WHEN j.n_in_window IS NULL THEN 'no pruned subnetwork was scored on this subcase'
                  ELSE 'at most ' || j.n_in_window || ' subnetworks lie within 1 point of each other ID' END
             || '; a spread needs ' || p.min_in_window || ' (more pruning seeds at one sparsity: prune_seeds)'
         WHEN coalesce(j.full_value, j.full_any) IS NULL THEN 'no full-model score (step 0) on this subcase'
         WHEN j.spread >= p.wide_spread THEN
             'an OOD spread of ' || f3(j.spread) || ' among ' || j.n_in_window || ' subnetworks within 1 point ID is '
             || 'within sampling noise: equally accurate subnetworks on ' || j.n_examples || ' examples range up to '
             || f3(j.noise) || ' (95%); a larger OOD set decides it'
         WHEN j.noise_at_half >= p.wide_spread THEN
             'the widest OOD spread among ' || j.n_in_window || ' subnetworks within 1 point ID is ' || f3(j.spread)
             || ', but ' || j.n_examples || ' examples cannot tell a spread of ' || p.wide_spread || ' from sampling '
             || 'noise (up to ' || f3(j.noise_at_half) || ' at accuracy 0.5); a larger OOD set decides it'
         ELSE 'the widest OOD spread among ' || j.n_in_window || ' subnetworks within 1 point ID is ' || f3(j.spread)
             || ', below ' || p.wide_spread || ', while the full model scores ' || f3(j.full_value) END AS why,
    p.sql_file
FROM judged AS j
CROSS JOIN params AS p
UNION ALL
SELECT p.claim_no, p.study, p.claim, NULL, NULL, NULL, 0, NULL, 'not enough data',
       'no experiment was evaluated on an OOD set with non-entailment subcases (HANS, or the synthetic task''s '
       || 'hans_like): studies/heuristic-core.toml (hc-mnli) prunes one MNLI model with 12 pruning seeds',
       p.sql_file
FROM params AS p
WHERE NOT EXISTS (SELECT 1 FROM subcases)
ORDER BY experiment, scope
