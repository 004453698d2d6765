-- Metered charges, written in the same transaction as the action that closed their interval:
-- what the ledger held between the previous action and that one, priced.
CREATE TABLE charges (
    seq        INTEGER NOT NULL REFERENCES actions (seq),
    idx        INTEGER NOT NULL,
    from_ms    INTEGER NOT NULL,
    to_ms      INTEGER NOT NULL,
    payer      INTEGER NOT NULL,
    lender     INTEGER,
    charge     TEXT NOT NULL,               -- JSON of shardex_core::billing::Charge
    amount     TEXT NOT NULL,               -- exact decimal, also inside `charge`
    PRIMARY KEY (seq, idx)
) STRICT;

CREATE INDEX charges_by_payer ON charges (payer, to_ms);
CREATE INDEX charges_by_lender ON charges (lender, to_ms);
