//! The IPVS proxy mode: not implemented yet beyond telling whether the kernel could run it.
//!
//! IPVS is a kernel load balancer (`CONFIG_IP_VS`); without it there is nothing to program.
//! The kernel exposes `/proc/net/ip_vs` whenever IPVS is built in or its module is loaded.

use std::path::Path;

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum IpvsError {
    #[error("ipvs mode unavailable: kernel has no IP_VS support (no /proc/net/ip_vs); use --proxy-mode ebpf, iptables or nftables")]
    NoKernelSupport,
    #[error("ipvs mode unavailable: keel cannot program IPVS yet (the kernel has it); use --proxy-mode ebpf, iptables or nftables")]
    NotImplemented,
}

/// Why the IPVS mode cannot start here.
pub fn unavailable() -> IpvsError {
    unavailable_with(Path::new("/proc/net/ip_vs"))
}

fn unavailable_with(proc_file: &Path) -> IpvsError {
    if proc_file.exists() {
        IpvsError::NotImplemented
    } else {
        IpvsError::NoKernelSupport
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_why() {
        assert_eq!(
            unavailable_with(Path::new("/nonexistent/ip_vs")),
            IpvsError::NoKernelSupport
        );
        assert_eq!(
            unavailable_with(Path::new("/proc/self")),
            IpvsError::NotImplemented
        );
        assert!(IpvsError::NoKernelSupport
            .to_string()
            .starts_with("ipvs mode unavailable: kernel has no IP_VS support"));
    }
}
