-- A segment filter on a custom value or an aggregate is an EXISTS probe of one candidate
-- contact's row, by the primary key (contact_id, key) or (contact_id, name). SQLite plans
-- every filter shape that way (`SqlStore::count_plan`): it never scans these value indexes,
-- and for text equality it probes `contact_data_key_txt` only where the primary key serves
-- as well. Yet every value a sync writes updated all three, and an incremental sync rewrote
-- their pages when a value moved. PostgreSQL keeps them: its planner can drive a semi-join
-- from them.
DROP INDEX contact_data_key_num;
DROP INDEX contact_data_key_txt;
DROP INDEX contact_aggregates_name_num;
