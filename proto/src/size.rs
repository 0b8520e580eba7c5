//! Byte sizes on command lines and in settings.

/// Parses sizes like `512MiB`, `4GB`, `2g` or a plain byte count.
pub fn parse_size(s: &str) -> std::result::Result<usize, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?}: expected a number like 4GiB"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0f64.powi(4),
        other => return Err(format!("invalid size {s:?}: unknown unit {other:?}")),
    };
    Ok((value * mult) as usize)
}

/// A worker's memory pool: `--memory-limit` less a reserve for what is not
/// tracked (the runtime, thread stacks, allocator slack, gRPC buffers): a
/// fifth of the limit, and at least 64 MiB where the limit allows. The
/// worker sizes its pool with it and the scheduler admits tasks against it.
pub fn memory_pool_size(memory_limit: u64) -> u64 {
    let reserve = (memory_limit / 5).max(64 << 20).min(memory_limit / 2);
    memory_limit - reserve
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("2KiB").unwrap(), 2048);
        assert_eq!(parse_size("4GB").unwrap(), 4 << 30);
        assert_eq!(parse_size("1.5g").unwrap(), 3 << 29);
        assert!(parse_size("lots").unwrap_err().contains("invalid size"));
        assert!(parse_size("3 parsecs")
            .unwrap_err()
            .contains("unknown unit"));
    }
}
