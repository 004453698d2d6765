-- The double-entry journal: one balanced transaction per charge, written in the same
-- transaction as the charge. Debits are positive, credits negative; every `seq` sums to zero.
CREATE TABLE postings (
    seq        INTEGER NOT NULL REFERENCES actions (seq),
    idx        INTEGER NOT NULL,                -- the charge's idx
    pidx       INTEGER NOT NULL,                -- posting within the charge's transaction
    account    TEXT NOT NULL,                   -- "provider" or "tenant:<id>"
    amount     TEXT NOT NULL,                   -- exact decimal
    PRIMARY KEY (seq, idx, pidx)
) STRICT;

CREATE INDEX postings_by_account ON postings (account);
