//! Shared pieces of the `loadgen` client and the `echo-native` server: command-line options,
//! a TCP-or-Unix stream and listener for mio, and CPU time read from `/proc`.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process;

use mio::event::Source;
use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::{Interest, Registry, Token};

/// `--key value` options; every key must be one of `allowed`, and flags are not supported.
pub struct Options {
    values: HashMap<String, String>,
    usage: &'static str,
}

impl Options {
    /// Parses the process arguments; prints `usage` and exits on `--help` or a malformed option.
    pub fn parse(allowed: &[&str], usage: &'static str) -> Options {
        let mut values = HashMap::new();
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            if arg == "-h" || arg == "--help" {
                println!("{usage}");
                process::exit(0);
            }
            let key = match arg.strip_prefix("--") {
                Some(key) if allowed.contains(&key) => key.to_string(),
                _ => fail(usage, &format!("unknown option {arg}")),
            };
            match args.next() {
                Some(value) => values.insert(key, value),
                None => fail(usage, &format!("{arg} needs a value")),
            };
        }
        Options { values, usage }
    }

    /// The raw value of `--key`, if given.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// `--key` parsed as `T`, or `default` when absent; exits on a value that does not parse.
    pub fn parsed<T: std::str::FromStr>(&self, key: &str, default: T) -> T {
        match self.get(key) {
            None => default,
            Some(v) => v
                .parse()
                .unwrap_or_else(|_| fail(self.usage, &format!("bad value for --{key}: {v}"))),
        }
    }

    /// Where to connect or listen: `--unix PATH`, else `--addr HOST:PORT` (or `default_addr`).
    pub fn endpoint(&self, default_addr: &str) -> Endpoint {
        match (self.get("unix"), self.get("addr")) {
            (Some(_), Some(_)) => fail(self.usage, "give either --addr or --unix, not both"),
            (Some(path), None) => Endpoint::Unix(path.to_string()),
            (None, addr) => {
                let addr = addr.unwrap_or(default_addr);
                Endpoint::Tcp(addr.parse().unwrap_or_else(|_| {
                    fail(
                        self.usage,
                        &format!("bad address {addr} (expected IP:PORT)"),
                    )
                }))
            }
        }
    }
}

/// Prints an error and the usage text on stderr, then exits with status 2.
pub fn fail(usage: &str, msg: &str) -> ! {
    eprintln!("error: {msg}\n\n{usage}");
    process::exit(2)
}

/// A TCP address or a Unix socket path.
pub enum Endpoint {
    Tcp(SocketAddr),
    Unix(String),
}

/// A connected, non-blocking stream, over TCP (with TCP_NODELAY) or a Unix socket.
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    /// Connects with a blocking connect, then switches the socket to non-blocking mode.
    pub fn connect(endpoint: &Endpoint) -> io::Result<Stream> {
        match endpoint {
            Endpoint::Tcp(addr) => {
                let s = std::net::TcpStream::connect(addr)?;
                s.set_nodelay(true)?;
                s.set_nonblocking(true)?;
                Ok(Stream::Tcp(TcpStream::from_std(s)))
            }
            Endpoint::Unix(path) => {
                let s = std::os::unix::net::UnixStream::connect(path)?;
                s.set_nonblocking(true)?;
                Ok(Stream::Unix(UnixStream::from_std(s)))
            }
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Delegates mio registration to the inner socket.
macro_rules! delegate_source {
    ($ty:ident) => {
        impl Source for $ty {
            fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
                match self {
                    $ty::Tcp(s) => s.register(r, t, i),
                    $ty::Unix(s) => s.register(r, t, i),
                }
            }

            fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
                match self {
                    $ty::Tcp(s) => s.reregister(r, t, i),
                    $ty::Unix(s) => s.reregister(r, t, i),
                }
            }

            fn deregister(&mut self, r: &Registry) -> io::Result<()> {
                match self {
                    $ty::Tcp(s) => s.deregister(r),
                    $ty::Unix(s) => s.deregister(r),
                }
            }
        }
    };
}

delegate_source!(Stream);
delegate_source!(Listener);

/// A non-blocking listening socket, over TCP or a Unix socket.
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    /// Binds `endpoint` (a stale Unix socket file is removed first).
    pub fn bind(endpoint: &Endpoint) -> io::Result<Listener> {
        match endpoint {
            Endpoint::Tcp(addr) => Ok(Listener::Tcp(TcpListener::bind(*addr)?)),
            Endpoint::Unix(path) => {
                if Path::new(path).exists() {
                    std::fs::remove_file(path)?;
                }
                Ok(Listener::Unix(UnixListener::bind(path)?))
            }
        }
    }

    /// What to print after "READY ": the bound port, or the socket path.
    pub fn describe(&self) -> io::Result<String> {
        match self {
            Listener::Tcp(l) => Ok(l.local_addr()?.port().to_string()),
            Listener::Unix(l) => Ok(l
                .local_addr()?
                .as_pathname()
                .map(|p| p.display().to_string())
                .unwrap_or_default()),
        }
    }

    /// Accepts one pending connection (TCP ones get TCP_NODELAY).
    pub fn accept(&self) -> io::Result<Stream> {
        match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept()?;
                s.set_nodelay(true)?;
                Ok(Stream::Tcp(s))
            }
            Listener::Unix(l) => Ok(Stream::Unix(l.accept()?.0)),
        }
    }
}

/// CPU time (user + system, all threads) used so far by process `pid` ("self" for this one),
/// in microseconds, from `/proc/PID/stat`; its resolution is one clock tick (usually 10 ms).
pub fn cpu_time_us(pid: &str) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; the fields after it are space-separated,
    // starting with field 3 (state): utime and stime are fields 14 and 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad /proc stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> io::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad /proc stat"))
    };
    let total = ticks(11)? + ticks(12)?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as u64 } else { 100 };
    Ok(total * 1_000_000 / hz)
}

/// Per-CPU (busy, total) time in clock ticks since boot, from `/proc/stat`; busy is everything
/// but idle and iowait (so it includes interrupts and time stolen by a hypervisor).
pub fn cpu_ticks_per_cpu() -> io::Result<Vec<(u64, u64)>> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let mut cpus = Vec::new();
    for line in stat.lines() {
        let Some(rest) = line.strip_prefix("cpu") else {
            continue;
        };
        if !rest.starts_with(|c: char| c.is_ascii_digit()) {
            continue; // the "cpu" line sums all CPUs
        }
        // user nice system idle iowait irq softirq steal (guest time is already in user)
        let ticks: Vec<u64> = rest
            .split_whitespace()
            .skip(1)
            .take(8)
            .filter_map(|f| f.parse().ok())
            .collect();
        if ticks.len() < 8 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "bad /proc/stat"));
        }
        let total: u64 = ticks.iter().sum();
        cpus.push((total - ticks[3] - ticks[4], total));
    }
    Ok(cpus)
}

/// The main of a native server: parses `allowed` options, binds the endpoint (default
/// 127.0.0.1:0), prints "READY <port or path>" and runs `serve` until it fails; errors go to
/// stderr as "`name`: ..." with exit status 1.
pub fn serve_main(
    name: &str,
    allowed: &[&str],
    usage: &'static str,
    serve: impl FnOnce(Listener) -> io::Result<()>,
) {
    let opts = Options::parse(allowed, usage);
    let endpoint = opts.endpoint("127.0.0.1:0");
    let result = Listener::bind(&endpoint).and_then(|listener| {
        println!("READY {}", listener.describe()?);
        io::stdout().flush()?;
        serve(listener)
    });
    if let Err(e) = result {
        eprintln!("{name}: {e}");
        process::exit(1);
    }
}

/// A connection of a native server: what `serve_connections` needs of it.
pub trait Connection {
    fn new(stream: Stream) -> Self;
    fn stream(&mut self) -> &mut Stream;
    /// Handles a readiness event; Ok(false) once the connection is done (it is then dropped).
    fn ready(&mut self, event: &mio::event::Event) -> io::Result<bool>;
}

const LISTENER: Token = Token(usize::MAX);

/// A native server's event loop (mio, one thread): accepts every connection, registers it for
/// reading and writing under its slot's token (freed slots are reused), and hands its events to
/// it. Runs until an accept or poll error.
pub fn serve_connections<C: Connection>(mut listener: Listener) -> io::Result<()> {
    let mut poll = mio::Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut events = mio::Events::with_capacity(1024);
    let mut slots: Vec<Option<C>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    loop {
        match poll.poll(&mut events, None) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => other?,
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                // mio's readiness is edge-triggered: accept until there is none left.
                loop {
                    let stream = match listener.accept() {
                        Ok(s) => s,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    };
                    let i = free.pop().unwrap_or_else(|| {
                        slots.push(None);
                        slots.len() - 1
                    });
                    let connection = slots[i].insert(C::new(stream));
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    let registry = poll.registry();
                    if registry
                        .register(connection.stream(), Token(i), interest)
                        .is_err()
                    {
                        slots[i] = None;
                        free.push(i);
                    }
                }
                continue;
            }
            let Token(i) = event.token();
            let Some(connection) = slots.get_mut(i).and_then(Option::as_mut) else {
                continue;
            };
            if !connection.ready(event).unwrap_or(false) {
                let _ = poll.registry().deregister(connection.stream());
                slots[i] = None;
                free.push(i);
            }
        }
    }
}
