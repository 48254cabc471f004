//! The loop's clock: `time.monotonic()`, read without a Python call, from the same source as
//! CPython's so that the two can be compared and mixed freely.

/// Seconds on CLOCK_MONOTONIC, converted the way CPython's `time.monotonic()` converts them.
#[cfg(not(any(target_os = "macos", target_os = "ios")))]
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

#[cfg(any(target_os = "macos", target_os = "ios"))]
#[repr(C)]
struct MachTimebaseInfo {
    numer: u32,
    denom: u32,
}

#[cfg(any(target_os = "macos", target_os = "ios"))]
extern "C" {
    /// libSystem's clock of `time.monotonic()` on macOS (bound here: libc deprecates its own).
    fn mach_absolute_time() -> u64;
    fn mach_timebase_info(info: *mut MachTimebaseInfo) -> std::os::raw::c_int;
}

/// Seconds of `mach_absolute_time()`, which CPython's `time.monotonic()` reads on macOS.
#[cfg(any(target_os = "macos", target_os = "ios"))]
pub fn monotonic() -> f64 {
    use std::sync::OnceLock;
    static TIMEBASE: OnceLock<(u64, u64)> = OnceLock::new();
    let (numer, denom) = *TIMEBASE.get_or_init(|| {
        let mut info = MachTimebaseInfo { numer: 0, denom: 0 };
        // SAFETY: a valid out-pointer; the call cannot fail on a running system.
        unsafe { mach_timebase_info(&mut info) };
        (u64::from(info.numer), u64::from(info.denom.max(1)))
    });
    // SAFETY: no arguments, no preconditions.
    let ticks = unsafe { mach_absolute_time() };
    let nanos = u128::from(ticks) * u128::from(numer) / u128::from(denom);
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
