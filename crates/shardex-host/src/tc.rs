//! The tc actuator: a workload's network allocation as a token-bucket (`tbf`) root qdisc on the
//! interface its traffic leaves by, replaced live with `tc qdisc replace` and read back with
//! `tc -j qdisc show`. Which interface is configuration (`engine.net_interfaces`): for a VM,
//! its tap device, where host egress is the VM's inbound traffic.

use std::collections::BTreeMap;
use std::process::Command;

use shardex_core::ResourceKind;
use shardex_core::domain::WorkloadId;
use shardex_core::ports::{Actuator, ActuatorError};
use shardex_core::shard::PhysicalVector;

/// The least rate written: a tbf rate of 0 is invalid, and no rate would mean no shaping.
const MIN_RATE_BPS: u64 = 8_000;
/// Queueing the bucket allows before dropping, as tbf's `latency`.
const LATENCY_MS: u64 = 50;

/// Shapes each mapped workload's interface to its network allocation.
#[derive(Debug, Clone)]
pub struct TcActuator {
    interfaces: BTreeMap<String, String>,
    tc: String,
}

fn error(workload: WorkloadId, reason: impl Into<String>) -> ActuatorError {
    ActuatorError {
        workload,
        reason: reason.into(),
    }
}

/// Whether `name` can be an interface name (what the kernel takes: 1–15 bytes, no `/`, no
/// whitespace); anything else is refused before `tc` sees it.
pub fn valid_interface(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 16
        && !name.contains('/')
        && !name.chars().any(char::is_whitespace)
        && name != "."
        && name != ".."
}

impl TcActuator {
    /// Shapes the interfaces of these workloads (workload name → interface), with `tc` from
    /// the `PATH`.
    pub fn new(interfaces: BTreeMap<String, String>) -> Self {
        Self {
            interfaces,
            tc: "tc".into(),
        }
    }

    fn run(&self, workload: WorkloadId, args: &[&str]) -> Result<String, ActuatorError> {
        let out = Command::new(&self.tc).args(args).output().map_err(|e| {
            error(
                workload,
                format!("running {} {}: {e}", self.tc, args.join(" ")),
            )
        })?;
        if !out.status.success() {
            return Err(error(
                workload,
                format!(
                    "{} {} failed ({}): {}",
                    self.tc,
                    args.join(" "),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The rate of the root tbf qdisc on `dev`, in bits per second (`None`: no tbf there).
    fn read_rate(&self, workload: WorkloadId, dev: &str) -> Result<Option<u64>, ActuatorError> {
        let text = self.run(workload, &["-j", "qdisc", "show", "dev", dev, "root"])?;
        let qdiscs: serde_json::Value = serde_json::from_str(text.trim()).map_err(|e| {
            error(
                workload,
                format!("tc printed something that is not JSON ({e}): {text:?}"),
            )
        })?;
        Ok(qdiscs.as_array().and_then(|list| {
            list.iter()
                .find(|q| q["kind"] == "tbf" && q["root"] == true)
                // tc reports the rate in bytes per second.
                .and_then(|q| q["options"]["rate"].as_u64())
                .map(|bytes| bytes.saturating_mul(8))
        }))
    }
}

impl Actuator for TcActuator {
    fn apply(
        &mut self,
        workload: WorkloadId,
        name: &str,
        allocation: PhysicalVector,
    ) -> Result<PhysicalVector, ActuatorError> {
        let dev = self
            .interfaces
            .get(name)
            .ok_or_else(|| error(workload, format!("no interface is configured for {name:?}")))?
            .clone();
        if !valid_interface(&dev) {
            return Err(error(workload, format!("{dev:?} is not an interface name")));
        }
        let rate = allocation.get(ResourceKind::Net).max(MIN_RATE_BPS);
        // The bucket holds 10 ms at the rate, and never less than a jumbo frame, so a packet
        // always fits.
        let burst = (rate / 8 / 100).max(9_216);
        let rate_arg = format!("{rate}bit");
        let burst_arg = format!("{burst}b");
        let latency_arg = format!("{LATENCY_MS}ms");
        self.run(
            workload,
            &[
                "qdisc",
                "replace",
                "dev",
                &dev,
                "root",
                "tbf",
                "rate",
                &rate_arg,
                "burst",
                &burst_arg,
                "latency",
                &latency_arg,
            ],
        )?;
        let in_force = self.read_rate(workload, &dev)?.unwrap_or(0);
        Ok(PhysicalVector([0, 0, in_force, 0]))
    }

    fn manages(&self, name: &str, kind: ResourceKind) -> bool {
        kind == ResourceKind::Net && self.interfaces.contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: WorkloadId = WorkloadId(3);

    fn net(bps: u64) -> PhysicalVector {
        PhysicalVector([100, 1 << 20, bps, 10])
    }

    #[test]
    fn only_mapped_workloads_and_only_net_are_managed_and_bad_names_are_refused() {
        let map = BTreeMap::from([
            ("vm-1".to_string(), "tap0".to_string()),
            ("vm-2".to_string(), "bad name".to_string()),
        ]);
        let mut a = TcActuator::new(map);
        assert!(a.manages("vm-1", ResourceKind::Net));
        assert!(!a.manages("vm-1", ResourceKind::Cpu));
        assert!(!a.manages("vm-3", ResourceKind::Net));
        let e = a.apply(W, "vm-3", net(1_000_000)).unwrap_err();
        assert!(e.reason.contains("no interface"), "{e}");
        let e = a.apply(W, "vm-2", net(1_000_000)).unwrap_err();
        assert!(e.reason.contains("not an interface name"), "{e}");
        assert!(!valid_interface("a/b") && !valid_interface("") && !valid_interface(".."));
        assert!(!valid_interface("sixteen-chars-xx") && valid_interface("tap0"));
    }

    #[test]
    fn a_missing_tc_binary_is_named_in_the_error() {
        let mut a = TcActuator::new(BTreeMap::from([("vm".into(), "tap0".into())]));
        a.tc = "/nonexistent/tc".into();
        let e = a.apply(W, "vm", net(1_000_000)).unwrap_err();
        assert!(e.reason.contains("/nonexistent/tc"), "{e}");
    }

    /// A veth pair made for a test, deleted when dropped.
    struct Veth(String);

    impl Drop for Veth {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["link", "del", &self.0]).status();
        }
    }

    #[test]
    fn this_machine_s_tc_shapes_a_real_interface_and_reads_it_back() {
        // The real kernel and tc, on a veth pair made for the test where the machine lets us
        // (root, iproute2); elsewhere the test says why it did nothing.
        let dev = format!("shx{}", std::process::id() % 100_000);
        let made = Command::new("ip")
            .args(["link", "add", &dev, "type", "veth", "peer", "name"])
            .arg(format!("{dev}p"))
            .output();
        match made {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                eprintln!(
                    "skipped: can't make a veth pair: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                return;
            }
            Err(e) => {
                eprintln!("skipped: no ip command: {e}");
                return;
            }
        }
        let _guard = Veth(dev.clone());
        let mut a = TcActuator::new(BTreeMap::from([("vm".into(), dev.clone())]));
        let in_force = a.apply(W, "vm", net(8_000_000)).unwrap();
        assert_eq!(in_force, PhysicalVector([0, 0, 8_000_000, 0]));
        // Replaced live, not added beside the old one.
        let in_force = a.apply(W, "vm", net(3_000_000)).unwrap();
        assert_eq!(in_force.get(ResourceKind::Net), 3_000_000);
        assert_eq!(a.read_rate(W, &dev).unwrap(), Some(3_000_000));
        // No net shards: the least rate, not an unshaped link.
        let in_force = a.apply(W, "vm", net(0)).unwrap();
        assert_eq!(in_force.get(ResourceKind::Net), MIN_RATE_BPS);
    }
}
