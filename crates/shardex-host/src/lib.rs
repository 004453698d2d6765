//! The adapters on a host, behind the core's ports: the cgroup sampler (`Sampler`) and the
//! actuators (`Actuator`) that apply allocations live: cgroup v1 and v2 limits, tc shaping and
//! QEMU over QMP; and the in-guest profiler with its host side (`guest`). They touch the kernel and QEMU; the tests drive the real ones where the
//! machine has them.

pub mod balloon;
pub mod cgroup;
pub mod guest;
#[cfg(feature = "libvirt")]
pub mod libvirt;
pub mod qmp;
pub mod sampler;
pub mod tc;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod tree;
