//! The `command` provisioner: runs a configured executable with the request as JSON on stdin
//! and reads the new host as JSON on stdout, within a timeout. The hook to any cloud API.

use std::path::PathBuf;
use std::time::Duration;

use shardex_core::Span;
use shardex_core::ports::{NewHost, ProvisionError, ProvisionRequest, Provisioner};

/// Runs `program args...` per request.
#[derive(Debug, Clone)]
pub struct CommandProvisioner {
    /// The executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// How long it may take before it is killed and the request fails.
    pub timeout: Duration,
}

impl Provisioner for CommandProvisioner {
    fn provision(&mut self, request: &ProvisionRequest) -> Result<NewHost, ProvisionError> {
        let input = serde_json::to_vec(request)
            .map_err(|e| ProvisionError::Failed(format!("could not encode the request: {e}")))?;
        let stdout = crate::hook::run(&self.program, &self.args, &input, self.timeout).map_err(
            |e| match e {
                crate::hook::HookError::TimedOut { timeout, .. } => ProvisionError::TimedOut(
                    Span::from_millis(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX)),
                ),
                other => ProvisionError::Failed(other.to_string()),
            },
        )?;
        let host: NewHost = serde_json::from_str(&stdout)
            .map_err(|e| ProvisionError::BadAnswer(format!("{e} in {stdout:?}")))?;
        if host.capacity.is_zero() {
            return Err(ProvisionError::BadAnswer(format!(
                "host {} has no capacity",
                host.name
            )));
        }
        if !request.needs.fits_in(&host.capacity) {
            return Err(ProvisionError::BadAnswer(format!(
                "host {} has {} shards but {} were asked for",
                host.name, host.capacity, request.needs
            )));
        }
        Ok(host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardex_core::{HostId, ShardVector};
    use std::os::unix::fs::PermissionsExt;
    use std::time::Instant;

    fn script(dir: &std::path::Path, name: &str, body: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn request() -> ProvisionRequest {
        ProvisionRequest {
            reason: "host 1 is short".into(),
            short_host: HostId(1),
            needs: ShardVector::new(100, 0, 0, 0),
        }
    }

    fn provisioner(program: PathBuf, timeout_ms: u64) -> CommandProvisioner {
        CommandProvisioner {
            program,
            args: Vec::new(),
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    #[test]
    fn a_command_gets_the_request_on_stdin_and_answers_a_host() {
        let dir = tempfile::tempdir().unwrap();
        let seen = dir.path().join("seen.json");
        let p = script(
            dir.path(),
            "ok",
            &format!(
                "cat > {}\necho '{{\"name\": \"cloud-7\", \"capacity\": {{\"cpu\": 6400, \"memory\": 32768}}}}'",
                seen.display()
            ),
        );
        let host = provisioner(p, 10_000).provision(&request()).unwrap();
        assert_eq!(host.name, "cloud-7");
        assert_eq!(host.capacity, ShardVector::new(6400, 32768, 0, 0));
        let got: ProvisionRequest =
            serde_json::from_str(&std::fs::read_to_string(seen).unwrap()).unwrap();
        assert_eq!(got, request());
    }

    #[test]
    fn a_failing_command_fails_with_its_exit_status_and_message() {
        let dir = tempfile::tempdir().unwrap();
        let p = script(dir.path(), "fail", "echo 'quota exceeded' >&2\nexit 3");
        let e = provisioner(p, 10_000).provision(&request()).unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, ProvisionError::Failed(_)), "{text}");
        assert!(
            text.contains("quota exceeded") && text.contains('3'),
            "{text}"
        );
    }

    #[test]
    fn a_slow_command_is_killed_at_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let p = script(dir.path(), "slow", "sleep 30");
        let started = Instant::now();
        let e = provisioner(p, 200).provision(&request()).unwrap_err();
        assert_eq!(e, ProvisionError::TimedOut(Span::from_millis(200)));
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "it was not killed"
        );
    }

    #[test]
    fn an_answer_that_is_not_a_big_enough_host_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = script(dir.path(), "garbage", "echo 'created!'");
        assert!(matches!(
            provisioner(p, 10_000).provision(&request()),
            Err(ProvisionError::BadAnswer(_))
        ));
        let p = script(
            dir.path(),
            "small",
            "echo '{\"name\": \"tiny\", \"capacity\": {\"cpu\": 10}}'",
        );
        let e = provisioner(p, 10_000).provision(&request()).unwrap_err();
        assert!(e.to_string().contains("100"), "{e}");
        let e = provisioner(dir.path().join("missing"), 1000)
            .provision(&request())
            .unwrap_err();
        assert!(e.to_string().contains("could not run"), "{e}");
    }
}
