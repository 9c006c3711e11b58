-- Finding 7, pruning + CKA: as sparsity grows, early layers keep their CKA with the full model longer than late
-- layers, so the CKA diagonal (each layer against the same layer of the pruned model) at the kept step falls with
-- depth.
-- Checked on every experiment that logged CKA, per CKA setting (representation, pooling, estimator): at each
-- run's kept step (variant pruned, step > 0), the diagonal per encoder layer (layer >= first_layer: the embeddings,
-- layer 0, are never pruned), degenerate values left out, averaged over runs; then Spearman's rank correlation
-- between layer and CKA (ties share their mean rank).
-- holds: rho <= max_rho (CKA falls with depth); does not hold: rho > max_rho;
-- not enough data: no kept step past the full model, fewer than min_layers layers, or a flat diagonal (every
-- layer the same CKA: pruning at the kept step has not told the layers apart).
WITH params AS (
    SELECT
        1    AS first_layer, -- layer 0 is the embeddings, which pruning leaves alone
        3    AS min_layers,  -- a trend with depth needs at least this many layers
        -0.5 AS max_rho,     -- "falls with depth": Spearman's rho(layer, CKA) at most this
        7    AS claim_no,
        'Pruning + CKA (magnitude and attribution pruning of BERT)' AS study,
        'As sparsity grows, early layers keep their CKA with the full model longer than late layers: the CKA '
            || 'diagonal at the kept step falls with depth.' AS claim,
        'reports/sql/findings/cka_early_layers.sql' AS sql_file
), settings AS (  -- what the claim is checked on: each experiment and CKA setting
    SELECT DISTINCT experiment, representation, pooling, estimator FROM cka
), kept AS (
    SELECT DISTINCT run_id, step FROM steps WHERE variant = 'pruned' AND selected AND step > 0
), per_run AS (
    SELECT c.experiment, c.representation, c.pooling, c.estimator, c.layer_base AS layer, c.run_id, r.seed,
           r.prune_seed, avg(c.sparsity) AS sparsity, avg(c.value) AS cka
    FROM cka AS c
    JOIN kept USING (run_id, step)
    JOIN runs AS r USING (run_id)
    CROSS JOIN params AS p
    WHERE c.variant = 'pruned' AND c.layer_base = c.layer_pruned AND c.layer_base >= p.first_layer
      AND NOT coalesce(c.degenerate, false)
    GROUP BY ALL
), per_layer AS (
    SELECT experiment, representation, pooling, estimator, layer, avg(cka) AS cka, avg(sparsity) AS sparsity,
           count(*) AS n_runs
    FROM per_run
    GROUP BY ALL
), ranked AS (
    SELECT *,
           (rank() OVER s_up + count(*) OVER s + 1 - rank() OVER s_down) / 2.0 AS cka_rank
    FROM per_layer
    WINDOW s AS (PARTITION BY experiment, representation, pooling, estimator),
           s_up AS (PARTITION BY experiment, representation, pooling, estimator ORDER BY cka),
           s_down AS (PARTITION BY experiment, representation, pooling, estimator ORDER BY cka DESC)
), trend AS (
    SELECT experiment, representation, pooling, estimator,
           count(*)                                                   AS n_layers,
           CASE WHEN max(cka) > min(cka) THEN corr(layer, cka_rank) END AS rho,
           max(cka) - min(cka)                                        AS cka_range,
           min(cka)                                                   AS cka_min,
           avg(sparsity)                                              AS sparsity,
           string_agg('L' || layer || ' ' || f3(cka), ', ' ORDER BY layer) AS diagonal
    FROM ranked
    GROUP BY ALL
), runs_used AS (
    SELECT experiment, representation, pooling, estimator, count(DISTINCT run_id) AS n_runs,
           list(DISTINCT seed) AS seeds, list(DISTINCT prune_seed) AS prune_seeds
    FROM per_run
    GROUP BY ALL
), judged AS (
    SELECT c.*, t.n_layers, t.rho, t.cka_range, t.cka_min, t.sparsity, t.diagonal, u.n_runs, u.seeds, u.prune_seeds
    FROM settings AS c
    LEFT JOIN trend AS t USING (experiment, representation, pooling, estimator)
    LEFT JOIN runs_used AS u USING (experiment, representation, pooling, estimator)
)
SELECT
    p.claim_no, p.study, p.claim, j.experiment,
    j.representation || ', ' || j.pooling || ', ' || j.estimator AS scope,
    CASE WHEN j.n_layers IS NULL THEN 'no CKA at a kept step past the full model'
         ELSE 'CKA diagonal at the kept step (' || pct(j.sparsity) || ' sparse; mean over ' || j.n_runs || ' run'
             || CASE WHEN j.n_runs = 1 THEN '' ELSE 's' END || '), by layer ' || j.diagonal
             || CASE WHEN j.rho IS NULL THEN '' ELSE '; Spearman rho(layer, CKA) = ' || printf('%.2f', j.rho) END
    END AS numbers,
    coalesce(j.n_runs, 0) AS n,
    CASE WHEN j.seeds IS NOT NULL THEN seeds_text(j.seeds, j.prune_seeds) END AS seeds,
    CASE WHEN j.n_layers IS NULL OR j.n_layers < p.min_layers OR j.rho IS NULL THEN 'not enough data'
         WHEN j.rho <= p.max_rho THEN 'holds'
         ELSE 'does not hold' END AS verdict,
    CASE WHEN j.n_layers IS NULL THEN 'no run kept a pruned step (step > 0) with CKA logged'
         WHEN j.n_layers < p.min_layers THEN 'only ' || j.n_layers || ' encoder layer'
             || CASE WHEN j.n_layers = 1 THEN '' ELSE 's' END || ' compared; a trend with depth needs '
             || p.min_layers
         WHEN j.rho IS NULL THEN 'the diagonal is flat (every layer ' || f3(j.cka_min)
             || '): pruning at the kept step has not told the layers apart'
         WHEN j.rho <= p.max_rho THEN 'CKA falls with depth: rho ' || printf('%.2f', j.rho) || ' <= ' || p.max_rho
         ELSE 'CKA does not fall with depth: rho ' || printf('%.2f', j.rho) || ' > ' || p.max_rho
             || ' (later layers keep as much CKA as earlier ones, or more)' END AS why,
    p.sql_file
FROM judged AS j
CROSS JOIN params AS p
UNION ALL
SELECT p.claim_no, p.study, p.claim, NULL, NULL, NULL, 0, NULL, 'not enough data',
       'no experiment logged CKA: declare [experiment.cka] (studies/pruning-cka.toml compares every layer at every '
       || 'pruning step)',
       p.sql_file
FROM params AS p
WHERE NOT EXISTS (SELECT 1 FROM settings)
ORDER BY experiment, scope
