//! One QMP session: the greeting checked, capabilities negotiated, commands executed with
//! QEMU's errors mapped to [`QmpError`], asynchronous events skipped.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use serde_json::{Value, json};

use super::QmpError;

/// How long one QMP exchange may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// How long a refused connection is tried again (QEMU busy with the client before).
const BUSY: Duration = Duration::from_secs(1);

/// One QMP session, capabilities negotiated.
pub(super) struct Session {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Session {
    pub(super) fn open(path: &std::path::Path) -> Result<Self, QmpError> {
        let connect = |source| QmpError::Connect {
            path: path.to_path_buf(),
            source,
        };
        // QEMU serves one QMP client at a time and queues few: right after the previous
        // session (ours or another tool's) the next connect can be refused until QEMU has
        // seen that one close. Refused a second long, it is down.
        let started = std::time::Instant::now();
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e)
                    if e.kind() == std::io::ErrorKind::ConnectionRefused
                        && started.elapsed() < BUSY =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(connect(e)),
            }
        };
        stream
            .set_read_timeout(Some(TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
            .map_err(connect)?;
        let writer = stream.try_clone().map_err(connect)?;
        let mut session = Self {
            reader: BufReader::new(stream),
            writer,
        };
        let greeting = session.message()?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::NotQmp {
                path: path.display().to_string(),
                greeting,
            });
        }
        session.execute("qmp_capabilities", None)?;
        Ok(session)
    }

    /// The next message that is not an asynchronous event.
    fn message(&mut self) -> Result<Value, QmpError> {
        loop {
            let mut line = String::new();
            let n = self
                .reader
                .read_line(&mut line)
                .map_err(|source| QmpError::Io {
                    what: "reading from",
                    source,
                })?;
            if n == 0 {
                return Err(QmpError::Closed);
            }
            let v: Value = serde_json::from_str(&line).map_err(|source| QmpError::NotJson {
                line: line.clone(),
                source,
            })?;
            if v.get("event").is_none() {
                return Ok(v);
            }
        }
    }

    pub(super) fn execute(
        &mut self,
        command: &str,
        arguments: Option<Value>,
    ) -> Result<Value, QmpError> {
        let mut msg = json!({ "execute": command });
        if let Some(a) = arguments {
            msg["arguments"] = a;
        }
        let mut text = msg.to_string();
        text.push('\n');
        self.writer
            .write_all(text.as_bytes())
            .map_err(|source| QmpError::Io {
                what: "writing to",
                source,
            })?;
        let reply = self.message()?;
        if let Some(err) = reply.get("error") {
            let class = err["class"].as_str().unwrap_or("no class").to_string();
            let hint = if class == "DeviceNotActive" && command == "query-balloon" {
                ": start the VM with a balloon device (-device virtio-balloon-pci)"
            } else {
                ""
            };
            return Err(QmpError::Command {
                command: command.to_string(),
                class,
                desc: err["desc"].as_str().unwrap_or("no description").to_string(),
                hint,
            });
        }
        Ok(reply.get("return").cloned().unwrap_or(Value::Null))
    }
}
