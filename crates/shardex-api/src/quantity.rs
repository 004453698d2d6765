//! Physical quantities as people write them on a command line: cores (`1.5`, `250m`), bytes
//! (`1GiB`, `512MiB`, `2G`), bits per second (`100Mbit`, `1Gbit`) and IOPS (`500`), each
//! turned into the integer unit the shard sizes use (millicores, bytes, bit/s, operations/s).

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use shardex_core::ResourceKind;

/// A number with an optional unit suffix, split.
fn split(s: &str) -> (&str, &str) {
    let s = s.trim();
    let at = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    (&s[..at], s[at..].trim())
}

/// `number × factor`, as a whole number (rounded up: a reservation covers what was asked).
fn scaled(number: &str, factor: u64, what: &str, given: &str) -> Result<u64, String> {
    let n: Decimal = number
        .parse()
        .map_err(|_| format!("{given:?} is not {what}"))?;
    if n.is_sign_negative() {
        return Err(format!("{given:?} is negative"));
    }
    n.checked_mul(Decimal::from(factor))
        .ok_or_else(|| format!("{given:?} is too large"))?
        .ceil()
        .to_u64()
        .ok_or_else(|| format!("{given:?} is too large"))
}

/// Millicores from cores (`1.5`) or millicores (`1500m`).
pub fn cpu(s: &str) -> Result<u64, String> {
    let (n, unit) = split(s);
    let factor = match unit {
        "" => 1000,
        "m" => 1,
        _ => {
            return Err(format!(
                "{s:?} is not cores (e.g. 1.5) or millicores (1500m)"
            ));
        }
    };
    scaled(n, factor, "a number of cores", s)
}

/// Bytes from `1GiB`, `512MiB`, `64KiB`, `2G`, `500M` or a plain number of bytes.
pub fn bytes(s: &str) -> Result<u64, String> {
    let (n, unit) = split(s);
    let factor: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "ki" | "kib" => 1 << 10,
        "mi" | "mib" => 1 << 20,
        "gi" | "gib" => 1 << 30,
        "ti" | "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "{s:?} is not a size in bytes (e.g. 1GiB, 512MiB, 2G)"
            ));
        }
    };
    scaled(n, factor, "a size", s)
}

/// Bits per second from `100Mbit`, `1Gbit`, `500kbit` (also `…bps`, `…bit/s`) or a plain number.
pub fn bits_per_second(s: &str) -> Result<u64, String> {
    let (n, unit) = split(s);
    let lower = unit.to_ascii_lowercase();
    let prefix = lower
        .strip_suffix("bit/s")
        .or_else(|| lower.strip_suffix("bit"))
        .or_else(|| lower.strip_suffix("bps"))
        .unwrap_or(&lower);
    let factor: u64 = match prefix {
        "" => 1,
        "k" => 1_000,
        "m" => 1_000_000,
        "g" => 1_000_000_000,
        _ => {
            return Err(format!(
                "{s:?} is not a rate in bits per second (e.g. 100Mbit, 1Gbit)"
            ));
        }
    };
    scaled(n, factor, "a rate", s)
}

/// Operations per second (`500`).
pub fn iops(s: &str) -> Result<u64, String> {
    let (n, unit) = split(s);
    if !unit.is_empty() && !unit.eq_ignore_ascii_case("iops") {
        return Err(format!("{s:?} is not a number of IOPS (e.g. 500)"));
    }
    scaled(n, 1, "a number of IOPS", s)
}

/// The parser for a kind's unit.
pub fn of(kind: ResourceKind, s: &str) -> Result<u64, String> {
    match kind {
        ResourceKind::Cpu => cpu(s),
        ResourceKind::Memory => bytes(s),
        ResourceKind::Net => bits_per_second(s),
        ResourceKind::Iops => iops(s),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn quantities_in_the_units_people_write() {
        assert_eq!(cpu("1.5").unwrap(), 1500);
        assert_eq!(cpu("250m").unwrap(), 250);
        assert_eq!(cpu("0.0005").unwrap(), 1, "rounded up");
        assert_eq!(bytes("1GiB").unwrap(), 1 << 30);
        assert_eq!(bytes("512 MiB").unwrap(), 512 << 20);
        assert_eq!(bytes("2G").unwrap(), 2_000_000_000);
        assert_eq!(bytes("1.5Gi").unwrap(), 3 << 29);
        assert_eq!(bytes("4096").unwrap(), 4096);
        assert_eq!(bits_per_second("100Mbit").unwrap(), 100_000_000);
        assert_eq!(bits_per_second("1Gbit/s").unwrap(), 1_000_000_000);
        assert_eq!(bits_per_second("500kbps").unwrap(), 500_000);
        assert_eq!(iops("500").unwrap(), 500);
        assert_eq!(of(ResourceKind::Memory, "1MiB").unwrap(), 1 << 20);
    }

    #[test]
    fn bad_quantities_say_what_was_wrong() {
        for (f, s) in [
            (cpu as fn(&str) -> Result<u64, String>, "two"),
            (cpu, "1.5x"),
            (cpu, "-1"),
            (bytes, "1GB/s"),
            (bytes, ""),
            (bits_per_second, "100MiB"),
            (iops, "5k"),
        ] {
            let e = f(s).unwrap_err();
            assert!(e.contains(&format!("{s:?}")), "{e}");
        }
        assert!(bytes("99999999999TiB").unwrap_err().contains("too large"));
    }
}
