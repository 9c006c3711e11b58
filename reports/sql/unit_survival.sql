-- Unit survival in the good subnetworks of one experiment ($experiment): every run's kept step (variant
-- pruned, selected, passing its keep rule), across seeds and methods. Per layer and unit (each head, the
-- MLP), the fraction of those subnetworks that keep it; super_survivors = 1 for a unit every one of them
-- keeps. Neurons are summarised per layer (unit_index NULL): units = neurons in the layer, kept_fraction
-- = mean over neurons, super_survivors = neurons every subnetwork keeps.
-- $experiment NULL (as the report runs it): every experiment at once, each apart, its name in the last column.
WITH good AS (
    SELECT DISTINCT run_id, step, sparsity
    FROM steps
    WHERE ($experiment IS NULL OR experiment = $experiment) AND selected AND variant = 'pruned' AND passed AND step > 0
), kept AS (
    SELECT u.experiment, u.layer, u.unit_kind, u.unit_index, u.run_id, bool_or(u.kept) AS kept, any_value(g.sparsity) AS sparsity
    FROM units AS u
    JOIN good AS g USING (run_id, step)
    WHERE u.variant = 'pruned'
    GROUP BY u.experiment, u.layer, u.unit_kind, u.unit_index, u.run_id
), per_unit AS (
    SELECT experiment, layer, unit_kind, unit_index,
           count(*)                         AS n_subnetworks,
           avg(kept::DOUBLE)                AS kept_fraction,
           bool_and(kept)                   AS every_one_keeps,
           avg(sparsity)                    AS mean_sparsity
    FROM kept
    GROUP BY ALL
)
SELECT layer, unit_kind, unit_index, 1 AS units, n_subnetworks, kept_fraction,
       every_one_keeps::BIGINT AS super_survivors, mean_sparsity, experiment
FROM per_unit
WHERE unit_kind <> 'neuron'
UNION ALL
SELECT layer, unit_kind, NULL, count(*), max(n_subnetworks), avg(kept_fraction),
       count(*) FILTER (WHERE every_one_keeps), avg(mean_sparsity), experiment
FROM per_unit
WHERE unit_kind = 'neuron'
GROUP BY experiment, layer, unit_kind
ORDER BY experiment, layer, unit_kind, unit_index
