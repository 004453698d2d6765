//! shardex-agent: the control loop as a library, driven live by `shardex run` and from a
//! trace by `shardex simulate`.
//!
//! * [`profiler`]: per-workload, per-kind forecasters and the engine's demands; censored
//!   samples and OOM kills.
//! * [`agent`]: the loop's steps (sample, raise censored workloads at once, decide, actuate),
//!   each a function of the ledger, the ports and a time.
//! * [`reconcile`]: what is in force converges to the ledger: apply, read back, repair drift,
//!   retry with backoff, degrade.
//! * [`targets`]: what each workload's (and reservation group's) limits should be, read off
//!   the ledger; all the reconciler needs.

pub mod agent;
pub mod profiler;
pub mod reconcile;
pub mod targets;

pub use agent::{Agent, AgentParams, Decided, Oom, Sampled};
pub use profiler::{Factory, Profiler};
pub use reconcile::{Actuation, Outcome, ReconcileParams, Reconciler, Status, Subject};
pub use targets::{GroupTarget, HeldLease, Targets, WorkloadTarget};
