-- The effective size of one experiment ($experiment), per method, how it was found, seed, pruning seed
-- and evaluation set: the rows of the effective_size view (see reports/sql/effective_size.sql).
SELECT *
FROM effective_size
WHERE experiment = $experiment
ORDER BY method, found_by, seed, prune_seed, kind, eval_set
