-- Finding 6, "The Heuristic Core": the smallest subnetworks (at the effective size) share a core of attention heads
-- kept by every pruning seed.
-- Checked on every experiment that logged head masks, per fine-tuned model: for each pruning seed, its smallest
-- subnetwork whose ID score holds under the run's keep rule (the largest holding sparsity, as the effective_size
-- view picks it; ties: the smaller x, then the better score) with its head mask. The core: heads every one of
-- those masks keeps. Random masks of the same sizes (k_i of n heads) would all share n x prod(k_i / n) heads; the
-- mean pairwise Jaccard of the masks is shown against that of random masks of the same sizes (unit_overlap.sql).
-- holds: core >= min_core_heads and core >= core_over_random x the random expectation; does not hold: otherwise;
-- not enough data: fewer than min_prune_seeds pruning seeds of one fine-tuned model have such a subnetwork.
WITH params AS (
    SELECT
        3   AS min_prune_seeds,  -- a core "kept by every pruning seed" needs at least this many seeds
        1   AS min_core_heads,   -- a core holds at least this many heads
        2.0 AS core_over_random, -- and at least this many times what random masks of the same sizes would share
        6   AS claim_no,
        'The Heuristic Core (Bhaskar et al. 2024)' AS study,
        'The smallest subnetworks (at the effective size) share a core of heads kept by every pruning seed.' AS claim,
        'reports/sql/findings/heuristic_core_shared_core.sql' AS sql_file
), fits AS (
    SELECT DISTINCT experiment FROM units WHERE variant = 'pruned' AND unit_kind = 'head'
), head_steps AS (
    SELECT DISTINCT run_id, step FROM units WHERE variant = 'pruned' AND unit_kind = 'head'
), full_id AS (
    SELECT run_id, avg(value) AS full_value
    FROM primary_steps
    WHERE variant = 'pruned' AND step = 0 AND kind = 'id' AND subcase = 'all'
    GROUP BY run_id
), holding AS (
    SELECT r.experiment, r.finetune_fingerprint AS ft, r.seed, r.prune_seed, s.run_id, s.step, s.x, s.sparsity,
           s.unit_sparsity, s.value
    FROM primary_steps AS s
    JOIN runs AS r USING (run_id)
    JOIN full_id AS f USING (run_id)
    JOIN head_steps AS h USING (run_id, step)
    WHERE s.variant = 'pruned' AND s.step > 0 AND s.kind = 'id' AND s.subcase = 'all'
      AND s.value >= keep_line(r.keep_rule, r.keep_threshold, f.full_value)
), smallest AS (  -- per fine-tuned model and pruning seed
    SELECT experiment, ft, prune_seed, min(seed) AS seed,
           arg_max(run_id, [sparsity, -coalesce(x, 0), value]) AS run_id,
           arg_max(step, [sparsity, -coalesce(x, 0), value])   AS step,
           max(sparsity)                                       AS sparsity,
           arg_max(unit_sparsity, [sparsity, -coalesce(x, 0), value]) AS unit_sparsity
    FROM holding
    GROUP BY experiment, ft, prune_seed
), masks AS (
    SELECT m.experiment, m.ft, m.prune_seed, u.layer, u.unit_index, bool_or(u.kept) AS kept
    FROM units AS u
    JOIN smallest AS m USING (run_id, step)
    WHERE u.variant = 'pruned' AND u.unit_kind = 'head'
    GROUP BY ALL
), sizes AS (
    SELECT experiment, ft, prune_seed, count(*) AS n_heads, count(*) FILTER (WHERE kept) AS k
    FROM masks
    GROUP BY ALL
), model_groups AS (
    SELECT z.experiment, z.ft, count(*) AS n_masks, max(z.n_heads) AS n_heads, min(z.k) AS k_min, max(z.k) AS k_max,
           CASE WHEN min(z.k) = 0 THEN 0.0 ELSE max(z.n_heads) * exp(sum(ln(z.k / z.n_heads))) END AS random_core,
           list(m.seed) AS seeds, list(z.prune_seed) AS prune_seeds,
           min(m.unit_sparsity) AS units_min, max(m.unit_sparsity) AS units_max
    FROM sizes AS z
    JOIN smallest AS m USING (experiment, ft, prune_seed)
    GROUP BY z.experiment, z.ft
), core AS (
    SELECT h.experiment, h.ft,
           count(*) FILTER (WHERE h.n_kept = g.n_masks) AS core,
           string_agg('L' || h.layer || 'H' || h.unit_index, ' ' ORDER BY h.layer, h.unit_index)
               FILTER (WHERE h.n_kept = g.n_masks) AS core_heads
    FROM (SELECT experiment, ft, layer, unit_index, count(*) FILTER (WHERE kept) AS n_kept
          FROM masks GROUP BY ALL) AS h
    JOIN model_groups AS g USING (experiment, ft)
    GROUP BY h.experiment, h.ft
), pairs AS (  -- every two pruning seeds' masks of one fine-tuned model
    SELECT a.experiment, a.ft,
           count(*) FILTER (WHERE a.kept AND b.kept) AS shared,
           any_value(sa.k) AS ka, any_value(sb.k) AS kb, any_value(sa.n_heads) AS n
    FROM masks AS a
    JOIN masks AS b ON b.experiment = a.experiment AND b.ft = a.ft AND b.layer = a.layer
                   AND b.unit_index = a.unit_index AND a.prune_seed < b.prune_seed
    JOIN sizes AS sa ON sa.experiment = a.experiment AND sa.ft = a.ft AND sa.prune_seed = a.prune_seed
    JOIN sizes AS sb ON sb.experiment = b.experiment AND sb.ft = b.ft AND sb.prune_seed = b.prune_seed
    GROUP BY a.experiment, a.ft, a.prune_seed, b.prune_seed
), overlap AS (
    SELECT experiment, ft,
           avg(shared / nullif(ka + kb - shared, 0)) AS jaccard,
           avg((ka * kb / n) / nullif(ka + kb - ka * kb / n, 0)) AS random_jaccard
    FROM pairs
    GROUP BY experiment, ft
), judged AS (
    SELECT f.experiment, g.*, c.core, c.core_heads, o.jaccard, o.random_jaccard,
           -- the fine-tuned models with enough pruning seeds; or, where none has, the one with the most
           g.n_masks >= p.min_prune_seeds
               OR (g.ft IS NOT NULL AND NOT bool_or(g.n_masks >= p.min_prune_seeds)
                   OVER (PARTITION BY f.experiment)
                   AND row_number() OVER (PARTITION BY f.experiment ORDER BY g.n_masks DESC, g.seeds) = 1)
               OR g.ft IS NULL AS shown
    FROM fits AS f
    CROSS JOIN params AS p
    LEFT JOIN model_groups AS g USING (experiment)
    LEFT JOIN core AS c USING (experiment, ft)
    LEFT JOIN overlap AS o USING (experiment, ft)
)
SELECT
    p.claim_no, p.study, p.claim, j.experiment,
    CASE WHEN j.ft IS NOT NULL THEN 'fine-tuned model seed ' || array_to_string(list_distinct(j.seeds), ', ') END
        AS scope,
    CASE WHEN j.ft IS NULL THEN 'no subnetwork with a head mask kept the ID score (keep rule)'
         ELSE j.n_masks || CASE WHEN j.n_masks = 1 THEN ' smallest holding subnetwork (one pruning seed; '
                                ELSE ' smallest holding subnetworks, one per pruning seed (' END
             || CASE WHEN j.units_min = j.units_max THEN pct(j.units_min)
                     ELSE pct(j.units_min) || '-' || pct(j.units_max) END
             || ' of units removed; ' || j.k_min
             || CASE WHEN j.k_min = j.k_max THEN '' ELSE '-' || j.k_max END || ' of ' || j.n_heads
             || ' heads kept): ' || j.core || ' heads kept by all'
             || CASE WHEN j.core > 0 THEN ' (' || j.core_heads || ')' ELSE '' END
             || ' vs ' || printf('%.2f', j.random_core) || ' expected of random masks of the same sizes'
             || CASE WHEN j.jaccard IS NULL THEN ''
                     ELSE '; mean pairwise Jaccard ' || f3(j.jaccard) || ' vs ' || f3(j.random_jaccard) || ' random'
                END END AS numbers,
    coalesce(j.n_masks, 0) AS n,
    CASE WHEN j.ft IS NOT NULL THEN seeds_text(j.seeds, j.prune_seeds) END AS seeds,
    CASE WHEN coalesce(j.n_masks, 0) < p.min_prune_seeds THEN 'not enough data'
         WHEN j.core >= p.min_core_heads AND j.core >= p.core_over_random * j.random_core THEN 'holds'
         ELSE 'does not hold' END AS verdict,
    CASE WHEN j.ft IS NULL THEN 'no subnetwork with a head mask holds the ID score under its keep rule'
         WHEN j.n_masks < p.min_prune_seeds THEN 'at most ' || j.n_masks || ' pruning seed'
             || CASE WHEN j.n_masks = 1 THEN '' ELSE 's' END || ' of one fine-tuned model reached a holding '
             || 'subnetwork; a core kept by every seed needs ' || p.min_prune_seeds || ' (declare prune_seeds)'
         WHEN j.core >= p.min_core_heads AND j.core >= p.core_over_random * j.random_core THEN
             'a core of ' || j.core || ' heads, >= ' || p.core_over_random || ' x the ' || printf('%.2f', j.random_core)
             || ' random masks of the same sizes would share'
         WHEN j.core < p.min_core_heads THEN 'no head is kept by every pruning seed'
         ELSE 'the ' || j.core || ' heads kept by every pruning seed are fewer than ' || p.core_over_random || ' x the '
             || printf('%.2f', j.random_core) || ' random masks of the same sizes would share' END AS why,
    p.sql_file
FROM judged AS j
CROSS JOIN params AS p
WHERE j.shown
UNION ALL
SELECT p.claim_no, p.study, p.claim, NULL, NULL, NULL, 0, NULL, 'not enough data',
       'no experiment logged head masks: structured pruning (l0 or importance) with several pruning seeds of one '
       || 'fine-tuned model decides it (studies/heuristic-core.toml, hc-mnli-effective-size)',
       p.sql_file
FROM params AS p
WHERE NOT EXISTS (SELECT 1 FROM fits)
ORDER BY experiment, scope
