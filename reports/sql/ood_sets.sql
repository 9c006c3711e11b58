-- The out-of-domain evaluation sets logged for one experiment ($experiment).
SELECT DISTINCT eval_set
FROM steps
WHERE experiment = $experiment AND kind = 'ood'
ORDER BY eval_set
