//! Native HTTP server: one thread, mio (epoll), the same fixed responses as
//! bench/http/server_httptools.py. It is the HTTP benchmark's reference point: the server CPU
//! per request (and per connection, with `Connection: close`) that the kernel and this machine
//! leave when no Python runs at all.

use std::io::{self, ErrorKind, Read, Write};

use echo_bench::{serve_connections, Connection, Stream};
use mio::event::Event;

const USAGE: &str = "\
usage: http-native [--addr IP:PORT]

Single-threaded mio HTTP/1.1 server. Every request (a head ending in an empty line; bodies are
not supported) gets a 200 with a 13-byte body; \"Connection: close\" in a request makes the
server answer with \"Connection: close\" and close. Listens on --addr (default 127.0.0.1:0),
prints \"READY <port>\" once listening, and runs until killed.";

const BUF_SIZE: usize = 64 * 1024;

const OK_KEEP_ALIVE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nConnection: keep-alive\r\n\r\nHello, World!";
const OK_CLOSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nConnection: close\r\n\r\nHello, World!";

/// One client: bytes received and not yet parsed, and the responses not yet written.
struct Client {
    stream: Stream,
    input: Vec<u8>,
    output: Vec<u8>,
    written: usize,
    close_after_write: bool,
}

impl Client {
    fn new(stream: Stream) -> Client {
        Client {
            stream,
            input: Vec::new(),
            output: Vec::new(),
            written: 0,
            close_after_write: false,
        }
    }

    /// Answers every complete request head in `input`.
    fn answer(&mut self) {
        while let Some(end) = find(&self.input, b"\r\n\r\n") {
            let head = &self.input[..end];
            let close = find_ignore_case(head, b"connection: close").is_some();
            self.output
                .extend_from_slice(if close { OK_CLOSE } else { OK_KEEP_ALIVE });
            self.input.drain(..end + 4);
            if close {
                self.close_after_write = true;
                self.input.clear();
                return;
            }
        }
    }

    /// Reads, answers and writes until the socket would block; Ok(false) once the connection is
    /// done (the peer went away, or a `Connection: close` response is written).
    fn drive(&mut self) -> io::Result<bool> {
        let mut buf = [0u8; BUF_SIZE];
        loop {
            while self.written < self.output.len() {
                match self.stream.write(&self.output[self.written..]) {
                    Ok(n) => self.written += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(true),
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            self.output.clear();
            self.written = 0;
            if self.close_after_write {
                return Ok(false);
            }
            match self.stream.read(&mut buf) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.input.extend_from_slice(&buf[..n]);
                    self.answer();
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn find_ignore_case(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

impl Connection for Client {
    fn new(stream: Stream) -> Client {
        Client::new(stream)
    }

    fn stream(&mut self) -> &mut Stream {
        &mut self.stream
    }

    fn ready(&mut self, _event: &Event) -> io::Result<bool> {
        self.drive()
    }
}

fn main() {
    echo_bench::serve_main("http-native", &["addr"], USAGE, serve_connections::<Client>);
}
