//! A booted test guest (`tools/guest/build.sh`: the Debian cloud kernel and a busybox
//! initramfs) under QEMU with TCG: a virtio balloon, vCPU slots to hot-add, a virtio block
//! disk, a virtio-serial port for the in-guest profiler, a QMP socket, and the guest's serial
//! console as a shell the test drives. Killed when dropped.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The serial port's name inside the guest (`/sys/class/virtio-ports/*/name`).
pub const GUEST_PORT: &str = "org.shardex.guest.0";

/// How long the guest may take to boot to its shell (about 7 s under TCG here; CI is slower).
const BOOT: Duration = Duration::from_secs(120);

/// Where the guest's kernel and initramfs are: `SHARDEX_TEST_GUEST`, or `target/guest` of the
/// workspace (where `.ci/run` builds it).
pub fn guest_dir() -> PathBuf {
    std::env::var_os("SHARDEX_TEST_GUEST").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/guest"),
        PathBuf::from,
    )
}

/// What the console printed, shared with the thread that reads it.
#[derive(Default)]
struct Console {
    text: Mutex<String>,
    more: Condvar,
}

/// A running test guest.
pub struct Guest {
    /// QEMU, when this started it (not when libvirt did).
    child: Option<Child>,
    stdin: Box<dyn Write + Send>,
    /// What ends the VM when this is dropped, when it is not `child`.
    stop: Option<Box<dyn FnOnce() + Send>>,
    console: Arc<Console>,
    /// Its QMP socket.
    pub qmp: PathBuf,
    /// The host's end of its virtio-serial port (QEMU listens; the host connects).
    pub port: PathBuf,
    /// Its virtio block device's QOM id.
    pub disk_id: &'static str,
    /// Boot to the shell.
    pub booted_in: Duration,
}

impl Guest {
    /// Boots one with `memory_mib` of RAM and one vCPU of `max_cpus` slots, its sockets in
    /// `dir`, and waits for its shell.
    pub fn boot(dir: &Path, memory_mib: u32, max_cpus: u32) -> Self {
        Self::boot_in(dir, memory_mib, max_cpus, &[])
    }

    /// [`Guest::boot`] with QEMU started inside a cgroup: its pid is written to each of
    /// `procs` (`cgroup.procs` files) before it starts.
    pub fn boot_in(dir: &Path, memory_mib: u32, max_cpus: u32, procs: &[PathBuf]) -> Self {
        Self::boot_with(dir, memory_mib, max_cpus, procs, None)
    }

    /// [`Guest::boot_in`] with, when `tap` names one, a virtio NIC on a new tap device of that
    /// name (the guest's `eth0`; the host's end is the tap, which the tc actuator shapes).
    pub fn boot_with(
        dir: &Path,
        memory_mib: u32,
        max_cpus: u32,
        procs: &[PathBuf],
        tap: Option<&str>,
    ) -> Self {
        let images = guest_dir();
        let (kernel, initrd) = (images.join("vmlinuz"), images.join("initrd.img"));
        assert!(
            kernel.exists() && initrd.exists(),
            "no test guest in {}: build it with `bash tools/guest/build.sh target/guest target/debug/shardex`",
            images.display()
        );
        let disk = dir.join("disk.img");
        std::fs::File::create(&disk)
            .and_then(|f| f.set_len(32 << 20))
            .unwrap();
        let qmp = dir.join("vm.qmp");
        let port = dir.join("guest.sock");
        let started = Instant::now();
        let mut qemu = Command::new("sh");
        qemu.arg("-c")
            .arg(r#"for f in $CGROUP_PROCS; do echo $$ > "$f" || exit 97; done; exec "$0" "$@""#)
            .arg("qemu-system-x86_64")
            .env(
                "CGROUP_PROCS",
                procs
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" "),
            );
        if let Some(tap) = tap {
            qemu.arg("-netdev")
                .arg(format!("tap,id=net0,ifname={tap},script=no,downscript=no"))
                .args(["-device", "virtio-net-pci,netdev=net0"]);
        }
        let mut child = qemu
            .args(["-machine", "q35,accel=tcg", "-cpu", "qemu64", "-m"])
            .arg(format!("{memory_mib}M"))
            .arg("-smp")
            .arg(format!("1,maxcpus={max_cpus}"))
            .args([
                "-nodefaults",
                "-display",
                "none",
                "-no-reboot",
                "-serial",
                "stdio",
            ])
            .arg("-kernel")
            .arg(&kernel)
            .arg("-initrd")
            .arg(&initrd)
            .args(["-append", "console=ttyS0 quiet panic=-1"])
            .args(["-device", "virtio-balloon-pci,id=balloon0"])
            .arg("-drive")
            .arg(format!(
                "file={},if=none,id=disk0,format=raw",
                disk.display()
            ))
            .args(["-device", "virtio-blk-pci,drive=disk0,id=vblk0"])
            .args(["-device", "virtio-serial-pci,id=vser0", "-chardev"])
            .arg(format!(
                "socket,id=gport,path={},server=on,wait=off",
                port.display()
            ))
            .arg("-device")
            .arg(format!("virtserialport,chardev=gport,name={GUEST_PORT}"))
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp.display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("qemu.err")).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("no qemu-system-x86_64 here: {e}"));
        let stdin: Box<dyn Write + Send> = Box::new(child.stdin.take().unwrap());
        let stdout = child.stdout.take().unwrap();
        let console = read_console(stdout);
        let mut guest = Self {
            child: Some(child),
            stdin,
            stop: None,
            console,
            qmp,
            port,
            disk_id: "vblk0",
            booted_in: Duration::ZERO,
        };
        guest.wait_for(0, "shardex-guest ready", BOOT);
        // The shell answers: the boot is over.
        assert_eq!(guest.run("echo up"), "up");
        guest.booted_in = started.elapsed();
        guest
    }

    /// A guest libvirt runs, driven through its serial console's unix socket (`<serial
    /// type='unix'>` in bind mode); `stop` ends it when this is dropped. Waits for its shell.
    pub fn attach(console: &Path, port: PathBuf, stop: Box<dyn FnOnce() + Send>) -> Self {
        let started = Instant::now();
        let stream = loop {
            match std::os::unix::net::UnixStream::connect(console) {
                Ok(s) => break s,
                Err(e) => {
                    assert!(
                        started.elapsed() < BOOT,
                        "no console at {}: {e}",
                        console.display()
                    );
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        };
        let reader = stream.try_clone().unwrap();
        let mut guest = Self {
            child: None,
            stdin: Box::new(stream),
            stop: Some(stop),
            console: read_console(reader),
            qmp: PathBuf::new(),
            port,
            disk_id: "vda",
            booted_in: Duration::ZERO,
        };
        // The boot's banner may have gone by before this connected: ask until the shell answers.
        while guest.try_run("echo up", Duration::from_secs(3)).as_deref() != Some("up") {
            assert!(
                started.elapsed() < BOOT,
                "the guest's shell did not answer within {BOOT:?}"
            );
        }
        guest.booted_in = started.elapsed();
        guest
    }
}

impl Guest {
    /// A folder libvirt's QEMU (another user) can read, for [`Guest::boot_libvirt`].
    pub fn libvirt_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        dir
    }

    /// The test guest as a transient TCG domain `name` of libvirt at `uri` (facts measured
    /// here: TCG needs `svm` off with the qemu64 model), its files in `dir` (see
    /// [`Guest::libvirt_dir`]); destroyed when dropped. Waits for its shell.
    pub fn boot_libvirt(uri: &str, dir: &Path, name: &str) -> Self {
        for f in ["vmlinuz", "initrd.img"] {
            std::fs::copy(guest_dir().join(f), dir.join(f)).unwrap_or_else(|e| {
                panic!("no test guest ({e}): bash tools/guest/build.sh target/guest target/debug/shardex")
            });
        }
        std::fs::File::create(dir.join("disk.img"))
            .and_then(|f| f.set_len(32 << 20))
            .unwrap();
        let d = dir.display();
        let xml = format!(
            "<domain type='qemu'><name>{name}</name>\
             <memory unit='MiB'>512</memory><currentMemory unit='MiB'>512</currentMemory>\
             <vcpu placement='static' current='1'>4</vcpu>\
             <os><type arch='x86_64' machine='q35'>hvm</type><kernel>{d}/vmlinuz</kernel>\
             <initrd>{d}/initrd.img</initrd><cmdline>console=ttyS0 quiet panic=-1</cmdline></os>\
             <cpu mode='custom' match='exact'><model fallback='allow'>qemu64</model>\
             <feature policy='disable' name='svm'/></cpu>\
             <on_reboot>destroy</on_reboot><devices>\
             <disk type='file' device='disk'><driver name='qemu' type='raw'/>\
             <source file='{d}/disk.img'/><target dev='vda' bus='virtio'/></disk>\
             <serial type='unix'><source mode='bind' path='{d}/console.sock'/><target port='0'/></serial>\
             <channel type='unix'><source mode='bind' path='{d}/guest.sock'/>\
             <target type='virtio' name='{GUEST_PORT}'/></channel>\
             <memballoon model='virtio'><stats period='2'/></memballoon></devices></domain>"
        );
        std::fs::write(dir.join("domain.xml"), xml).unwrap();
        let out = Command::new("virsh")
            .args(["-c", uri, "create"])
            .arg(dir.join("domain.xml"))
            .output()
            .unwrap_or_else(|e| panic!("no virsh here (libvirt-clients): {e}"));
        assert!(
            out.status.success(),
            "virsh create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (uri, owned) = (uri.to_string(), name.to_string());
        Self::attach(
            &dir.join("console.sock"),
            dir.join("guest.sock"),
            Box::new(move || {
                let _ = Command::new("virsh")
                    .args(["-c", &uri, "destroy", &owned])
                    .output();
            }),
        )
    }
}

/// The console's text, read by a thread of its own as it comes.
fn read_console(mut stdout: impl Read + Send + 'static) -> Arc<Console> {
    let console = Arc::new(Console::default());
    let c = Arc::clone(&console);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            let mut text = c.text.lock().unwrap();
            text.push_str(&String::from_utf8_lossy(&buf[..n]).replace('\r', ""));
            c.more.notify_all();
        }
    });
    console
}

impl Guest {
    /// Waits until the console shows `what` after byte `from`; returns where it ends.
    fn wait_for(&mut self, from: usize, what: &str, within: Duration) -> usize {
        self.find(from, what, within).unwrap_or_else(|| {
            let text = self.console.text.lock().unwrap();
            panic!(
                "the guest's console did not show {what:?} within {within:?}; it shows:\n{}",
                &text[from.min(text.len())..]
            )
        })
    }

    /// [`Guest::wait_for`], or `None` when `within` passed first.
    fn find(&mut self, from: usize, what: &str, within: Duration) -> Option<usize> {
        let deadline = Instant::now() + within;
        let mut text = self.console.text.lock().unwrap();
        loop {
            if let Some(i) = text.get(from..).and_then(|t| t.find(what)) {
                return Some(from + i + what.len());
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("the guest's QEMU exited with {status}; its console:\n{text}");
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            text = self
                .console
                .more
                .wait_timeout(text, left.min(Duration::from_millis(200)))
                .unwrap()
                .0;
        }
    }

    /// Runs `command` in the guest's shell and returns what it printed, trimmed (60 s at most).
    pub fn run(&mut self, command: &str) -> String {
        self.run_within(command, Duration::from_secs(60))
    }

    /// [`Guest::run`] with its own time limit.
    pub fn run_within(&mut self, command: &str, within: Duration) -> String {
        self.try_run(command, within)
            .unwrap_or_else(|| panic!("{command:?} did not finish in the guest within {within:?}"))
    }

    /// [`Guest::run`], or `None` when it did not finish within `within`.
    pub fn try_run(&mut self, command: &str, within: Duration) -> Option<String> {
        let from = self.console.text.lock().unwrap().len();
        // The markers are split by quotes on the command line, so its echo never matches; a
        // command sent to the background ends with its own `&`.
        let body = if command.trim_end().ends_with('&') {
            format!("{{ {command} }}")
        } else {
            format!("{{ {command}; }}")
        };
        writeln!(
            self.stdin,
            "echo '__SX''BEGIN__'; {body}; echo '__SX''END__'"
        )
        .unwrap();
        self.stdin.flush().unwrap();
        let begin = self.find(from, "__SXBEGIN__\n", within)?;
        let end = self.find(begin, "__SXEND__", within)?;
        let text = self.console.text.lock().unwrap();
        Some(text[begin..end - "__SXEND__".len()].trim().to_string())
    }

    /// The last `n` characters its console showed (to tell what became of it).
    pub fn console_tail(&self, n: usize) -> String {
        let text = self.console.text.lock().unwrap();
        let from = text.len().saturating_sub(n);
        let from = (from..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        text[from..].to_string()
    }

    /// A number the guest printed (e.g. `run("nproc")`).
    pub fn number(&mut self, command: &str) -> u64 {
        let out = self.run(command);
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{command:?} printed {out:?}, not a number"))
    }

    /// A line of the guest's `/proc/meminfo`, in bytes.
    pub fn meminfo(&mut self, field: &str) -> u64 {
        self.number(&format!("awk '/^{field}:/ {{print $2}}' /proc/meminfo")) * 1024
    }

    /// QEMU's `return` to `command` with `arguments`, on a QMP session of its own.
    pub fn qmp(&self, command: &str, arguments: serde_json::Value) -> serde_json::Value {
        super::qmp_once(&self.qmp, command, &arguments)
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(stop) = self.stop.take() {
            stop();
        }
    }
}
