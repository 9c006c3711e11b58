-- Pairwise overlap of the good subnetworks of one experiment ($experiment) (as in unit_survival.sql: each
-- run's kept step), per unit kind: the units both keep, the Jaccard index |A and B| / |A or B|, and what
-- two random masks of the same sizes would share (expected shared units k_a k_b / n; the Jaccard of those
-- expected counts). The last columns summarise every pair of the unit kind: the mean Jaccard, the mean
-- random Jaccard and how many pairs overlap more than random masks would.
-- $experiment NULL (as the report runs it): every experiment at once, each apart, its name in the last column.
WITH good AS (
    SELECT DISTINCT run_id, step
    FROM steps
    WHERE ($experiment IS NULL OR experiment = $experiment) AND selected AND variant = 'pruned' AND passed AND step > 0
), masks AS (
    SELECT u.experiment, u.run_id, u.unit_kind, u.layer, u.unit_index, bool_or(u.kept) AS kept
    FROM units AS u
    JOIN good USING (run_id, step)
    WHERE u.variant = 'pruned'
    GROUP BY ALL
), sizes AS (
    SELECT experiment, run_id, unit_kind, count(*) AS n_units, count(*) FILTER (WHERE kept) AS n_kept
    FROM masks
    GROUP BY ALL
), shared AS (
    SELECT a.run_id AS run_a, b.run_id AS run_b, a.unit_kind, count(*) AS shared
    FROM masks AS a
    JOIN masks AS b USING (experiment, unit_kind, layer, unit_index)
    WHERE a.run_id < b.run_id AND a.kept AND b.kept
    GROUP BY ALL
), pairs AS (
    SELECT
        sa.experiment,
        sa.unit_kind,
        sa.run_id AS run_a,
        sb.run_id AS run_b,
        sa.n_units,
        sa.n_kept AS kept_a,
        sb.n_kept AS kept_b,
        coalesce(sh.shared, 0) AS shared,
        coalesce(sh.shared, 0) / nullif(sa.n_kept + sb.n_kept - coalesce(sh.shared, 0), 0) AS jaccard,
        (sa.n_kept * sb.n_kept / sa.n_units)
            / nullif(sa.n_kept + sb.n_kept - sa.n_kept * sb.n_kept / sa.n_units, 0) AS random_jaccard
    FROM sizes AS sa
    JOIN sizes AS sb ON sb.experiment = sa.experiment AND sb.unit_kind = sa.unit_kind AND sa.run_id < sb.run_id AND sb.n_units = sa.n_units
    LEFT JOIN shared AS sh ON sh.run_a = sa.run_id AND sh.run_b = sb.run_id AND sh.unit_kind = sa.unit_kind
)
SELECT
    p.unit_kind,
    ga.run_label AS subnetwork_a,
    gb.run_label AS subnetwork_b,
    p.n_units, p.kept_a, p.kept_b, p.shared, p.jaccard, p.random_jaccard,
    avg(p.jaccard) OVER k                            AS mean_jaccard,
    avg(p.random_jaccard) OVER k                     AS mean_random_jaccard,
    count(*) FILTER (WHERE p.jaccard > p.random_jaccard) OVER k AS pairs_above_random,
    count(*) OVER k                                  AS n_pairs,
    p.experiment
FROM pairs AS p
JOIN run_groups AS ga ON ga.run_id = p.run_a
JOIN run_groups AS gb ON gb.run_id = p.run_b
WINDOW k AS (PARTITION BY p.experiment, p.unit_kind)
ORDER BY p.experiment, p.unit_kind, ga.run_label, gb.run_label, p.run_a, p.run_b
