//! What a perf run counts and how it reports: the shared counters and latency histograms
//! that producers and consumers record into, the once-a-second progress line, and the
//! final [`Summary`] (text or JSON).

use crate::histogram::{AtomicHistogram, Histogram};
use serde::Serialize;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Counters and histograms shared by every producer and consumer of a run.
pub struct Stats {
    /// Time zero of the run: message timestamps are nanoseconds since it.
    epoch: Instant,
    /// Written into every body beside the timestamp, so that messages left in a queue by
    /// an earlier run are counted but not mistaken for ours when measuring latency.
    pub run_id: u64,
    pub sent: AtomicU64,
    pub confirmed: AtomicU64,
    pub nacked: AtomicU64,
    pub received: AtomicU64,
    /// Publish to delivery, in nanoseconds, measured by consumers: until the delivery
    /// reached the consumer's socket (see [`super::arrival`]).
    pub latency: AtomicHistogram,
    /// Publish to delivery until the load generator read it: `latency` plus the generator's
    /// own wake-up.
    pub read_latency: AtomicHistogram,
    /// Publish to confirm, in nanoseconds, measured by producers: until the confirm reached
    /// perf's socket, as for `latency`.
    pub confirm_latency: AtomicHistogram,
}

impl Stats {
    pub fn new(run_id: u64) -> Stats {
        Stats {
            epoch: Instant::now(),
            run_id,
            sent: AtomicU64::new(0),
            confirmed: AtomicU64::new(0),
            nacked: AtomicU64::new(0),
            received: AtomicU64::new(0),
            latency: AtomicHistogram::new(),
            read_latency: AtomicHistogram::new(),
            confirm_latency: AtomicHistogram::new(),
        }
    }

    /// Nanoseconds since the start of the run (monotonic, shared by every task).
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// When the frames of a read arrived: `waited` is how long they sat in the socket, if
    /// known.
    pub fn arrival(&self, waited: Option<Duration>) -> Arrival {
        let read = self.now_ns();
        let waited = waited.map_or(0, |w| u64::try_from(w.as_nanos()).unwrap_or(u64::MAX));
        Arrival {
            socket: read.saturating_sub(waited),
            read,
        }
    }

    pub fn counts(&self) -> Counts {
        // Relaxed: counters are statistics; a count read a moment early is harmless.
        Counts {
            sent: self.sent.load(Ordering::Relaxed),
            confirmed: self.confirmed.load(Ordering::Relaxed),
            nacked: self.nacked.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
        }
    }
}

/// When inbound frames arrived, in the run's nanoseconds: when they reached the socket and
/// when the load generator read them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    pub socket: u64,
    pub read: u64,
}

/// Writes the send time and run id at the start of a body (as much as fits).
pub fn stamp(body: &mut [u8], sent_ns: u64, run_id: u64) {
    let fields = sent_ns
        .to_le_bytes()
        .into_iter()
        .chain(run_id.to_le_bytes());
    for (slot, byte) in body.iter_mut().zip(fields) {
        *slot = byte;
    }
}

/// The send time of a body stamped by this run, if it carries one. A body of 8 to 15 bytes
/// has no room for the run id and is trusted; a shorter one has no timestamp.
pub fn read_stamp(body: &[u8], run_id: u64) -> Option<u64> {
    let sent = u64::from_le_bytes(body.get(..8)?.try_into().ok()?);
    match body.get(8..16) {
        Some(id) if id != run_id.to_le_bytes() => None,
        _ => Some(sent),
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub sent: u64,
    pub confirmed: u64,
    pub nacked: u64,
    pub received: u64,
}

/// Turns the shared stats into a progress line each second, and keeps the run's totals.
pub struct Reporter {
    started: Instant,
    last: Counts,
    last_at: Instant,
    show_confirms: bool,
    show_received: bool,
    interval_latency: Histogram,
    interval_confirm: Histogram,
    /// Where a drain lands before it is added to the interval and the totals.
    scratch: Histogram,
    pub total_latency: Histogram,
    pub total_read_latency: Histogram,
    pub total_confirm: Histogram,
}

impl Reporter {
    pub fn new(started: Instant, show_confirms: bool, show_received: bool) -> Reporter {
        Reporter {
            started,
            last: Counts::default(),
            last_at: started,
            show_confirms,
            show_received,
            interval_latency: Histogram::new(),
            interval_confirm: Histogram::new(),
            scratch: Histogram::new(),
            total_latency: Histogram::new(),
            total_read_latency: Histogram::new(),
            total_confirm: Histogram::new(),
        }
    }

    /// Drains the histograms and returns the progress line for the time since the last tick.
    pub fn tick(&mut self, stats: &Stats) -> String {
        let now = Instant::now();
        let counts = stats.counts();
        self.drain(stats);
        let secs = now.duration_since(self.last_at).as_secs_f64().max(1e-9);
        let rate = |now: u64, before: u64| (now.saturating_sub(before)) as f64 / secs;
        let mut line = format!(
            "{:>4}s  sent {:>9}/s",
            now.duration_since(self.started).as_secs(),
            thousands(rate(counts.sent, self.last.sent))
        );
        if self.show_confirms {
            line += &format!(
                "  confirmed {:>9}/s",
                thousands(rate(counts.confirmed, self.last.confirmed))
            );
            if counts.nacked > self.last.nacked {
                line += &format!("  NACKED {}", counts.nacked - self.last.nacked);
            }
        }
        if self.show_received {
            line += &format!(
                "  received {:>9}/s  latency {}",
                thousands(rate(counts.received, self.last.received)),
                p50_p99(&self.interval_latency)
            );
        }
        if self.show_confirms {
            line += &format!("  confirm {}", p50_p99(&self.interval_confirm));
        }
        self.interval_latency.clear();
        self.interval_confirm.clear();
        self.last = counts;
        self.last_at = now;
        line
    }

    /// Moves everything recorded so far into the current interval and the totals.
    pub fn drain(&mut self, stats: &Stats) {
        for (source, interval, total) in [
            (
                &stats.latency,
                &mut self.interval_latency,
                &mut self.total_latency,
            ),
            (
                &stats.confirm_latency,
                &mut self.interval_confirm,
                &mut self.total_confirm,
            ),
        ] {
            source.drain_into(&mut self.scratch);
            interval.merge(&self.scratch);
            total.merge(&self.scratch);
            self.scratch.clear();
        }
        // Only in the totals: the progress line shows the latency to the socket.
        stats.read_latency.drain_into(&mut self.total_read_latency);
    }
}

fn p50_p99(h: &Histogram) -> String {
    match (h.percentile(50.0), h.percentile(99.0)) {
        (Some(p50), Some(p99)) => format!("p50 {} p99 {}", nanos(p50), nanos(p99)),
        _ => "-".to_string(),
    }
}

/// A duration in nanoseconds, in the unit that reads best.
pub fn nanos(ns: u64) -> String {
    let ns = ns as f64;
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// A rate or count rounded to a whole number, with thin separators: 1234567 → "1,234,567".
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    /// The percentiles of a histogram of nanoseconds, or `None` when it is empty.
    pub fn of(h: &Histogram) -> Option<Percentiles> {
        let us = |ns: u64| ns as f64 / 1e3;
        Some(Percentiles {
            count: h.count(),
            min: us(h.min()?),
            mean: h.mean()? / 1e3,
            p50: us(h.percentile(50.0)?),
            p95: us(h.percentile(95.0)?),
            p99: us(h.percentile(99.0)?),
            p999: us(h.percentile(99.9)?),
            max: us(h.max()?),
        })
    }
}

/// CPU seconds used during the measured window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CpuReport {
    /// This process (every thread: tasks and lapin's I/O threads), user + system.
    pub tool_s: Option<f64>,
    /// `tool_s` as a percentage of one core over the window.
    pub tool_core_pct: Option<f64>,
    pub broker_pid: Option<u32>,
    pub broker_s: Option<f64>,
    pub broker_core_pct: Option<f64>,
    /// Whether the load generator used less CPU than the broker: if not, the numbers may
    /// measure the tool rather than the broker.
    pub tool_below_broker: Option<bool>,
}

impl CpuReport {
    pub fn new(
        tool: Option<Duration>,
        broker_pid: Option<u32>,
        broker: Option<Duration>,
        window: Duration,
    ) -> CpuReport {
        let pct = |d: Duration| 100.0 * d.as_secs_f64() / window.as_secs_f64().max(1e-9);
        CpuReport {
            tool_s: tool.map(|d| d.as_secs_f64()),
            tool_core_pct: tool.map(pct),
            broker_pid,
            broker_s: broker.map(|d| d.as_secs_f64()),
            broker_core_pct: broker.map(pct),
            tool_below_broker: tool.zip(broker).map(|(t, b)| t < b),
        }
    }
}

/// The end-of-run report.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub scenario: String,
    pub url: String,
    pub producers: usize,
    pub consumers: usize,
    pub queues: usize,
    pub size: usize,
    pub confirm: usize,
    pub persistent: bool,
    pub durable: bool,
    pub autoack: bool,
    pub prefetch: u16,
    pub rate: u64,
    /// The measured window: from the start of publishing to the stop.
    pub duration_s: f64,
    /// Totals at the stop; rates are these divided by `duration_s`.
    pub sent: u64,
    pub confirmed: u64,
    pub nacked: u64,
    pub received: u64,
    pub publish_rate: f64,
    pub confirm_rate: f64,
    pub consume_rate: f64,
    /// Confirms that were outstanding at the stop and arrived while the run wound down.
    pub confirmed_after_stop: u64,
    /// Publish to delivery reaching the consumer's socket, µs (absent without consumers or
    /// with bodies under 8 bytes).
    pub latency_us: Option<Percentiles>,
    /// Publish to the load generator reading the delivery, µs: `latency_us` plus the
    /// generator's own wake-up (what every earlier version reported as the latency).
    pub read_latency_us: Option<Percentiles>,
    /// Publish to the confirm reaching perf's socket, µs (absent without confirms).
    pub confirm_latency_us: Option<Percentiles>,
    pub cpu: CpuReport,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "warren-cli perf against {}", self.url)?;
        writeln!(f, "  {}", self.scenario)?;
        writeln!(f, "  measured over {:.2} s", self.duration_s)?;
        writeln!(
            f,
            "  published  {:>13} msgs  {:>11} msg/s",
            thousands(self.sent as f64),
            thousands(self.publish_rate)
        )?;
        if self.confirm > 0 {
            writeln!(
                f,
                "  confirmed  {:>13} msgs  {:>11} msg/s  ({} nacked, {} more confirmed after the stop)",
                thousands(self.confirmed as f64),
                thousands(self.confirm_rate),
                self.nacked,
                self.confirmed_after_stop
            )?;
        }
        if self.consumers > 0 {
            writeln!(
                f,
                "  consumed   {:>13} msgs  {:>11} msg/s",
                thousands(self.received as f64),
                thousands(self.consume_rate)
            )?;
        }
        let line = |f: &mut fmt::Formatter<'_>, name: &str, p: &Option<Percentiles>| match p {
            Some(p) => {
                let us = |v: f64| nanos((v * 1e3) as u64);
                writeln!(
                    f,
                    "  {name:<17} p50 {}  p95 {}  p99 {}  p99.9 {}  max {}  (mean {}, {} samples)",
                    us(p.p50),
                    us(p.p95),
                    us(p.p99),
                    us(p.p999),
                    us(p.max),
                    us(p.mean),
                    thousands(p.count as f64)
                )
            }
            None => Ok(()),
        };
        line(f, "latency", &self.latency_us)?;
        line(f, "  read by perf", &self.read_latency_us)?;
        line(f, "confirm latency", &self.confirm_latency_us)?;
        let c = &self.cpu;
        match (c.tool_s, c.tool_core_pct) {
            (Some(s), Some(pct)) => {
                write!(f, "  CPU: load generator {s:.2} s ({pct:.0} % of a core)")?
            }
            _ => write!(f, "  CPU: load generator unknown")?,
        }
        match (c.broker_pid, c.broker_s, c.broker_core_pct) {
            (Some(pid), Some(s), Some(pct)) => {
                write!(f, ", broker (pid {pid}) {s:.2} s ({pct:.0} % of a core)")?
            }
            (Some(pid), _, _) => write!(f, ", broker (pid {pid}) unreadable")?,
            _ => {}
        }
        writeln!(f)?;
        match c.tool_below_broker {
            Some(true) => writeln!(f, "  the load generator used less CPU than the broker")?,
            Some(false) => writeln!(
                f,
                "  WARNING: the load generator used more CPU than the broker; these numbers \
                 may measure the tool rather than the broker"
            )?,
            None => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_and_foreign_bodies_are_ignored() {
        let mut body = vec![0u8; 16];
        stamp(&mut body, 123_456_789, 42);
        assert_eq!(read_stamp(&body, 42), Some(123_456_789));
        assert_eq!(read_stamp(&body, 43), None, "another run's message");
        let mut short = vec![0u8; 8];
        stamp(&mut short, 7, 42);
        assert_eq!(read_stamp(&short, 1), Some(7), "no room for the run id");
        let mut tiny = vec![0u8; 5];
        stamp(&mut tiny, 7, 42);
        assert_eq!(read_stamp(&tiny, 42), None);
        let mut big = vec![0u8; 1024];
        stamp(&mut big, 9, 42);
        assert_eq!(read_stamp(&big, 42), Some(9));
        assert!(big[16..].iter().all(|&b| b == 0));
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(1234567.0), "1,234,567");
        assert_eq!(nanos(850), "850 ns");
        assert_eq!(nanos(12_345), "12.3 µs");
        assert_eq!(nanos(1_234_567), "1.23 ms");
        assert_eq!(nanos(2_500_000_000), "2.50 s");
    }

    #[test]
    fn the_progress_line_shows_rates_and_interval_percentiles() {
        let stats = Stats::new(1);
        let start = Instant::now();
        let mut reporter = Reporter::new(start, true, true);
        stats.sent.store(500, Ordering::Relaxed);
        stats.confirmed.store(400, Ordering::Relaxed);
        stats.received.store(300, Ordering::Relaxed);
        for _ in 0..100 {
            stats.latency.record(2_000_000);
        }
        stats.confirm_latency.record(5_000);
        let line = reporter.tick(&stats);
        assert!(line.contains("latency p50 2.00 ms p99 2.00 ms"), "{line}");
        assert!(line.contains("confirm p50 5.0 µs"), "{line}");
        // The next second saw nothing new: no latency, and totals kept everything once.
        let line = reporter.tick(&stats);
        assert!(line.contains("latency -"), "{line}");
        assert_eq!(reporter.total_latency.count(), 100);
        assert_eq!(reporter.total_confirm.count(), 1);
    }
}
