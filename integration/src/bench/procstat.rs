//! CPU time of a process from `/proc/PID/stat` (utime + stime) and its resident memory
//! from `/proc/PID/status` (VmRSS).

use anyhow::{anyhow, Context, Result};

/// User plus system CPU seconds consumed so far by process `pid`
/// (`"self"` for this process).
pub fn cpu_seconds(pid: &str) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_stat(&text, clock_ticks()).with_context(|| format!("parsing {path}"))
}

/// Resident set size of process `pid` in bytes (`VmRSS`).
pub fn rss_bytes(pid: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_rss(&text).with_context(|| format!("parsing {path}"))
}

/// The `VmRSS:  1234 kB` line of a status file, in bytes.
fn parse_rss(text: &str) -> Result<u64> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .ok_or_else(|| anyhow!("no VmRSS line"))?;
    let kib = line
        .split_whitespace()
        .next()
        .ok_or_else(|| anyhow!("empty VmRSS line"))?
        .parse::<u64>()
        .map_err(|e| anyhow!("VmRSS: {e}"))?;
    Ok(kib * 1024)
}

/// Clock ticks per second used by `/proc` (USER_HZ).
fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions and only reads a constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Parses utime (field 14) and stime (field 15) of a stat line. The command
/// name (field 2) is in parentheses and may contain spaces, so fields are
/// counted from the last `)`.
fn parse_stat(text: &str, ticks: f64) -> Result<f64> {
    let close = text
        .rfind(')')
        .ok_or_else(|| anyhow!("no ')' in stat line"))?;
    // After ")" come fields 3 (state), 4, ...: utime is field 14.
    let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
    let field = |n: usize| -> Result<u64> {
        fields
            .get(n - 3)
            .ok_or_else(|| anyhow!("stat line has no field {n}"))?
            .parse::<u64>()
            .map_err(|e| anyhow!("field {n}: {e}"))
    };
    Ok((field(14)? + field(15)?) as f64 / ticks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_in_name() {
        let line = "1234 (java (x) y) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 30 0 100 0 0";
        let secs = parse_stat(line, 100.0).unwrap();
        assert!((secs - 3.0).abs() < 1e-9, "{secs}");
    }

    #[test]
    fn reads_own_process() {
        assert!(cpu_seconds("self").unwrap() >= 0.0);
        assert!(rss_bytes("self").unwrap() > 0);
    }

    #[test]
    fn parses_rss_line() {
        let status = "Name:\tinkless\nVmPeak:\t  9000 kB\nVmRSS:\t    2048 kB\nThreads:\t4\n";
        assert_eq!(parse_rss(status).unwrap(), 2048 * 1024);
        assert!(parse_rss("Name:\tx\n").is_err());
    }
}
