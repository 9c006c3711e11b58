-- The steps rows each run is judged by: its task's primary metric (runs.primary_metric, e.g. accuracy,
-- mcc, f1, pearson; accuracy for runs logged before the column existed). A view: every figure reads
-- steps through it, so a task judged by MCC is plotted by MCC, and `metric` names what a value is.
SELECT s.*
FROM steps AS s
JOIN runs AS r USING (run_id)
WHERE s.metric = coalesce(r.primary_metric, 'accuracy')
