//! Native echo server: one thread, mio (epoll), echoes whatever each connection sends.
//! It is the reference point of the echo benchmark: the most this machine and client allow.

use std::io::{self, ErrorKind, Read, Write};

use echo_bench::{serve_connections, Connection, Stream};
use mio::event::Event;

const USAGE: &str = "\
usage: echo-native [--addr IP:PORT | --unix PATH]

Single-threaded mio echo server. Listens on --addr (default 127.0.0.1:0, i.e. any free port)
or --unix, prints \"READY <port or path>\" once listening, and runs until killed.";

const BUF_SIZE: usize = 256 * 1024;

/// One client: the bytes read but not yet written back are `buf[start..end]`.
struct Client {
    stream: Stream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    can_read: bool,
    can_write: bool,
}

impl Client {
    fn new(stream: Stream) -> Client {
        Client {
            stream,
            buf: vec![0; BUF_SIZE],
            start: 0,
            end: 0,
            can_read: true,
            can_write: true,
        }
    }

    /// Echoes until the socket would block; returns Ok(false) once the peer has gone away.
    fn drive(&mut self) -> io::Result<bool> {
        loop {
            if self.start < self.end {
                if !self.can_write {
                    return Ok(true);
                }
                match self.stream.write(&self.buf[self.start..self.end]) {
                    Ok(n) => self.start += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => self.can_write = false,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
                continue;
            }
            if !self.can_read {
                return Ok(true);
            }
            match self.stream.read(&mut self.buf) {
                Ok(0) => return Ok(false),
                Ok(n) => (self.start, self.end) = (0, n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => self.can_read = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl Connection for Client {
    fn new(stream: Stream) -> Client {
        Client::new(stream)
    }

    fn stream(&mut self) -> &mut Stream {
        &mut self.stream
    }

    fn ready(&mut self, event: &Event) -> io::Result<bool> {
        let failed = event.is_error();
        self.can_read |= failed || event.is_readable() || event.is_read_closed();
        self.can_write |= failed || event.is_writable() || event.is_write_closed();
        self.drive()
    }
}

fn main() {
    echo_bench::serve_main(
        "echo-native",
        &["addr", "unix"],
        USAGE,
        serve_connections::<Client>,
    );
}
