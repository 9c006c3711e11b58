-- The Heuristic Core's headline figure for one experiment ($experiment): among subnetworks whose ID scores
-- lie within 1 point (0.01) of each other, how far apart their OOD scores are. For each OOD set and
-- subcase, every subnetwork (pruned step > 0, as in id_vs_ood.sql) opens a window [its ID, its ID + 0.01];
-- the row is the window with the widest OOD spread (ties: the lowest ID), with how many subnetworks it
-- holds. n_subnetworks counts all subnetworks scored on the set.
-- $experiment NULL (as the report runs it): every experiment at once, each apart, its name in the last column.
WITH pts AS (
    SELECT s.experiment, s.run_id, s.step, s.eval_set, s.kind, s.subcase, s.metric, s.value
    FROM primary_steps AS s
    WHERE ($experiment IS NULL OR s.experiment = $experiment) AND s.variant = 'pruned' AND s.step > 0
), pairs AS (
    SELECT o.experiment, o.eval_set, o.subcase, o.metric, i.value AS id_value, o.value AS ood_value
    FROM pts AS o
    JOIN pts AS i USING (run_id, step)
    WHERE i.kind = 'id' AND i.subcase = 'all' AND o.kind = 'ood'
), windows AS (
    SELECT
        experiment, eval_set, subcase, metric, id_value AS id_low,
        max(id_value)  OVER w AS id_high,
        count(*)       OVER w AS n_in_window,
        min(ood_value) OVER w AS ood_min,
        max(ood_value) OVER w AS ood_max,
        count(*) OVER (PARTITION BY experiment, eval_set, subcase) AS n_subnetworks
    FROM pairs
    WINDOW w AS (PARTITION BY experiment, eval_set, subcase ORDER BY id_value
                 RANGE BETWEEN CURRENT ROW AND 0.010000001 FOLLOWING)  -- 1 point, float-safe
)
SELECT eval_set, subcase, metric, id_low, id_high, n_in_window, n_subnetworks, ood_min, ood_max,
       ood_max - ood_min AS ood_spread, experiment
FROM windows
QUALIFY row_number() OVER (PARTITION BY experiment, eval_set, subcase ORDER BY ood_max - ood_min DESC, id_low, id_high) = 1
ORDER BY experiment, eval_set, subcase <> 'all', subcase
