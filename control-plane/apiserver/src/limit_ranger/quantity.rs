//! `resource.Quantity` as LimitRanges need it: parsed exactly as apimachinery's `ParseQuantity`
//! accepts and refuses (with its words), compared exactly, and printed in the canonical form
//! `Quantity.String()` gives, because kube's LimitRange messages print quantities that way
//! (`1000m` prints `1`, `1024Mi` prints `1Gi`, `0.5` prints `500m`).
//!
//! A value is kept in nano-units (apimachinery rounds anything finer up to 1n) in an `i128`,
//! which holds ±1.7·10²⁹ units: every amount a cluster has, but not the `1e40` ParseQuantity
//! would also take — those are refused as out of range.

use std::cmp::Ordering;

use serde_json::Value;

/// apimachinery's `ErrFormatWrong`.
pub const FORMAT_ERROR: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
/// apimachinery's `ErrSuffix`.
pub const SUFFIX_ERROR: &str = "unable to parse quantity's suffix";
/// apimachinery's `ErrNumeric`; also what an amount past keel's range is refused with.
pub const NUMERIC_ERROR: &str = "unable to parse numeric part of quantity";

const NANOS_PER_UNIT: i128 = 1_000_000_000;

/// How a quantity was written, which decides how it prints (`Quantity.Format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `500m`, `2`, `1k`, `1M`.
    DecimalSI,
    /// `64Mi`, `1Gi`.
    BinarySI,
    /// `1e3`, `5E-3`.
    DecimalExponent,
}

/// One quantity: its amount in nano-units and its format.
#[derive(Clone, Copy, Debug)]
pub struct Quantity {
    nanos: i128,
    format: Format,
}

impl PartialEq for Quantity {
    /// Equal amounts are equal quantities whatever their format, as `Cmp` compares them.
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

/// What `parseQuantityString` splits a quantity into.
struct Parts<'a> {
    positive: bool,
    /// Integer digits, leading zeros removed ("" for none).
    whole: &'a str,
    /// Digits after the point.
    fraction: &'a str,
    suffix: &'a str,
}

fn digits_end(text: &[u8], from: usize) -> usize {
    text[from..]
        .iter()
        .position(|b| !b.is_ascii_digit())
        .map_or(text.len(), |offset| from + offset)
}

/// apimachinery's `parseQuantityString`, including its leniencies: `+`, `-` and `.` alone
/// are zero, and `1.G` is `1G`.
fn split(text: &str) -> Result<Parts<'_>, &'static str> {
    let bytes = text.as_bytes();
    let mut pos = 0;
    let mut positive = true;
    match bytes.first() {
        Some(b'-') => {
            positive = false;
            pos = 1;
        }
        Some(b'+') => pos = 1,
        _ => {}
    }
    while bytes.get(pos) == Some(&b'0') {
        pos += 1;
    }
    let whole_end = digits_end(bytes, pos);
    let whole = &text[pos..whole_end];
    pos = whole_end;
    let mut fraction = "";
    if bytes.get(pos) == Some(&b'.') {
        let end = digits_end(bytes, pos + 1);
        fraction = &text[pos + 1..end];
        pos = end;
    }
    let suffix_start = pos;
    while bytes.get(pos).is_some_and(|b| b"eEinumkKMGTP".contains(b)) {
        pos += 1;
    }
    if matches!(bytes.get(pos), Some(b'-' | b'+')) {
        pos += 1;
    }
    if digits_end(bytes, pos) != bytes.len() {
        return Err(FORMAT_ERROR);
    }
    Ok(Parts {
        positive,
        whole,
        fraction,
        suffix: &text[suffix_start..],
    })
}

/// `quantitySuffixer.interpret`: the base, the exponent and the format a suffix stands for.
fn interpret(suffix: &str) -> Option<(u32, i64, Format)> {
    let decimal = |exponent| Some((10, exponent, Format::DecimalSI));
    let binary = |exponent| Some((2, exponent, Format::BinarySI));
    match suffix {
        "" => decimal(0),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(10),
        "Mi" => binary(20),
        "Gi" => binary(30),
        "Ti" => binary(40),
        "Pi" => binary(50),
        "Ei" => binary(60),
        _ => {
            let exponent = suffix.strip_prefix(['e', 'E'])?.parse::<i64>().ok()?;
            Some((10, exponent, Format::DecimalExponent))
        }
    }
}

/// `digits` × 10^`shift` × 2^`binary`, rounded up to a whole number: the magnitude in nanos.
fn scaled(digits: &str, shift: i64, binary: u32) -> Option<i128> {
    let digits = digits.trim_start_matches('0');
    let parse = |text: &str| -> Option<i128> {
        if text.is_empty() {
            Some(0)
        } else {
            text.parse::<i128>().ok()
        }
    };
    let pow10 = |power: i64| 10i128.checked_pow(u32::try_from(power).ok()?);
    let two = 2i128.checked_pow(binary)?;
    if shift >= 0 {
        return parse(digits)?.checked_mul(pow10(shift)?)?.checked_mul(two);
    }
    let cut = usize::try_from(-shift).ok()?;
    if binary == 0 {
        // Decimal: split the digits at the point; anything after it rounds up.
        let (head, tail) = digits.split_at(digits.len().saturating_sub(cut));
        let up = i128::from(tail.bytes().any(|b| b != b'0'));
        return parse(head)?.checked_add(up);
    }
    let numerator = parse(digits)?.checked_mul(two)?;
    match pow10(-shift) {
        Some(divisor) => Some(numerator / divisor + i128::from(numerator % divisor != 0)),
        None => Some(i128::from(numerator != 0)),
    }
}

impl Quantity {
    /// `ParseQuantity`: the quantity `text` stands for, or apimachinery's reason it does not.
    pub fn parse(text: &str) -> Result<Quantity, &'static str> {
        if text.is_empty() {
            return Err(FORMAT_ERROR);
        }
        let parts = split(text)?;
        let (base, exponent, format) = interpret(parts.suffix).ok_or(SUFFIX_ERROR)?;
        let digits = format!("{}{}", parts.whole, parts.fraction);
        let fraction = i64::try_from(parts.fraction.len()).map_err(|_| NUMERIC_ERROR)?;
        let magnitude = if base == 10 {
            exponent
                .checked_add(9)
                .and_then(|e| e.checked_sub(fraction))
                .and_then(|shift| scaled(&digits, shift, 0))
        } else {
            let binary = u32::try_from(exponent).map_err(|_| NUMERIC_ERROR)?;
            scaled(&digits, 9 - fraction, binary)
        }
        .ok_or(NUMERIC_ERROR)?;
        let nanos = if parts.positive {
            magnitude
        } else {
            -magnitude
        };
        Ok(Quantity { nanos, format })
    }

    /// `n` whole units, as `resource.NewQuantity(n, DecimalSI)`.
    pub fn from_units(n: i64) -> Quantity {
        Quantity {
            nanos: i128::from(n) * NANOS_PER_UNIT,
            format: Format::DecimalSI,
        }
    }

    /// A quantity as JSON holds it: a string, or a number YAML wrote unquoted (`cpu: 1`).
    pub fn from_json(value: &Value) -> Result<Quantity, &'static str> {
        match value {
            Value::String(text) => Quantity::parse(text.trim()),
            Value::Number(number) => Quantity::parse(&number.to_string()),
            _ => Err(FORMAT_ERROR),
        }
    }

    /// `MilliValue()`: thousandths, rounded up, as the LimitRanger compares.
    pub fn milli(&self) -> i128 {
        let per_milli = 1_000_000;
        self.nanos.div_euclid(per_milli) + i128::from(self.nanos.rem_euclid(per_milli) != 0)
    }

    /// The canonical form (`Quantity.String()`).
    pub fn canonical(&self) -> String {
        if self.nanos == 0 {
            return "0".into();
        }
        let units = self.nanos / NANOS_PER_UNIT;
        let whole = self.nanos % NANOS_PER_UNIT == 0;
        match self.format {
            // Small or fractional binary amounts print as decimal, so as not to round.
            Format::BinarySI if whole && units.unsigned_abs() >= 1024 => {
                let mut mantissa = units;
                let mut power = 0;
                while power < 6 && mantissa % 1024 == 0 {
                    mantissa /= 1024;
                    power += 1;
                }
                let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][power];
                format!("{mantissa}{suffix}")
            }
            Format::DecimalExponent => {
                let (mantissa, exponent) = self.decimal_parts(i64::MAX);
                if exponent == 0 {
                    mantissa.to_string()
                } else {
                    format!("{mantissa}e{exponent}")
                }
            }
            Format::BinarySI | Format::DecimalSI => {
                let (mantissa, exponent) = self.decimal_parts(18);
                let suffix = match exponent {
                    -9 => "n",
                    -6 => "u",
                    -3 => "m",
                    3 => "k",
                    6 => "M",
                    9 => "G",
                    12 => "T",
                    15 => "P",
                    18 => "E",
                    _ => "",
                };
                format!("{mantissa}{suffix}")
            }
        }
    }

    /// The smallest integer mantissa with an exponent that is a multiple of three (at most
    /// `max_exponent`): `AsCanonicalBytes`.
    fn decimal_parts(&self, max_exponent: i64) -> (i128, i64) {
        let mut mantissa = self.nanos;
        let mut exponent: i64 = -9;
        while mantissa % 10 == 0 && exponent < max_exponent {
            mantissa /= 10;
            exponent += 1;
        }
        while exponent.rem_euclid(3) != 0 {
            mantissa *= 10;
            exponent -= 1;
        }
        (mantissa, exponent)
    }
}

/// `Add`: the sum, in the left quantity's format (or the right one's, when the left is zero,
/// as apimachinery does); saturating where keel's range ends.
impl std::ops::Add for Quantity {
    type Output = Quantity;

    fn add(self, other: Quantity) -> Quantity {
        Quantity {
            nanos: self.nanos.saturating_add(other.nanos),
            format: if self.nanos == 0 {
                other.format
            } else {
                self.format
            },
        }
    }
}

impl std::fmt::Display for Quantity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.canonical())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(text: &str) -> String {
        Quantity::parse(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .canonical()
    }

    #[test]
    fn prints_as_apimachinery_canonicalizes() {
        for (text, want) in [
            ("1", "1"),
            ("1000m", "1"),
            ("0.5", "500m"),
            ("1.5", "1500m"),
            ("500m", "500m"),
            ("1000", "1k"),
            ("1500", "1500"),
            ("2000000", "2M"),
            ("64Mi", "64Mi"),
            ("1024Mi", "1Gi"),
            ("1536Mi", "1536Mi"),
            ("1.5Gi", "1536Mi"),
            ("0.5Ki", "512"),
            ("1023", "1023"),
            ("1e3", "1e3"),
            ("1.5e3", "1500"),
            ("1E-3", "1e-3"),
            ("100u", "100u"),
            ("0.0000000001", "1n"),
            ("-2", "-2"),
            ("-1500m", "-1500m"),
            ("0", "0"),
            ("+", "0"),
            (".", "0"),
            ("00012", "12"),
            ("1.G", "1G"),
        ] {
            assert_eq!(canonical(text), want, "{text}");
        }
    }

    #[test]
    fn refuses_what_parse_quantity_refuses_with_its_words() {
        for (text, error) in [
            ("", FORMAT_ERROR),
            ("1x", FORMAT_ERROR),
            ("ten", FORMAT_ERROR),
            ("1 Gi", FORMAT_ERROR),
            ("1e3x", FORMAT_ERROR),
            ("1Zi", FORMAT_ERROR),
            ("1mm", SUFFIX_ERROR),
            ("1ki", SUFFIX_ERROR),
            ("1e", SUFFIX_ERROR),
            ("1e400", NUMERIC_ERROR),
            (&"9".repeat(60), NUMERIC_ERROR),
        ] {
            assert_eq!(
                Quantity::parse(text).map(|q| q.canonical()),
                Err(error),
                "{text:?}"
            );
        }
    }

    #[test]
    fn compares_and_rounds_like_milli_value() {
        let q = |text| Quantity::parse(text).expect("parses");
        assert_eq!(q("1"), q("1000m"));
        assert!(q("1Gi") > q("1G"));
        assert!(q("1500u") > q("1m"));
        assert_eq!(q("1n").milli(), 1, "MilliValue rounds up");
        assert_eq!(q("-1n").milli(), 0);
        assert_eq!(q("2.5").milli(), 2500);
        assert_eq!(q("1e-400").milli(), 1, "finer than 1n rounds up to 1n");
        assert_eq!(
            Quantity::from_json(&serde_json::json!(2)).map(|q| q.milli()),
            Ok(2000)
        );
        assert_eq!(
            Quantity::from_json(&serde_json::json!(0.25)).map(|q| q.milli()),
            Ok(250)
        );
        assert!(Quantity::from_json(&serde_json::json!(["1"])).is_err());
    }

    #[test]
    fn sums_keep_the_first_format_unless_it_is_zero() {
        let q = |text| Quantity::parse(text).expect("parses");
        assert_eq!((q("1Gi") + q("512Mi")).canonical(), "1536Mi");
        assert_eq!((q("500m") + q("1")).canonical(), "1500m");
        assert_eq!((q("0") + q("1Gi")).canonical(), "1Gi");
        assert_eq!((q("1G") + q("1Gi")).canonical(), "2073741824");
    }
}
