//! One daemon per data folder: `shardex run` holds an exclusive lock on `run.lock` in the data
//! folder (its pid inside) for as long as it runs, and a second one refuses to start, naming
//! the first's pid, before it touches anything. The kernel drops the lock when the process
//! ends, however it ends.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, bail};
use rustix::fs::{FlockOperation, flock};
use rustix::io::Errno;

/// The lock, held while this value lives.
pub struct DataLock {
    _file: File,
}

/// Takes the data folder's lock, or says who holds it.
pub fn acquire(data: &Path) -> anyhow::Result<DataLock> {
    let path = data.join("run.lock");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("could not open {}", path.display()))?;
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(Errno::WOULDBLOCK) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            bail!(
                "{} is in use by another shardex run (pid {}); stop it first, or give another --data",
                data.display(),
                pid.trim()
            );
        }
        Err(e) => return Err(e).with_context(|| format!("could not lock {}", path.display())),
    }
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{}", std::process::id())?;
    file.sync_all()?;
    Ok(DataLock { _file: file })
}
