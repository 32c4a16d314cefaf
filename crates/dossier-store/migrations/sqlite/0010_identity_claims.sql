-- Which records assert each email and phone (a contact record by its external id, a session
-- by its own), so that an identity no record asserts any more stops resolving: a customer
-- whose email changed at the source is no longer found by the old one.
CREATE TABLE identity_claims (
    workspace TEXT NOT NULL, claimant TEXT NOT NULL, kind TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (workspace, claimant, kind, value)) WITHOUT ROWID;
CREATE INDEX identity_claims_identity ON identity_claims (workspace, kind, value);
-- claimed: 1 for identities stored since claims are recorded. Older ones may be asserted by
-- records no sync has read again since: they are never retired for want of a claim.
ALTER TABLE identities ADD COLUMN claimed SMALLINT NOT NULL DEFAULT 0;
-- retired: 1 while no record asserts it. It still ties the contacts it tied (identities only
-- ever tie, so contacts do not depend on the order records arrive in), but no lookup finds it.
ALTER TABLE identities ADD COLUMN retired SMALLINT NOT NULL DEFAULT 0;
