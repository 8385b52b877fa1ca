//! This process's resident memory, read from `/proc/self/status` (Linux only).

/// `(VmRSS, VmHWM)` of this process in bytes: the resident set now and its peak so far.
/// `None` where `/proc/self/status` does not exist or lacks the fields (not Linux).
pub fn rss_and_peak_bytes() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u64> { status.lines().find(|l| l.starts_with(name))?.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024) };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// This process's peak resident memory (`VmHWM`) in bytes, where the system reports one.
pub fn peak_rss_bytes() -> Option<u64> {
    rss_and_peak_bytes().map(|(_, peak)| peak)
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn peak_covers_a_touched_allocation() {
        let (_, before) = super::rss_and_peak_bytes().expect("Linux has /proc/self/status");
        let v = vec![1u8; 64 << 20];
        let (rss, peak) = super::rss_and_peak_bytes().expect("Linux has /proc/self/status");
        assert!(v.iter().all(|&b| b == 1));
        assert!(peak >= rss && peak >= before + (60 << 20), "peak {peak} rss {rss} before {before}");
    }
}
