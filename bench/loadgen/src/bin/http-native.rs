//! Native HTTP server: one thread, mio (epoll), the same fixed responses as
//! bench/http/server_httptools.py. It is the HTTP benchmark's reference point: the server CPU
//! per request (and per connection, with `Connection: close`) that the kernel and this machine
//! leave when no Python runs at all.

use std::io::{self, ErrorKind, Read, Write};

use echo_bench::{Listener, Stream};
use mio::{Events, Interest, Poll, Token};

const USAGE: &str = "\
usage: http-native [--addr IP:PORT]

Single-threaded mio HTTP/1.1 server. Every request (a head ending in an empty line; bodies are
not supported) gets a 200 with a 13-byte body; \"Connection: close\" in a request makes the
server answer with \"Connection: close\" and close. Listens on --addr (default 127.0.0.1:0),
prints \"READY <port>\" once listening, and runs until killed.";

const LISTENER: Token = Token(usize::MAX);
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

/// Runs the event loop forever (or until an accept or epoll error).
fn serve(mut listener: Listener) -> io::Result<()> {
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut events = Events::with_capacity(1024);
    let mut slots: Vec<Option<Client>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    loop {
        match poll.poll(&mut events, None) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            other => other?,
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                accept_all(&listener, &poll, &mut slots, &mut free)?;
                continue;
            }
            let i = event.token().0;
            let Some(client) = slots.get_mut(i).and_then(Option::as_mut) else {
                continue;
            };
            if !client.drive().unwrap_or(false) {
                let _ = poll.registry().deregister(&mut client.stream);
                slots[i] = None;
                free.push(i);
            }
        }
    }
}

/// Accepts every pending connection (mio's readiness is edge-triggered) and registers it; its
/// request is read when epoll reports it, as the event loops do.
fn accept_all(
    listener: &Listener,
    poll: &Poll,
    slots: &mut Vec<Option<Client>>,
    free: &mut Vec<usize>,
) -> io::Result<()> {
    loop {
        let stream = match listener.accept() {
            Ok(s) => s,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let i = free.pop().unwrap_or_else(|| {
            slots.push(None);
            slots.len() - 1
        });
        let client = slots[i].insert(Client::new(stream));
        let interest = Interest::READABLE | Interest::WRITABLE;
        if poll
            .registry()
            .register(&mut client.stream, Token(i), interest)
            .is_err()
        {
            slots[i] = None;
            free.push(i);
        }
    }
}

fn main() {
    echo_bench::serve_main("http-native", &["addr"], USAGE, serve);
}
