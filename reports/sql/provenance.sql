-- Where each run of one experiment ($experiment) came from: its config, fingerprints, git SHA, device, the machine
-- its duration was measured on (run_machines view), package versions (the run's recorded versions, in the
-- run_versions view) and data digest.
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
    (SELECT m.machine FROM run_machines AS m WHERE m.run_id = r.run_id) AS machine,
    r.data_digest,
    (SELECT string_agg(v.package || ' ' || v.version, ', ' ORDER BY v.package)
     FROM run_versions AS v
     WHERE v.run_id = r.run_id) AS versions,
    r.config_json,
    r.experiment
FROM runs AS r
JOIN run_groups AS g USING (run_id)
WHERE $experiment IS NULL OR r.experiment = $experiment
ORDER BY r.experiment, g.group_label, r.seed, r.prune_seed, g.run_label, r.run_id
