//! What `shardex run` guarantees about its data folder: one daemon at a time (a second refuses,
//! naming the first's pid), a busy port fails the start before anything is created, and the
//! ledger's files are private whatever the folder's mode.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use common::{BIN, get, interrupt_and_wait, start};

#[test]
fn one_daemon_per_data_folder_and_its_files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (child, addr) = start(&data);
    for f in ["ledger.db", "admin.token", "run.lock"] {
        let mode = std::fs::metadata(data.join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{f} has mode {mode:o}");
    }
    let second = Command::new(BIN)
        .args(["run", "--data"])
        .arg(&data)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("in use by another shardex run") && err.contains(&child.id().to_string()),
        "{err}"
    );
    // The first is unharmed.
    let (s, _) = get(&addr, "/v1/health", None);
    assert_eq!(s, 200);
    interrupt_and_wait(child);
}

#[test]
fn a_busy_port_fails_the_start_before_anything_is_created() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = Command::new(BIN)
        .args(["run", "--data"])
        .arg(&data)
        .args(["--listen", &port])
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("could not listen on"), "{err}");
    assert!(!data.join("ledger.db").exists(), "nothing is created");
}
