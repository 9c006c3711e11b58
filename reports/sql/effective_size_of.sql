-- The effective size of one experiment ($experiment), per method, how it was found, seed, pruning seed
-- and evaluation set: the rows of the effective_size view (see reports/sql/effective_size.sql).
-- $experiment NULL (as the report runs it): every experiment at once.
SELECT *
FROM effective_size
WHERE $experiment IS NULL OR experiment = $experiment
ORDER BY experiment, method, found_by, seed, prune_seed, kind, eval_set, found_in, keep_rule, keep_threshold
