//! Resource quantities as Kubernetes writes them: `500m`, `0.5`, `2` CPUs; `64Mi`, `1G`,
//! `1048576` bytes.
//!
//! A quantity is kept as written (so status and errors show what the user wrote) and read
//! into integers only when used: millicores for CPU, bytes for memory.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Quantity(String);

/// YAML writes `cpu: 1` as a number and `cpu: 0.5` as a float: both are quantities.
impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Int(u64),
            Float(f64),
        }
        Ok(Quantity(match Raw::deserialize(deserializer)? {
            Raw::Text(text) => text,
            Raw::Int(n) => n.to_string(),
            Raw::Float(f) => f.to_string(),
        }))
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

const BINARY_SUFFIXES: [(&str, u32); 6] = [
    ("Ki", 1),
    ("Mi", 2),
    ("Gi", 3),
    ("Ti", 4),
    ("Pi", 5),
    ("Ei", 6),
];
const DECIMAL_SUFFIXES: [(&str, u32); 6] =
    [("k", 1), ("M", 2), ("G", 3), ("T", 4), ("P", 5), ("E", 6)];

impl Quantity {
    pub fn new(text: impl Into<String>) -> Self {
        Quantity(text.into())
    }

    /// CPU in thousandths of a core (`500m` → 500, `1.5` → 1500). Finer than 1m is rounded
    /// up, as the kubelet does.
    pub fn millicores(&self) -> Result<u64, String> {
        let text = self.0.trim();
        let (number, scale) = match text.strip_suffix('m') {
            Some(milli) => (milli, 1.0),
            None => (text, 1000.0),
        };
        let value =
            parse_decimal(number).ok_or_else(|| self.invalid("a CPU amount like 500m or 2"))?;
        Ok((value * scale).ceil() as u64)
    }

    /// Memory in bytes (`64Mi` → 67108864, `1G` → 10^9).
    pub fn bytes(&self) -> Result<u64, String> {
        let text = self.0.trim();
        let (number, multiplier) = BINARY_SUFFIXES
            .iter()
            .map(|(suffix, power)| (suffix, 1024f64.powi(*power as i32)))
            .chain(
                DECIMAL_SUFFIXES
                    .iter()
                    .map(|(suffix, power)| (suffix, 1000f64.powi(*power as i32))),
            )
            .find_map(|(suffix, multiplier)| {
                text.strip_suffix(suffix).map(|number| (number, multiplier))
            })
            .unwrap_or((text, 1.0));
        let value = parse_decimal(number)
            .ok_or_else(|| self.invalid("a memory amount like 64Mi, 1G or 1048576"))?;
        let bytes = (value * multiplier).ceil();
        if bytes > u64::MAX as f64 {
            return Err(self.invalid("a memory amount that fits in 64 bits"));
        }
        Ok(bytes as u64)
    }

    fn invalid(&self, expected: &str) -> String {
        format!("{:?} is not {expected}", self.0)
    }
}

/// A non-negative decimal number: digits with an optional fraction, nothing else.
fn parse_decimal(text: &str) -> Option<f64> {
    let valid = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && text.bytes().filter(|b| *b == b'.').count() <= 1
        && text != ".";
    valid.then(|| text.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quantities() {
        let cpu = |text: &str| Quantity::new(text).millicores();
        assert_eq!(cpu("500m"), Ok(500));
        assert_eq!(cpu("2"), Ok(2000));
        assert_eq!(cpu("0.25"), Ok(250));
        assert_eq!(cpu("0.0001"), Ok(1));
        assert!(cpu("-1").is_err());
        assert!(cpu("fast").is_err());
        assert!(cpu("").is_err());
        assert!(cpu("1.2.3").is_err());
    }

    #[test]
    fn memory_quantities() {
        let mem = |text: &str| Quantity::new(text).bytes();
        assert_eq!(mem("64Mi"), Ok(64 << 20));
        assert_eq!(mem("1Gi"), Ok(1 << 30));
        assert_eq!(mem("1G"), Ok(1_000_000_000));
        assert_eq!(mem("128974848"), Ok(128_974_848));
        assert_eq!(mem("1.5Ki"), Ok(1536));
        assert!(mem("64MB").is_err());
        assert!(mem("lots").is_err());
        assert!(mem("Mi").is_err());
    }

    #[test]
    fn numbers_in_yaml_are_quantities() {
        let q: Quantity = serde_yaml_ng::from_str("1").expect("int");
        assert_eq!(q.millicores(), Ok(1000));
        let q: Quantity = serde_yaml_ng::from_str("0.5").expect("float");
        assert_eq!(q.millicores(), Ok(500));
    }
}
