//! CPU time (user + system) of this process and of another one by pid: how `perf` shows
//! that the load generator was not the bottleneck.

use std::time::Duration;

/// CPU time used so far by every thread of this process.
#[cfg(unix)]
pub fn own_cpu() -> Option<Duration> {
    // SAFETY: getrusage only writes the struct it is given, which is fully initialised
    // (zeroed) and lives across the call.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return None;
        }
        usage
    };
    let micros = |t: libc::timeval| -> Option<u64> {
        Some(u64::try_from(t.tv_sec).ok()? * 1_000_000 + u64::try_from(t.tv_usec).ok()?)
    };
    Some(Duration::from_micros(
        micros(usage.ru_utime)? + micros(usage.ru_stime)?,
    ))
}

#[cfg(not(unix))]
pub fn own_cpu() -> Option<Duration> {
    None
}

/// CPU time used so far by process `pid`, from `/proc/<pid>/stat` (Linux).
pub fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ticks = stat_cpu_ticks(&stat)?;
    Some(Duration::from_secs_f64(
        ticks as f64 / clock_ticks_per_second(),
    ))
}

/// utime + stime (fields 14 and 15, in clock ticks) of a `/proc/<pid>/stat` line.
fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may itself contain spaces and
    // parentheses: count fields from the last ')'. Field 3 is the first after it.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(14 - 3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(unix)]
fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a configuration value and touches no memory of ours.
    match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
        n if n > 0 => n as f64,
        _ => 100.0, // USER_HZ on every mainstream Linux architecture
    }
}

#[cfg(not(unix))]
fn clock_ticks_per_second() -> f64 {
    100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let stat = "4242 (we ird) name)) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    250 75 0 0 20 0 3 0 12345 1000000 500 18446744073709551615";
        assert_eq!(stat_cpu_ticks(stat), Some(325));
        assert_eq!(stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn this_process_has_a_cpu_time_both_ways() {
        // Burn a little CPU so neither reading is zero.
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert_ne!(std::hint::black_box(x), 1);
        let own = own_cpu().unwrap();
        assert!(own > Duration::ZERO);
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(process_cpu(std::process::id()).is_some());
        }
    }
}
