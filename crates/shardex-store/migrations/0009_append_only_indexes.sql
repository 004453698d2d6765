-- Indexes that every write appends to rather than scatters over: a batch of modifications
-- from many tenants dirtied a page of each per-payer and per-account index per row (about
-- 24 KB of WAL per modification under load), and no query used them: an invoice reads the
-- charges ending in its period (filtered by tenant there), the journal sums every posting.
DROP INDEX charges_by_payer;
DROP INDEX charges_by_lender;
DROP INDEX postings_by_account;
CREATE INDEX charges_by_end ON charges (to_ms);
