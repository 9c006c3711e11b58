-- Text helpers the findings (reports/sql/findings/*.sql) use to write their `numbers` and `why` columns, defined
-- on every warehouse connection (as the keep rule's keep_line is), so each findings file also runs on its own
-- with `subnets query --file`.
CREATE OR REPLACE MACRO f3(x) AS coalesce(printf('%.3f', x), 'n/a');
CREATE OR REPLACE MACRO pct(x) AS coalesce(printf('%.1f%%', 100 * x), 'n/a');
-- a mean with its sample SD over seeds (none for one value)
CREATE OR REPLACE MACRO pm(mean, sd) AS f3(mean) || CASE WHEN sd IS NULL THEN '' ELSE ' ± ' || f3(sd) END;
-- the fine-tuning seeds, and the pruning seeds where they differ: "seeds 0, 1, 2" or "seed 0; pruning seeds 42, 43"
CREATE OR REPLACE MACRO seeds_text(seeds, prune_seeds) AS
    CASE WHEN len(list_distinct(seeds)) = 1 THEN 'seed ' ELSE 'seeds ' END
    || array_to_string(list_sort(list_distinct(seeds)), ', ')
    || CASE WHEN list_sort(list_distinct(prune_seeds)) = list_sort(list_distinct(seeds)) THEN ''
            ELSE CASE WHEN len(list_distinct(prune_seeds)) = 1 THEN '; pruning seed ' ELSE '; pruning seeds ' END
                 || array_to_string(list_sort(list_distinct(prune_seeds)), ', ') END;
