//! Running an operator's executable as a hook (the command provisioner, the command
//! migrator): its input as JSON on stdin, its answer on stdout, within a timeout, killed when
//! it runs over; both pipes drained on threads so a chatty child never blocks.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Why a hook gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    /// It could not be started.
    #[error("could not run {}: {reason}", .program.display())]
    Spawn {
        /// The executable.
        program: PathBuf,
        /// What the system said.
        reason: String,
    },
    /// It ran past its timeout and was killed.
    #[error("{} took longer than {timeout:?} and was killed", .program.display())]
    TimedOut {
        /// The executable.
        program: PathBuf,
        /// Its timeout.
        timeout: Duration,
    },
    /// It exited with a failure.
    #[error("{} exited with {status}{}", .program.display(), if .stderr.is_empty() { String::new() } else { format!(": {}", .stderr) })]
    Failed {
        /// The executable.
        program: PathBuf,
        /// Its exit status.
        status: String,
        /// What it said on stderr, trimmed.
        stderr: String,
    },
    /// Waiting for it failed.
    #[error("waiting for {}: {reason}", .program.display())]
    Wait {
        /// The executable.
        program: PathBuf,
        /// What the system said.
        reason: String,
    },
}

/// Runs `program args…` with `input` on stdin; its stdout, trimmed, when it exits with
/// success within `timeout`.
pub fn run(
    program: &Path,
    args: &[String],
    input: &[u8],
    timeout: Duration,
) -> Result<String, HookError> {
    let spawn = || {
        Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    };
    // A just-written executable can be briefly "busy" while another thread's fork still holds
    // it open for writing (ETXTBSY): retry a little before giving up.
    let mut tries = 0;
    let mut child = loop {
        match spawn() {
            Ok(c) => break c,
            Err(e) if e.raw_os_error() == Some(26) && tries < 50 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                return Err(HookError::Spawn {
                    program: program.to_path_buf(),
                    reason: e.to_string(),
                });
            }
        }
    };
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut s);
            }
            s
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    if let Some(mut stdin) = child.stdin.take() {
        // A program that doesn't read its input is its own business.
        let _ = stdin.write_all(input);
    }
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HookError::TimedOut {
                    program: program.to_path_buf(),
                    timeout,
                });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => {
                return Err(HookError::Wait {
                    program: program.to_path_buf(),
                    reason: e.to_string(),
                });
            }
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    if !status.success() {
        return Err(HookError::Failed {
            program: program.to_path_buf(),
            status: status.to_string(),
            stderr: stderr.trim().to_string(),
        });
    }
    Ok(stdout.trim().to_string())
}
