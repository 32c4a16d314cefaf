-- Dashboards order contacts by an aggregate ("top 20 by total spent"): the head of such an
-- ordering is read from this index (`SqlStore::contacts_ordered`), a few entries instead of
-- every contact. 0009 dropped it because filters never used it; ordering does. It costs a
-- sync one index entry per aggregate value written (BENCHMARKS.md, "Dashboards").
CREATE INDEX contact_aggregates_name_num ON contact_aggregates (name, num);
