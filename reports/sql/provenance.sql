-- Where each run of one experiment ($experiment) came from: its config, fingerprints, git SHA, device,
-- package versions (the run's MLflow tags subnets.version.*, in the run_tags view) and data digest.
-- $experiment NULL (as the report runs it): every experiment at once, each apart, its name in the last column.
SELECT
    g.run_label,
    r.run_id,
    r.fingerprint,
    r.group_id,
    r.finetune_fingerprint,
    r.git_sha,
    r.device,
    r.torch_threads,
    r.started_at::TIMESTAMP AS started_at,  -- in UTC
    r.duration_s,
    r.data_digest,
    (SELECT string_agg(substr(t.key, length('subnets.version.') + 1) || ' ' || t.value, ', ' ORDER BY t.key)
     FROM run_tags AS t
     WHERE t.run_id = r.run_id AND t.key LIKE 'subnets.version.%') AS versions,
    r.config_json,
    r.experiment
FROM runs AS r
JOIN run_groups AS g USING (run_id)
WHERE $experiment IS NULL OR r.experiment = $experiment
ORDER BY r.experiment, g.group_label, r.seed, r.prune_seed, g.run_label, r.run_id
