//! Echo load generator: N connections, each doing request/response ping-pong with an echo
//! server, all driven by one thread with mio. Prints one JSON object on stdout.

use std::io::{self, ErrorKind, Read, Write};
use std::process;
use std::time::{Duration, Instant};

use echo_bench::{cpu_ticks_per_cpu, cpu_time_us, fail, Endpoint, Options, Stream};
use mio::{Events, Interest, Poll, Token};

const USAGE: &str = "\
usage: loadgen [--addr IP:PORT | --unix PATH] [--conns N] [--size BYTES]
               [--duration SECS] [--warmup SECS] [--server-pid PID]

Keeps N connections (default 10) each writing SIZE bytes (default 1024), reading exactly SIZE
bytes back (checking that they echo what was sent) and starting over. Requests completed during
the warm-up (default 1 s) are discarded; the measured window (default 5 s) follows. With
--server-pid, the server's CPU time (/proc/PID/stat) is read at the window's start and end.
Default address 127.0.0.1:25000. Output: one JSON object on stdout; errors on stderr, exit 1.";

/// Largest read done at once; responses are checked chunk by chunk, never stored whole.
const READ_CHUNK: usize = 256 * 1024;

/// One client connection and the request it has in flight.
struct Conn {
    stream: Stream,
    /// The current request; `tx[0]` and `tx[len - 1]` are stamped with the request number.
    tx: Vec<u8>,
    sent: usize,
    recvd: usize,
    seq: u64,
    started: Instant,
    can_read: bool,
    can_write: bool,
}

impl Conn {
    fn new(stream: Stream, size: usize, now: Instant) -> Conn {
        // A byte pattern that does not repeat every 256 bytes, so a shifted echo is caught.
        let tx = (0..size).map(|i| (i ^ (i >> 8)) as u8).collect();
        let mut conn = Conn {
            stream,
            tx,
            sent: 0,
            recvd: 0,
            seq: 0,
            started: now,
            can_read: false,
            can_write: true,
        };
        conn.start_request(now);
        conn
    }

    /// Stamps the next request number into the payload and resets the progress counters.
    fn start_request(&mut self, now: Instant) {
        self.seq += 1;
        let last = self.tx.len() - 1;
        self.tx[0] = self.seq as u8;
        self.tx[last] = (self.seq >> 8) as u8 ^ 0x5a;
        self.sent = 0;
        self.recvd = 0;
        self.started = now;
    }

    /// Writes and reads as far as the socket allows without blocking (the events are
    /// edge-triggered, so each direction is used until it would block, or, for reads, until
    /// the response is complete).
    fn drive(&mut self, scratch: &mut [u8], stats: &mut Stats) -> Result<(), String> {
        loop {
            let mut progressed = false;
            if self.sent < self.tx.len() && self.can_write {
                match self.stream.write(&self.tx[self.sent..]) {
                    Ok(0) => return Err("write returned 0".into()),
                    Ok(n) => {
                        self.sent += n;
                        progressed = true;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => self.can_write = false,
                    Err(e) if e.kind() == ErrorKind::Interrupted => progressed = true,
                    Err(e) => return Err(format!("write: {e}")),
                }
            }
            if self.recvd < self.sent && self.can_read {
                let want = (self.tx.len() - self.recvd).min(scratch.len());
                match self.stream.read(&mut scratch[..want]) {
                    Ok(0) => return Err("the server closed the connection".into()),
                    Ok(n) => {
                        self.check(&scratch[..n])?;
                        self.recvd += n;
                        progressed = true;
                        if self.recvd == self.tx.len() {
                            let now = Instant::now();
                            stats.record(now - self.started);
                            self.start_request(now);
                            // The socket is now empty: the next response can only arrive after
                            // the next request is written, and its arrival raises a new epoll
                            // event, so the read that would only say EAGAIN is skipped.
                            self.can_read = false;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => self.can_read = false,
                    Err(e) if e.kind() == ErrorKind::Interrupted => progressed = true,
                    Err(e) => return Err(format!("read: {e}")),
                }
            }
            if !progressed {
                return Ok(());
            }
        }
    }

    /// Cheap echo check: the first and last byte of every chunk read must match what was sent.
    fn check(&self, chunk: &[u8]) -> Result<(), String> {
        let expected = &self.tx[self.recvd..self.recvd + chunk.len()];
        if chunk.first() != expected.first() || chunk.last() != expected.last() {
            return Err(format!(
                "echo mismatch in request {} at bytes {}..{}",
                self.seq,
                self.recvd,
                self.recvd + chunk.len()
            ));
        }
        Ok(())
    }
}

/// Requests completed in the current phase and their latencies.
#[derive(Default)]
struct Stats {
    latencies_ns: Vec<u64>,
}

impl Stats {
    fn record(&mut self, latency: Duration) {
        self.latencies_ns.push(latency.as_nanos() as u64);
    }

    /// The latency at percentile `p` (0..=100), in microseconds.
    fn percentile_us(sorted_ns: &[u64], p: f64) -> f64 {
        if sorted_ns.is_empty() {
            return 0.0;
        }
        let i = ((p / 100.0) * (sorted_ns.len() - 1) as f64).round() as usize;
        sorted_ns[i] as f64 / 1000.0
    }
}

/// Clock and CPU readings at one edge of the measured window.
struct Snapshot {
    at: Instant,
    server_us: Option<u64>,
    client_us: u64,
    /// (busy, total) ticks of every CPU, to see what else ran during the window.
    cpus: Vec<(u64, u64)>,
}

impl Snapshot {
    fn take(server_pid: Option<&str>) -> Result<Snapshot, String> {
        let server_us = match server_pid {
            Some(pid) => Some(cpu_time_us(pid).map_err(|e| format!("server pid {pid}: {e}"))?),
            None => None,
        };
        let client_us = cpu_time_us("self").map_err(|e| format!("/proc/self/stat: {e}"))?;
        let cpus = cpu_ticks_per_cpu().map_err(|e| format!("/proc/stat: {e}"))?;
        Ok(Snapshot {
            at: Instant::now(),
            server_us,
            client_us,
            cpus,
        })
    }
}

/// What was asked for on the command line.
struct Config {
    endpoint: Endpoint,
    conns: usize,
    size: usize,
    duration: Duration,
    warmup: Duration,
    server_pid: Option<String>,
}

impl Config {
    fn from_args() -> Config {
        let opts = Options::parse(
            &[
                "addr",
                "unix",
                "conns",
                "size",
                "duration",
                "warmup",
                "server-pid",
            ],
            USAGE,
        );
        let secs = |key, default: f64| {
            let v: f64 = opts.parsed(key, default);
            if !(v >= 0.0 && v.is_finite()) {
                fail(USAGE, &format!("--{key} must be a number of seconds >= 0"));
            }
            Duration::from_secs_f64(v)
        };
        let config = Config {
            endpoint: opts.endpoint("127.0.0.1:25000"),
            conns: opts.parsed("conns", 10),
            size: opts.parsed("size", 1024),
            duration: secs("duration", 5.0),
            warmup: secs("warmup", 1.0),
            server_pid: opts.get("server-pid").map(str::to_string),
        };
        if config.conns == 0 || config.size == 0 || config.duration.is_zero() {
            fail(USAGE, "--conns, --size and --duration must be above 0");
        }
        config
    }
}

/// Runs the warm-up and the measured window; returns the JSON report.
fn run(config: &Config) -> Result<String, String> {
    let mut poll = Poll::new().map_err(|e| format!("epoll: {e}"))?;
    let mut conns = connect_all(config, &poll)?;
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; READ_CHUNK];
    let mut stats = Stats::default();
    for (i, conn) in conns.iter_mut().enumerate() {
        conn.drive(&mut scratch, &mut stats)
            .map_err(|e| format!("connection {i}: {e}"))?;
    }

    let measure_at = Instant::now() + config.warmup;
    let end_at = measure_at + config.duration;
    let mut window_start: Option<Snapshot> = None;
    loop {
        let now = Instant::now();
        if window_start.is_none() && now >= measure_at {
            window_start = Some(Snapshot::take(config.server_pid.as_deref())?);
            stats.latencies_ns.clear();
        }
        if now >= end_at {
            break;
        }
        let deadline = if window_start.is_some() {
            end_at
        } else {
            measure_at
        };
        match poll.poll(&mut events, Some(deadline.saturating_duration_since(now))) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("epoll_wait: {e}")),
            Ok(()) => {}
        }
        for event in events.iter() {
            let Token(i) = event.token();
            let conn = &mut conns[i];
            let failed = event.is_error();
            conn.can_read |= failed || event.is_readable() || event.is_read_closed();
            conn.can_write |= failed || event.is_writable() || event.is_write_closed();
            conn.drive(&mut scratch, &mut stats)
                .map_err(|e| format!("connection {i}: {e}"))?;
        }
    }
    let end = Snapshot::take(config.server_pid.as_deref())?;
    let start = window_start.expect("the window starts before it ends");
    Ok(report(config, &start, &end, &mut stats))
}

/// Opens every connection and registers it with `poll`.
fn connect_all(config: &Config, poll: &Poll) -> Result<Vec<Conn>, String> {
    let mut conns = Vec::with_capacity(config.conns);
    for i in 0..config.conns {
        let stream = Stream::connect(&config.endpoint).map_err(|e| format!("connect: {e}"))?;
        let mut conn = Conn::new(stream, config.size, Instant::now());
        poll.registry()
            .register(
                &mut conn.stream,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|e| format!("epoll_ctl: {e}"))?;
        conns.push(conn);
    }
    Ok(conns)
}

/// Formats the measured window as one line of JSON.
fn report(config: &Config, start: &Snapshot, end: &Snapshot, stats: &mut Stats) -> String {
    let elapsed = (end.at - start.at).as_secs_f64();
    let lat = &mut stats.latencies_ns;
    lat.sort_unstable();
    let requests = lat.len() as u64;
    let server_cpu_us = match (start.server_us, end.server_us) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    let per_req = |us: u64| {
        if requests > 0 {
            us as f64 / requests as f64
        } else {
            0.0
        }
    };
    let json_opt = |v: Option<f64>| v.map_or("null".to_string(), |v| format!("{v:.3}"));
    let transport = match config.endpoint {
        Endpoint::Tcp(_) => "tcp",
        Endpoint::Unix(_) => "unix",
    };
    format!(
        concat!(
            "{{\"transport\":\"{}\",\"conns\":{},\"size\":{},\"warmup_s\":{:.3},",
            "\"duration_s\":{:.4},\"requests\":{},\"rps\":{:.1},",
            "\"latency_us\":{{\"p50\":{:.1},\"p90\":{:.1},\"p99\":{:.1},\"max\":{:.1}}},",
            "\"server_cpu_us\":{},\"server_us_per_req\":{},\"client_cpu_pct\":{:.1},",
            "\"cpu_busy_pct\":[{}]}}"
        ),
        transport,
        config.conns,
        config.size,
        config.warmup.as_secs_f64(),
        elapsed,
        requests,
        requests as f64 / elapsed,
        Stats::percentile_us(lat, 50.0),
        Stats::percentile_us(lat, 90.0),
        Stats::percentile_us(lat, 99.0),
        Stats::percentile_us(lat, 100.0),
        server_cpu_us.map_or("null".to_string(), |us| us.to_string()),
        json_opt(server_cpu_us.map(per_req)),
        (end.client_us - start.client_us) as f64 / 1e4 / elapsed,
        busy_pct(&start.cpus, &end.cpus),
    )
}

/// Each CPU's busy share of the window in percent, comma-separated.
fn busy_pct(start: &[(u64, u64)], end: &[(u64, u64)]) -> String {
    let pct = |((b0, t0), (b1, t1)): (&(u64, u64), &(u64, u64))| {
        let total = t1.saturating_sub(*t0).max(1);
        format!(
            "{:.1}",
            100.0 * b1.saturating_sub(*b0) as f64 / total as f64
        )
    };
    start.iter().zip(end).map(pct).collect::<Vec<_>>().join(",")
}

fn main() {
    let config = Config::from_args();
    match run(&config) {
        Ok(json) => {
            let mut out = io::stdout().lock();
            // Ignore a closed stdout: there is nobody left to tell.
            let _ = writeln!(out, "{json}");
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            process::exit(1);
        }
    }
}
