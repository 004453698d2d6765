//! The configuration's tests: documented defaults, and errors that name what was wrong.

use super::*;

#[test]
fn the_documented_defaults_are_the_defaults() {
    assert_eq!(
        Config::parse(DEFAULT_TOML, "defaults").unwrap(),
        Config::default()
    );
    assert_eq!(Config::parse("", "empty").unwrap(), Config::default());
}

#[test]
fn unknown_keys_name_the_key_and_what_is_allowed() {
    let e = Config::parse("[shards]\ncpu_milicores = 5\n", "x.toml")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cpu_milicores") && e.contains("cpu_millicores"),
        "{e}"
    );
    let e = Config::parse("[gpu]\n", "x.toml").unwrap_err().to_string();
    assert!(e.contains("gpu") && e.contains("shards"), "{e}");
}

#[test]
fn bad_values_name_key_value_and_what_is_allowed() {
    let e = Config::parse("[shards]\niops = 0\n", "x.toml")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "x.toml: shards.iops = 0: a shard size must be at least 1"
    );
    let e = Config::parse("[ledger]\nreclaim_notice = \"5 minutes\"\n", "x.toml")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("reclaim_notice") && e.contains("5 minutes") && e.contains("90s"),
        "{e}"
    );
    for (text, key) in [
        ("[ledger]\nreclaim_notice = \"2d\"\n", "reclaim_notice"),
        (
            "[pricing]\nimmediate_premium = \"0\"\n",
            "immediate_premium",
        ),
    ] {
        let e = Config::parse(text, "x.toml").unwrap_err().to_string();
        assert!(e.contains(key) && e.contains("out of bounds"), "{e}");
    }
    for (text, key) in [
        ("[migrator]\nkind = \"command\"\n", "migrator.command"),
        ("[migrator]\nkind = \"qmp\"\n", "migrator.incoming"),
        ("[migrator]\nmax_duration = \"0s\"\n", "migrator.timeout"),
        ("[migrator]\nkind = \"ssh\"\n", "kind"),
    ] {
        let e = Config::parse(text, "x.toml").unwrap_err().to_string();
        assert!(e.contains(key), "{text}: {e}");
    }
    let e = Config::parse("[shards]\ncpu_millicores = -1\n", "x.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("cpu_millicores") && e.contains("-1"), "{e}");
    let e = Config::parse("[api]\nlisten = \"nowhere\"\n", "x.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("listen") && e.contains("nowhere"), "{e}");
    let e = Config::parse("[ledger]\nprovider_floor = { cpu = \"-1\" }\n", "x.toml")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("ledger.provider_floor") && e.contains("zero or more"),
        "{e}"
    );
    let e = Config::parse("[engine]\niops_devices = [\"8:0\", \"sda\"]\n", "x.toml")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("engine.iops_devices") && e.contains("\"sda\"") && e.contains("major:minor"),
        "{e}"
    );
    let e = Config::parse(
        "[engine]\nnet_interfaces = { \"vm-1\" = \"tap 0\" }\n",
        "x.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("engine.net_interfaces") && e.contains("tap 0"),
        "{e}"
    );
    let e = Config::parse(
        "[engine]\nqmp_sockets = { \"vm-1\" = \"vm-1.qmp\" }\n",
        "x.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("engine.qmp_sockets") && e.contains("vm-1.qmp") && e.contains("absolute"),
        "{e}"
    );
    let e = Config::parse("[pricing]\nlender_share = \"1.5\"\n", "x.toml")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "x.toml: pricing.lender_share = \"1.5\": a share between 0 and 1"
    );
    let e = Config::parse(
        "[pricing]\nduration_tiers = [{ from = \"1d\", factor = \"0.9\" }]\n",
        "x.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("pricing") && e.contains("duration tiers"), "{e}");
    let e = Config::parse("[market]\nkink = \"0\"\n", "x.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("market.kink"), "{e}");
    let e = Config::parse("[host]\nname = \" \"\n", "x.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("host.name"), "{e}");
}
