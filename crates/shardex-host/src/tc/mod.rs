//! The tc actuator: a workload's network allocation as a token-bucket (`tbf`) root qdisc on the
//! interface its traffic leaves by, replaced live with `tc qdisc replace` and read back with
//! `tc -j qdisc show`. Which interface is configuration (`engine.net_interfaces`): for a VM,
//! its tap device, where host egress is the VM's inbound traffic.

use std::collections::BTreeMap;
use std::process::Command;

use shardex_core::ResourceKind;
use shardex_core::domain::WorkloadId;
use shardex_core::ports::{Actuator, Applied, KindState, Kinds, Limits};

mod error;

pub use error::TcError;

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

/// The root tbf qdisc's packets dropped and times over its rate on `dev` (cumulative; `None`
/// when there is no tbf there): a sample taken while they rise is censored.
pub fn tbf_pressure(dev: &str) -> Option<(u64, u64)> {
    let out = Command::new("tc")
        .args(["-s", "-j", "qdisc", "show", "dev", dev, "root"])
        .output()
        .ok()?;
    let qdiscs: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let q = qdiscs.as_array()?.iter().find(|q| q["kind"] == "tbf")?;
    Some((q["drops"].as_u64()?, q["overlimits"].as_u64()?))
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

    fn run(&self, args: &[&str]) -> Result<String, TcError> {
        let command = || format!("{} {}", self.tc, args.join(" "));
        let out = Command::new(&self.tc)
            .args(args)
            .output()
            .map_err(|source| TcError::Spawn {
                command: command(),
                source,
            })?;
        if !out.status.success() {
            return Err(TcError::Failed {
                command: command(),
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The rate of the root tbf qdisc on `dev`, in bits per second (`None`: no tbf there).
    fn read_rate(&self, dev: &str) -> Result<Option<u64>, TcError> {
        let text = self.run(&["-j", "qdisc", "show", "dev", dev, "root"])?;
        let qdiscs: serde_json::Value =
            serde_json::from_str(text.trim()).map_err(|source| TcError::NotJson {
                text: text.clone(),
                source,
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

impl TcActuator {
    /// The interface of a mapped workload, checked.
    fn device(&self, name: &str) -> Result<String, TcError> {
        let dev = self
            .interfaces
            .get(name)
            .ok_or_else(|| TcError::NotMapped(name.to_string()))?;
        if !valid_interface(dev) {
            return Err(TcError::BadInterface(dev.clone()));
        }
        Ok(dev.clone())
    }

    fn shape(&self, dev: &str, rate: u64) -> Result<Option<u64>, TcError> {
        // The bucket holds 10 ms at the rate, and never less than a jumbo frame, so a packet
        // always fits.
        let burst = (rate / 8 / 100).max(9_216);
        let rate_arg = format!("{rate}bit");
        let burst_arg = format!("{burst}b");
        let latency_arg = format!("{LATENCY_MS}ms");
        self.run(&[
            "qdisc",
            "replace",
            "dev",
            dev,
            "root",
            "tbf",
            "rate",
            &rate_arg,
            "burst",
            &burst_arg,
            "latency",
            &latency_arg,
        ])?;
        self.read_rate(dev)
    }

    /// The root qdisc's packets dropped and times over its limit (cumulative; `None` when
    /// shardex's tbf is not there): a sample taken while they rise is censored.
    pub fn pressure(&self, name: &str) -> Option<(u64, u64)> {
        let dev = self.device(name).ok()?;
        let text = self
            .run(&["-s", "-j", "qdisc", "show", "dev", &dev, "root"])
            .ok()?;
        let qdiscs: serde_json::Value = serde_json::from_str(text.trim()).ok()?;
        let q = qdiscs.as_array()?.iter().find(|q| q["kind"] == "tbf")?;
        Some((q["drops"].as_u64()?, q["overlimits"].as_u64()?))
    }

    fn one(
        &self,
        name: &str,
        kinds: Kinds,
        f: impl FnOnce(&str) -> Result<Option<u64>, TcError>,
    ) -> Applied {
        let mut out = Applied::default();
        if kinds[ResourceKind::Net.index()] && self.manages(name, ResourceKind::Net) {
            let state = match self.device(name).and_then(|dev| f(&dev)) {
                Ok(v) => KindState::InForce(v),
                Err(e) => KindState::Failed(e.into()),
            };
            out.set(ResourceKind::Net, state);
        }
        out
    }
}

impl Actuator for TcActuator {
    fn apply(&mut self, _: WorkloadId, name: &str, limits: &Limits, kinds: Kinds) -> Applied {
        // No net entitlement: the least rate, not an unshaped link.
        let rate = limits
            .hard(ResourceKind::Net)
            .unwrap_or(u64::MAX)
            .max(MIN_RATE_BPS);
        self.one(name, kinds, |dev| self.shape(dev, rate))
    }

    fn read(&mut self, _: WorkloadId, name: &str, kinds: Kinds) -> Applied {
        self.one(name, kinds, |dev| self.read_rate(dev))
    }

    fn clear(&mut self, _: WorkloadId, name: &str, kinds: Kinds) -> Applied {
        self.one(name, kinds, |dev| {
            // Only shardex's own tbf is removed; another root qdisc is left alone.
            if self.read_rate(dev)?.is_some() {
                self.run(&["qdisc", "del", "dev", dev, "root"])?;
            }
            self.read_rate(dev)
        })
    }

    fn manages(&self, name: &str, kind: ResourceKind) -> bool {
        kind == ResourceKind::Net && self.interfaces.contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardex_core::ports::ALL_KINDS;

    const W: WorkloadId = WorkloadId(3);

    fn net(bps: u64) -> Limits {
        Limits {
            hard: [Some(100), Some(1 << 20), Some(bps), Some(10)],
            soft: [0; 4],
        }
    }

    fn why(a: Applied) -> String {
        match a.get(ResourceKind::Net) {
            KindState::Failed(e) => e.to_string(),
            other => panic!("not a failure: {other:?}"),
        }
    }

    fn rate(a: Applied) -> Option<u64> {
        a.in_force(ResourceKind::Net).expect("read back")
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
        // An unmapped workload is not managed, so nothing is done or reported for it.
        assert_eq!(
            a.apply(W, "vm-3", &net(1_000_000), ALL_KINDS),
            Applied::default()
        );
        let e = why(a.apply(W, "vm-2", &net(1_000_000), ALL_KINDS));
        assert!(e.contains("not an interface name"), "{e}");
        assert!(!valid_interface("a/b") && !valid_interface("") && !valid_interface(".."));
        assert!(!valid_interface("sixteen-chars-xx") && valid_interface("tap0"));
    }

    #[test]
    fn a_missing_tc_binary_is_named_in_the_error() {
        let mut a = TcActuator::new(BTreeMap::from([("vm".into(), "tap0".into())]));
        a.tc = "/nonexistent/tc".into();
        let e = why(a.apply(W, "vm", &net(1_000_000), ALL_KINDS));
        assert!(e.contains("/nonexistent/tc"), "{e}");
    }

    /// A veth pair made for a test, deleted when dropped.
    struct Veth(String);

    impl Drop for Veth {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["link", "del", &self.0]).status();
        }
    }

    #[test]
    #[ignore = "needs root and iproute2 (a veth pair); CI runs it with --include-ignored"]
    fn this_machine_s_tc_shapes_a_real_interface_and_reads_it_back() {
        // The real kernel and tc, on a veth pair made for the test.
        let dev = format!("shx{}", std::process::id() % 100_000);
        let made = Command::new("ip")
            .args(["link", "add", &dev, "type", "veth", "peer", "name"])
            .arg(format!("{dev}p"))
            .output();
        match made {
            Ok(out) if out.status.success() => {}
            Ok(out) => panic!(
                "can't make a veth pair: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => panic!("no ip command: {e}"),
        }
        let _guard = Veth(dev.clone());
        let mut a = TcActuator::new(BTreeMap::from([("vm".into(), dev.clone())]));
        let got = a.apply(W, "vm", &net(8_000_000), ALL_KINDS);
        assert_eq!(rate(got.clone()), Some(8_000_000));
        assert_eq!(got.get(ResourceKind::Cpu), &KindState::Unmanaged);
        // Replaced live, not added beside the old one.
        assert_eq!(
            rate(a.apply(W, "vm", &net(3_000_000), ALL_KINDS)),
            Some(3_000_000)
        );
        assert_eq!(rate(a.read(W, "vm", ALL_KINDS)), Some(3_000_000));
        assert!(
            a.pressure("vm").is_some(),
            "the tbf's drops and overlimits are read"
        );
        // No net shards: the least rate, not an unshaped link.
        assert_eq!(
            rate(a.apply(W, "vm", &net(0), ALL_KINDS)),
            Some(MIN_RATE_BPS)
        );
        // Unbinding takes the shaping off.
        assert_eq!(rate(a.clear(W, "vm", ALL_KINDS)), None);
        assert_eq!(a.read_rate(&dev).unwrap(), None);
    }
}
