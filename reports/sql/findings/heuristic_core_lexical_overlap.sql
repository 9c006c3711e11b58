-- Finding 5, "The Heuristic Core": the full model adopts the lexical-overlap heuristic: on HANS, its accuracy on
-- lexical-overlap entailment is far above its accuracy on lexical-overlap non-entailment.
-- One row per experiment and OOD set with lexical-overlap subcases (<heuristic>/<label> named lexical_overlap, or
-- HANS fine-grained le_/ln_ ones), by accuracy (a subcase's only metric): the full model (step 0) per fine-tuned
-- model, its entailment and non-entailment scores (weighted by examples where a label has several subcases), then
-- the mean over fine-tuned models.
-- Sampling noise: two equally accurate labels' accuracies on their examples (n_ent and n_non per fine-tuned model)
-- differ by more than difference_noise (_macros.sql) in 5% of evaluations.
-- holds: entailment - non-entailment >= far_above, and beyond the noise; does not hold: a smaller gap, on sets large
-- enough to tell a gap of far_above from noise at any accuracy (0.5);
-- not enough data: one of the two labels (or the full model) was not scored, or the sets are too small for the gap.
WITH params AS (
    SELECT
        0.20 AS far_above,   -- "far above": entailment at least 20 points above non-entailment
        '(^|/)(lexical_overlap|l[en]_)' AS lexical_overlap,           -- a lexical-overlap subcase's name
        '(^|/)(non|not)[_-]entailment($|/)|(^|/)[lsc]n_' AS non_entailment,
        '(^|/)entailment($|/)|(^|/)[lsc]e_' AS entailment,
        5    AS claim_no,
        'The Heuristic Core (Bhaskar et al. 2024)' AS study,
        'The full model adopts the lexical-overlap heuristic: HANS entailment far above non-entailment.' AS claim,
        'reports/sql/findings/heuristic_core_lexical_overlap.sql' AS sql_file
), sets AS (  -- what the claim is checked on: OOD sets with lexical-overlap subcases
    SELECT DISTINCT s.experiment, s.eval_set
    FROM steps AS s, params AS p
    WHERE s.kind = 'ood' AND regexp_matches(s.subcase, p.lexical_overlap)
), per_subcase AS (  -- the full model (step 0) of each fine-tuned model on each subcase: the runs that prune one
    -- fine-tuned model logged the same step 0, so their mean, over the subcase's examples (counted once)
    SELECT s.experiment, s.eval_set, r.finetune_fingerprint AS ft, s.subcase, min(r.seed) AS seed,
           any_value(s.metric) AS metric, avg(s.value) AS value, max(s.n) AS n
    FROM steps AS s
    JOIN runs AS r USING (run_id)
    JOIN sets AS c ON c.experiment = s.experiment AND c.eval_set = s.eval_set
    CROSS JOIN params AS p
    WHERE s.variant = 'pruned' AND s.step = 0 AND s.metric = 'accuracy' AND regexp_matches(s.subcase, p.lexical_overlap)
    GROUP BY s.experiment, s.eval_set, r.finetune_fingerprint, s.subcase
), per_model AS (
    SELECT
        s.experiment, s.eval_set, s.ft, min(s.seed) AS seed, any_value(s.metric) AS metric,
        sum(s.value * coalesce(s.n, 1)) FILTER (WHERE regexp_matches(s.subcase, p.entailment))
            / sum(coalesce(s.n, 1)) FILTER (WHERE regexp_matches(s.subcase, p.entailment))      AS ent,
        sum(s.value * coalesce(s.n, 1)) FILTER (WHERE regexp_matches(s.subcase, p.non_entailment))
            / sum(coalesce(s.n, 1)) FILTER (WHERE regexp_matches(s.subcase, p.non_entailment))  AS non_ent,
        count(DISTINCT s.subcase)                                                    AS n_subcases,
        sum(s.n) FILTER (WHERE regexp_matches(s.subcase, p.entailment))              AS n_ent,
        sum(s.n) FILTER (WHERE regexp_matches(s.subcase, p.non_entailment))          AS n_non
    FROM per_subcase AS s
    CROSS JOIN params AS p
    GROUP BY s.experiment, s.eval_set, s.ft
), per_set AS (
    SELECT experiment, eval_set, any_value(metric) AS metric, count(*) AS n_models,
           avg(ent) AS ent, stddev_samp(ent) AS sd_ent, avg(non_ent) AS non_ent, stddev_samp(non_ent) AS sd_non_ent,
           avg(ent - non_ent) AS gap, list(seed) AS seeds, max(n_subcases) AS n_subcases,
           min(n_ent) AS n_ent, min(n_non) AS n_non  -- one model's examples: the mean over models is no noisier
    FROM per_model
    GROUP BY experiment, eval_set
), judged AS (
    SELECT c.experiment, c.eval_set, m.*,
           -- runs that logged no example count are judged by the threshold alone
           coalesce(difference_noise(m.ent, m.n_ent, m.non_ent, m.n_non), 0) AS noise,
           coalesce(difference_noise(0.5, m.n_ent, 0.5, m.n_non), 0) AS noise_at_half
    FROM sets AS c
    LEFT JOIN per_set AS m USING (experiment, eval_set)
)
SELECT
    p.claim_no, p.study, p.claim, j.experiment, j.eval_set AS scope,
    CASE WHEN j.n_models IS NULL THEN 'the full model (step 0) was not scored on it'
         ELSE 'full model, ' || j.eval_set || ' lexical overlap (' || j.metric || '): entailment '
             || pm(j.ent, j.sd_ent)
             || ', non-entailment ' || pm(j.non_ent, j.sd_non_ent) || ', gap ' || f3(j.gap) || ' (n=' || j.n_models
             || ' fine-tuned model' || CASE WHEN j.n_models = 1 THEN '' ELSE 's' END
             || CASE WHEN j.n_ent IS NOT NULL AND j.n_non IS NOT NULL THEN '; sampling noise up to ' || f3(j.noise)
                     || ' on ' || j.n_ent || ' and ' || j.n_non || ' examples' ELSE '' END || ')' END AS numbers,
    coalesce(j.n_models, 0) AS n,
    CASE WHEN j.seeds IS NOT NULL THEN seeds_text(j.seeds, j.seeds) END AS seeds,
    CASE WHEN j.gap >= p.far_above AND j.gap > j.noise THEN 'holds'
         WHEN j.gap < p.far_above AND j.noise_at_half < p.far_above THEN 'does not hold'
         ELSE 'not enough data' END AS verdict,
    CASE WHEN j.gap >= p.far_above AND j.gap > j.noise THEN 'entailment is ' || f3(j.gap)
             || ' above non-entailment (far: >= ' || p.far_above || '; beyond the ' || f3(j.noise)
             || ' that sampling noise reaches)'
         WHEN j.gap < p.far_above AND j.noise_at_half < p.far_above THEN 'entailment is only ' || f3(j.gap)
             || ' above non-entailment (far: >= ' || p.far_above
             || '): the full model does not follow the lexical-overlap heuristic here'
         WHEN j.gap >= p.far_above THEN 'a gap of ' || f3(j.gap) || ' is within sampling noise: equally accurate '
             || 'labels on ' || j.n_ent || ' and ' || j.n_non || ' examples differ by up to ' || f3(j.noise)
             || ' (95%); a larger OOD set decides it'
         WHEN j.gap IS NOT NULL THEN 'a gap of ' || f3(j.gap) || ', but ' || j.n_ent || ' and ' || j.n_non
             || ' examples cannot tell a gap of ' || p.far_above || ' from sampling noise (up to '
             || f3(j.noise_at_half) || ' at accuracy 0.5); a larger OOD set decides it'
         WHEN j.n_models IS NULL THEN 'no full-model score (step 0) on the lexical-overlap subcases'
         WHEN j.ent IS NULL THEN 'no lexical-overlap entailment subcase was scored'
         ELSE 'no lexical-overlap non-entailment subcase was scored' END AS why,
    p.sql_file
FROM judged AS j
CROSS JOIN params AS p
UNION ALL
SELECT p.claim_no, p.study, p.claim, NULL, NULL, NULL, 0, NULL, 'not enough data',
       'no experiment was evaluated on an OOD set with lexical-overlap subcases (HANS, or the synthetic task''s '
       || 'hans_like): an MNLI experiment of studies/heuristic-core.toml or the demo in experiments.toml',
       p.sql_file
FROM params AS p
WHERE NOT EXISTS (SELECT 1 FROM sets)
ORDER BY experiment, scope
