//! Pod addresses from the node's pod CIDR, one file per address in the state directory
//! (like CNI's host-local plugin): `ipam/<ip>` holds the uid of the pod that has it.
//!
//! A file is created with O_EXCL before the address is used, so an address is never handed
//! out twice, across daemon restarts included; it is removed only when its pod is gone.

use std::{
    fs, io,
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use thiserror::Error;

use keel_host::cidr::Ipv4Cidr;

#[derive(Debug, Error)]
pub enum IpamError {
    #[error("pod CIDR {cidr} is full: every address is held by a pod")]
    Exhausted { cidr: Ipv4Cidr },
    #[error("pod CIDR {cidr} is too small: it needs room for a gateway and pods (/30 or wider)")]
    TooSmall { cidr: Ipv4Cidr },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// The address pool of one node.
#[derive(Clone, Debug)]
pub struct Ipam {
    dir: PathBuf,
    cidr: Ipv4Cidr,
}

impl Ipam {
    pub fn new(dir: impl Into<PathBuf>, cidr: Ipv4Cidr) -> Result<Self, IpamError> {
        if cidr.prefix_len > 30 {
            return Err(IpamError::TooSmall { cidr });
        }
        Ok(Self {
            dir: dir.into(),
            cidr,
        })
    }

    pub fn cidr(&self) -> Ipv4Cidr {
        self.cidr
    }

    /// The bridge's address: the first one of the range.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.cidr.addr) + 1)
    }

    /// Every address pods may get: after the gateway, before the broadcast address.
    fn pool(&self) -> impl Iterator<Item = Ipv4Addr> {
        let first = u32::from(self.cidr.addr) + 2;
        let size = 1u32 << (32 - self.cidr.prefix_len);
        let last = u32::from(self.cidr.addr) + size - 2;
        (first..=last).map(Ipv4Addr::from)
    }

    fn file(&self, ip: Ipv4Addr) -> PathBuf {
        self.dir.join(ip.to_string())
    }

    /// The address held by `uid`, or a free one now recorded as held by it.
    pub fn allocate(&self, uid: &str) -> Result<Ipv4Addr, IpamError> {
        if let Some(ip) = self.held_by(uid)? {
            return Ok(ip);
        }
        fs::create_dir_all(&self.dir).map_err(self.io(&self.dir))?;
        for ip in self.pool() {
            let path = self.file(ip);
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(_) => {
                    fs::write(&path, uid).map_err(self.io(&path))?;
                    return Ok(ip);
                }
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(source) => return Err(IpamError::Io { path, source }),
            }
        }
        Err(IpamError::Exhausted { cidr: self.cidr })
    }

    /// The address recorded for `uid`, if any.
    pub fn held_by(&self, uid: &str) -> Result<Option<Ipv4Addr>, IpamError> {
        Ok(self
            .allocations()?
            .into_iter()
            .find_map(|(ip, owner)| (owner == uid).then_some(ip)))
    }

    /// Every recorded (address, pod uid).
    pub fn allocations(&self) -> Result<Vec<(Ipv4Addr, String)>, IpamError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(IpamError::Io {
                    path: self.dir.clone(),
                    source,
                })
            }
        };
        let mut held = Vec::new();
        for entry in entries.flatten() {
            let Some(ip) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue; // not one of ours
            };
            let owner = fs::read_to_string(entry.path()).unwrap_or_default();
            held.push((ip, owner.trim().to_owned()));
        }
        held.sort();
        Ok(held)
    }

    /// Frees every address `uid` holds.
    pub fn release(&self, uid: &str) -> Result<(), IpamError> {
        for (ip, owner) in self.allocations()? {
            if owner == uid {
                let path = self.file(ip);
                match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                    Err(source) => return Err(IpamError::Io { path, source }),
                }
            }
        }
        Ok(())
    }

    fn io<'a>(&self, path: &'a Path) -> impl FnOnce(io::Error) -> IpamError + 'a {
        move |source| IpamError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> Ipv4Cidr {
        text.parse().expect("cidr")
    }

    #[test]
    fn allocations_are_unique_persistent_and_released() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ipam = Ipam::new(dir.path(), cidr("10.244.0.0/30")).expect("ipam");
        assert_eq!(ipam.gateway(), Ipv4Addr::new(10, 244, 0, 1));
        let a = ipam.allocate("a").expect("first");
        assert_eq!(a, Ipv4Addr::new(10, 244, 0, 2));
        // A /30 has one pod address; asking again for the same pod is not a second address.
        assert_eq!(ipam.allocate("a").expect("same pod"), a);
        assert!(matches!(
            ipam.allocate("b"),
            Err(IpamError::Exhausted { .. })
        ));
        // A new daemon (a new Ipam on the same directory) sees the allocation.
        let again = Ipam::new(dir.path(), cidr("10.244.0.0/30")).expect("ipam");
        assert_eq!(again.held_by("a").expect("read"), Some(a));
        again.release("a").expect("release");
        assert_eq!(again.allocate("b").expect("freed"), a);
    }

    #[test]
    fn tiny_ranges_are_refused() {
        assert!(matches!(
            Ipam::new("/nonexistent", cidr("10.244.0.0/31")),
            Err(IpamError::TooSmall { .. })
        ));
    }
}
