-- One row per run, naming the seed group it belongs to.
-- Runs of one experiment whose resolved configs differ only in "seed" keys are one configuration;
-- the report's means and min/max bands are taken over the runs (seeds) of such a group.
-- group_label is the method, plus a short config hash when one method has several configurations.
WITH keyed AS (
    SELECT
        experiment,
        run_id,
        fingerprint,
        seed,
        method,
        md5(regexp_replace(coalesce(config_json, run_id),
                           '"seed"\s*:\s*-?[0-9]+', '"seed": null', 'g')) AS group_key
    FROM runs
)
SELECT
    *,
    method || CASE
        WHEN count(DISTINCT group_key) OVER (PARTITION BY experiment, method) > 1
        THEN ' [' || left(group_key, 6) || ']'
        ELSE ''
    END AS group_label
FROM keyed
