//! Object sizes (fixed, a uniform range, or weighted choices) and incompressible payloads.
//!
//! Payloads are slices of one pool of random bytes generated at start, so producing a body
//! costs nothing per request; different offsets give different contents.

use bytes::Bytes;
use rand::{Rng, RngCore, SeedableRng};

/// Parses `4096`, `4KiB`, `4k`, `1.5MiB`, `64MB`, `1GiB` (K/M/G are binary, KB/MB/GB decimal).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: f64 = num
        .parse()
        .map_err(|_| format!("not a size: {s:?} (try 4KiB, 1MiB, 64MiB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => return Err(format!("unknown size unit {other:?} in {s:?}")),
    };
    if !(num.is_finite() && num >= 0.0) {
        return Err(format!("not a size: {s:?}"));
    }
    Ok((num * mult as f64).round() as u64)
}

/// Human form of a byte count, exact when it is a whole number of units.
pub fn format_bytes(n: u64) -> String {
    for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if n >= size && n.is_multiple_of(size) {
            return format!("{}{unit}", n / size);
        }
    }
    format!("{n}B")
}

/// How object sizes are drawn.
#[derive(Debug, Clone, PartialEq)]
pub enum SizeSpec {
    Fixed(u64),
    /// Uniform in `[lo, hi]`.
    Range(u64, u64),
    /// `size:weight` choices.
    Weighted(Vec<(u64, u32)>),
}

impl std::str::FromStr for SizeSpec {
    type Err = String;

    /// `4KiB`, `1KiB..1MiB`, or `4KiB:70,1MiB:30`.
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some((lo, hi)) = s.split_once("..") {
            let (lo, hi) = (parse_bytes(lo)?, parse_bytes(hi)?);
            if lo > hi {
                return Err(format!("empty size range {s:?}"));
            }
            return Ok(SizeSpec::Range(lo, hi));
        }
        if s.contains(':') {
            let mut choices = Vec::new();
            for part in s.split(',') {
                let (size, weight) = part
                    .split_once(':')
                    .ok_or_else(|| format!("expected size:weight, got {part:?}"))?;
                let weight: u32 = weight
                    .trim()
                    .parse()
                    .map_err(|_| format!("bad weight in {part:?}"))?;
                choices.push((parse_bytes(size)?, weight));
            }
            if choices.iter().map(|c| c.1 as u64).sum::<u64>() == 0 {
                return Err(format!("weights in {s:?} sum to zero"));
            }
            return Ok(SizeSpec::Weighted(choices));
        }
        Ok(SizeSpec::Fixed(parse_bytes(s)?))
    }
}

impl std::fmt::Display for SizeSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SizeSpec::Fixed(n) => write!(f, "{}", format_bytes(*n)),
            SizeSpec::Range(lo, hi) => write!(f, "{}..{}", format_bytes(*lo), format_bytes(*hi)),
            SizeSpec::Weighted(c) => {
                let parts: Vec<String> = c
                    .iter()
                    .map(|(s, w)| format!("{}:{w}", format_bytes(*s)))
                    .collect();
                write!(f, "{}", parts.join(","))
            }
        }
    }
}

impl SizeSpec {
    pub fn max(&self) -> u64 {
        match self {
            SizeSpec::Fixed(n) => *n,
            SizeSpec::Range(_, hi) => *hi,
            SizeSpec::Weighted(c) => c.iter().map(|c| c.0).max().unwrap_or(0),
        }
    }

    pub fn sample(&self, rng: &mut impl Rng) -> u64 {
        match self {
            SizeSpec::Fixed(n) => *n,
            SizeSpec::Range(lo, hi) => rng.random_range(*lo..=*hi),
            SizeSpec::Weighted(c) => {
                let total: u64 = c.iter().map(|c| c.1 as u64).sum();
                let mut pick = rng.random_range(0..total.max(1));
                for (size, w) in c {
                    if pick < *w as u64 {
                        return *size;
                    }
                    pick -= *w as u64;
                }
                c.last().map(|c| c.0).unwrap_or(0)
            }
        }
    }
}

/// A pool of random bytes; bodies are zero-copy slices of it.
#[derive(Clone)]
pub struct Payloads {
    pool: Bytes,
}

/// Extra random bytes beyond the largest object, so bodies start at different offsets.
const POOL_SLACK: usize = 4 << 20;

impl Payloads {
    pub fn new(max_size: u64, seed: u64) -> Self {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
        let mut pool = vec![0u8; max_size as usize + POOL_SLACK];
        rng.fill_bytes(&mut pool);
        Payloads {
            pool: Bytes::from(pool),
        }
    }

    pub fn body(&self, size: u64, rng: &mut impl Rng) -> Bytes {
        let size = size as usize;
        let start = rng.random_range(0..=self.pool.len() - size);
        self.pool.slice(start..start + size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_bytes("4KiB"), Ok(4096));
        assert_eq!(parse_bytes("4k"), Ok(4096));
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("1MB"), Ok(1_000_000));
        assert_eq!(parse_bytes("0"), Ok(0));
        assert!(parse_bytes("4 parsecs").is_err());
        assert!(parse_bytes("").is_err());
        assert_eq!("1KiB..1MiB".parse(), Ok(SizeSpec::Range(1024, 1 << 20)));
        assert_eq!(
            "4KiB:70,1MiB:30".parse(),
            Ok(SizeSpec::Weighted(vec![(4096, 70), (1 << 20, 30)]))
        );
        assert!("2MiB..1MiB".parse::<SizeSpec>().is_err());
        assert!("4KiB:0".parse::<SizeSpec>().is_err());
        assert_eq!(SizeSpec::Fixed(64 << 20).to_string(), "64MiB");
    }

    #[test]
    fn samples_stay_in_spec() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
        let spec: SizeSpec = "10..20".parse().expect("valid");
        let weighted: SizeSpec = "1:1,5:3".parse().expect("valid");
        let p = Payloads::new(20, 7);
        for _ in 0..1000 {
            let n = spec.sample(&mut rng);
            assert!((10..=20).contains(&n));
            assert!([1, 5].contains(&weighted.sample(&mut rng)));
            assert_eq!(p.body(n, &mut rng).len() as u64, n);
        }
    }
}
