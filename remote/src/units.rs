//! Parsing of the units users type: sizes (`64MiB`), durations (`30s`, `7d`) and
//! password files. Shared by both binaries so they agree.

use std::path::Path;
use std::time::Duration;

/// Parses a byte count: a plain number, or one with a `KiB`, `MiB`, `GiB` or `TiB` suffix
/// (also `K`, `M`, `G`, `T` and `B`, binary multiples).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, unit) = split_number(text)
        .ok_or_else(|| format!("invalid size {text:?}: expected e.g. 4096 or 64MiB"))?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "K" | "KiB" | "k" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        "T" | "TiB" => 40,
        other => {
            return Err(format!(
                "invalid size unit {other:?}: use KiB, MiB, GiB or TiB"
            ));
        }
    };
    number
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

/// Parses a duration: a number with `s`, `m`, `h` or `d` (`30s`, `15m`, `12h`, `7d`);
/// `ms` is accepted too.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = split_number(text)
        .ok_or_else(|| format!("invalid duration {text:?}: expected e.g. 30s, 15m, 12h or 7d"))?;
    let seconds = match unit {
        "ms" => return Ok(Duration::from_millis(number)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "invalid duration {text:?}: expected e.g. 30s, 15m, 12h or 7d"
            ));
        }
    };
    number
        .checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("duration {text:?} is too large"))
}

/// Splits `64MiB` into `64` and `MiB`; `None` without leading digits.
fn split_number(text: &str) -> Option<(u64, &str)> {
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    Some((number.parse().ok()?, unit))
}

/// A byte count for people: `512 bytes`, `1.5 MiB`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Reads a password from a file, without one trailing LF or CRLF.
pub fn read_password_file(path: &Path) -> std::io::Result<String> {
    let mut text = std::fs::read_to_string(path)?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("10GiB").unwrap(), 10 << 30);
        assert_eq!(parse_size("1TiB").unwrap(), 1 << 40);
        assert!(parse_size("12XB").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("99999999999TiB").is_err());
    }

    #[test]
    fn sizes_for_people() {
        assert_eq!(format_size(512), "512 bytes");
        assert_eq!(format_size(1536), "1.5 KiB");
        assert_eq!(format_size(10 << 30), "10.0 GiB");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("12h").unwrap(), Duration::from_secs(43_200));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604_800));
        assert!(parse_duration("7").is_err());
        assert!(parse_duration("x").is_err());
    }

    #[test]
    fn password_files_lose_one_line_ending() {
        let dir = tempfile::tempdir().unwrap();
        for (written, expected) in [
            ("pw\n", "pw"),
            ("pw\r\n", "pw"),
            ("pw", "pw"),
            ("pw\n\n", "pw\n"),
        ] {
            let path = dir.path().join("p");
            std::fs::write(&path, written).unwrap();
            assert_eq!(read_password_file(&path).unwrap(), expected);
        }
    }
}
