//! Native echo server: one thread, mio (epoll), echoes whatever each connection sends.
//! It is the reference point of the echo benchmark: the most this machine and client allow.

use std::io::{self, ErrorKind, Read, Write};

use echo_bench::{Listener, Stream};
use mio::{Events, Interest, Poll, Token};

const USAGE: &str = "\
usage: echo-native [--addr IP:PORT | --unix PATH]

Single-threaded mio echo server. Listens on --addr (default 127.0.0.1:0, i.e. any free port)
or --unix, prints \"READY <port or path>\" once listening, and runs until killed.";

const LISTENER: Token = Token(usize::MAX);
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

/// Clients indexed by their mio token; freed slots are reused.
#[derive(Default)]
struct Clients {
    slots: Vec<Option<Client>>,
    free: Vec<usize>,
}

impl Clients {
    fn insert(&mut self, client: Client) -> usize {
        match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(client);
                i
            }
            None => {
                self.slots.push(Some(client));
                self.slots.len() - 1
            }
        }
    }

    fn remove(&mut self, i: usize) {
        self.slots[i] = None;
        self.free.push(i);
    }
}

/// Accepts every pending connection and registers it under its slot's token.
fn accept_all(listener: &Listener, poll: &Poll, clients: &mut Clients) -> io::Result<()> {
    loop {
        let stream = match listener.accept() {
            Ok(s) => s,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let i = clients.insert(Client::new(stream));
        let client = clients.slots[i].as_mut().expect("just inserted");
        let interest = Interest::READABLE | Interest::WRITABLE;
        if poll
            .registry()
            .register(&mut client.stream, Token(i), interest)
            .is_err()
        {
            clients.remove(i);
        }
    }
}

/// Runs the event loop forever (or until an accept or epoll error).
fn serve(mut listener: Listener) -> io::Result<()> {
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut events = Events::with_capacity(1024);
    let mut clients = Clients::default();
    loop {
        match poll.poll(&mut events, None) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            other => other?,
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                accept_all(&listener, &poll, &mut clients)?;
                continue;
            }
            let Token(i) = event.token();
            let Some(client) = clients.slots.get_mut(i).and_then(Option::as_mut) else {
                continue;
            };
            let failed = event.is_error();
            client.can_read |= failed || event.is_readable() || event.is_read_closed();
            client.can_write |= failed || event.is_writable() || event.is_write_closed();
            if !client.drive().unwrap_or(false) {
                let _ = poll.registry().deregister(&mut client.stream);
                clients.remove(i);
            }
        }
    }
}

fn main() {
    echo_bench::serve_main("echo-native", &["addr", "unix"], USAGE, serve);
}
