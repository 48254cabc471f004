//! The loop's clock: `time.monotonic()`, read without a Python call.

/// Seconds on CLOCK_MONOTONIC, converted the way CPython's `time.monotonic()` converts them, so
/// the two clocks can be compared and mixed freely.
pub fn monotonic() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC always exists on the supported systems.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    // i64 nanoseconds last 292 years of uptime; i64 -> f64 is one instruction (i128 is not).
    let nanos = ts.tv_sec * 1_000_000_000 + ts.tv_nsec;
    nanos as f64 / 1e9
}

#[cfg(test)]
mod tests {
    #[test]
    fn monotonic_moves_forward() {
        let a = super::monotonic();
        let b = super::monotonic();
        assert!(b >= a);
        assert!(a > 0.0);
    }
}
