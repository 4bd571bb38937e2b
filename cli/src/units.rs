//! Parsers for sizes and durations given on the command line.

use std::time::Duration;

use cairn_engine::MaxUnused;

/// A duration: a number and a unit, `s`, `m`, `h`, `d` or `w` (`90s`,
/// `30m`, `24h`, `7d`, `2w`), or several (`1d12h`). Days and weeks are
/// exact multiples of 24 hours.
pub fn duration(s: &str) -> Result<Duration, String> {
    let mut total = 0u64;
    let mut digits = String::new();
    let bad = || format!("`{s}` is not a duration (like 90s, 30m, 24h, 7d, 2w)");
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        total = n.checked_mul(unit).and_then(|v| total.checked_add(v)).ok_or_else(bad)?;
        digits.clear();
    }
    if !digits.is_empty() || s.trim().is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

/// A size in bytes: a number with an optional binary suffix `K`, `M`, `G`,
/// `T` (KiB, MiB, ... ; a trailing `B` or `iB` is accepted).
pub fn size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let bad = || format!("`{s}` is not a size (like 500M, 10G, 1T or a number of bytes)");
    let t = t.strip_suffix("iB").or_else(|| t.strip_suffix('B')).unwrap_or(t);
    let (num, mult) = match t.chars().last() {
        Some(c @ ('k' | 'K' | 'm' | 'M' | 'g' | 'G' | 't' | 'T')) => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                _ => 40,
            };
            (&t[..t.len() - 1], 1u64 << shift)
        }
        _ => (t, 1),
    };
    let n: u64 = num.trim().parse().map_err(|_| bad())?;
    n.checked_mul(mult).ok_or_else(bad)
}

/// `--chunk-size`: an average size (`64KiB`) or `repository`.
pub fn chunk_size(s: &str) -> Result<cairn_engine::ChunkSizeChoice, String> {
    if s.eq_ignore_ascii_case("repository") {
        return Ok(cairn_engine::ChunkSizeChoice::Repository);
    }
    cairn_engine::ChunkSizes::for_average(size(s)?).map(cairn_engine::ChunkSizeChoice::Sizes)
}

/// `--max-unused`: `5%`, a size, or `unlimited`.
pub fn max_unused(s: &str) -> Result<MaxUnused, String> {
    if s.eq_ignore_ascii_case("unlimited") {
        return Ok(MaxUnused::Unlimited);
    }
    if let Some(p) = s.trim().strip_suffix('%') {
        let v: f64 = p.trim().parse().map_err(|_| format!("`{s}` is not a percentage"))?;
        if !(0.0..=100.0).contains(&v) {
            return Err(format!("{s} is not between 0% and 100%"));
        }
        return Ok(MaxUnused::Percent(v));
    }
    size(s).map(MaxUnused::Bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(duration("1d12h"), Ok(Duration::from_secs(36 * 3600)));
        assert_eq!(duration("2w"), Ok(Duration::from_secs(14 * 86_400)));
        assert!(duration("12").is_err());
        assert!(duration("").is_err());
        assert!(duration("5y").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(size("10G"), Ok(10 << 30));
        assert_eq!(size("500MiB"), Ok(500 << 20));
        assert_eq!(size("123"), Ok(123));
        assert!(size("ten").is_err());
        assert_eq!(max_unused("5%"), Ok(MaxUnused::Percent(5.0)));
        assert_eq!(max_unused("unlimited"), Ok(MaxUnused::Unlimited));
        assert_eq!(max_unused("1G"), Ok(MaxUnused::Bytes(1 << 30)));
        assert!(max_unused("150%").is_err());
    }
}
