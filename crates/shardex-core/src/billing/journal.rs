//! The double-entry journal: every charge one balanced transaction.

use super::*;

/// An account of the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Account {
    /// A tenant: positive balance = it owes.
    Tenant(TenantId),
    /// The provider (the operator of the hosts).
    Provider,
}

/// One side of a transaction: debit when positive, credit when negative.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posting {
    /// The account.
    pub account: Account,
    /// Debit (+) or credit (−).
    pub amount: Decimal,
}

/// A balanced set of postings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    /// When.
    pub at: Timestamp,
    /// What for.
    pub memo: String,
    /// Its postings; they sum to zero.
    pub postings: Vec<Posting>,
}

/// The double-entry journal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    transactions: Vec<Transaction>,
    balances: BTreeMap<Account, Decimal>,
}

impl Journal {
    /// An empty journal.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a transaction; refused (and nothing recorded) unless its postings sum to zero.
    pub fn post(&mut self, t: Transaction) -> Result<(), BillingError> {
        let imbalance: Decimal = t.postings.iter().map(|p| p.amount).sum();
        if !imbalance.is_zero() {
            return Err(BillingError::Unbalanced {
                memo: t.memo,
                imbalance,
            });
        }
        for p in &t.postings {
            *self.balances.entry(p.account).or_default() += p.amount;
        }
        self.transactions.push(t);
        Ok(())
    }

    /// Posts one charge: debit the payer, credit the lender its share and the provider the rest.
    pub fn post_charge(&mut self, c: &Charge, lender_share: Decimal) -> Result<(), BillingError> {
        self.post(charge_transaction(c, lender_share)?)
    }

    /// Balance of an account.
    pub fn balance(&self, account: Account) -> Decimal {
        self.balances.get(&account).copied().unwrap_or_default()
    }

    /// Σ of every balance; zero in a sound journal.
    pub fn trial_balance(&self) -> Decimal {
        self.balances.values().sum()
    }

    /// Every transaction, oldest first.
    pub fn transactions(&self) -> &[Transaction] {
        &self.transactions
    }
}

/// The transaction of one charge: debit the payer, credit the lender its share (rounded like
/// every amount) and the provider the rest, so it balances exactly.
pub fn charge_transaction(c: &Charge, lender_share: Decimal) -> Result<Transaction, BillingError> {
    if lender_share < Decimal::ZERO || lender_share > Decimal::ONE {
        return Err(BillingError::BadShare(lender_share));
    }
    let mut postings = vec![Posting {
        account: Account::Tenant(c.payer),
        amount: c.amount,
    }];
    let to_lender = match c.lender {
        Some(lender) => {
            let share = round_amount(c.amount * lender_share);
            postings.push(Posting {
                account: Account::Tenant(lender),
                amount: -share,
            });
            share
        }
        None => Decimal::ZERO,
    };
    postings.push(Posting {
        account: Account::Provider,
        amount: -(c.amount - to_lender),
    });
    Ok(Transaction {
        at: c.to,
        memo: format!("{} {} {}", c.subject, c.kind, c.tier),
        postings,
    })
}
