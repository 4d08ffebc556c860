//! The HTTP target of `idgraph bench --url`: a load generator light enough that the *server's*
//! cost shows. Each client keeps one HTTP/1.1 connection alive; with `--pipeline P` it writes a
//! chunk of up to P requests at once and reads the P responses in order (HTTP/1.1 pipelining,
//! which the server answers in order on the connection).
//!
//! All clients are driven by one event loop (`--client-threads` loops, each with its share): a
//! `mio` poll over their non-blocking sockets. With a blocking thread per client, every request
//! cost the process a sleep in `recv` and a wake-up, about a third of its CPU in `perf`; the loop
//! sleeps only when no connection has anything to read, and one `epoll_wait` reports every
//! connection that has. Per request that leaves one `send` (which on loopback also runs the
//! server side's TCP receive) and one `recv`, and no allocation: requests are rendered into the
//! connection's reused buffer and responses parsed in place (`wire.rs`).
//!
//! A response is read whole, checked (status, `Content-Length`) and, when it answers, searched for
//! its `mpid`. The server's CPU time comes from its `/metrics` (`process_cpu_seconds_total`), read
//! before and after a run.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine as _;
use idgraph_workload::{Chunk, Feed, Multiplexed, Outcome};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::wire::{self, RequestHead};

/// How long a client waits for its connection to make progress (a byte written or read) while a
/// chunk is in flight, before counting the attempt failed.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// Most readiness events taken from one `epoll_wait`: more than there are clients in practice.
const EVENTS_MAX: usize = 1024;

/// Initial size of a connection's receive buffer; it grows for a response that does not fit.
const RECEIVE_BUFFER_BYTES: usize = 16 * 1024;

/// An Identity API endpoint and its credentials.
#[derive(Debug)]
pub(super) struct Http {
    address: SocketAddr,
    /// The `Host` header's value.
    host: String,
    /// Without a trailing `/`: prefixed to every path.
    base_path: String,
    /// What every request starts with.
    head: RequestHead,
}

impl Http {
    /// The endpoint at `url` (`http://host:port[/prefix]`).
    pub(super) fn new(url: &str, api_key: &str, api_secret: &str) -> anyhow::Result<Http> {
        let rest = url
            .strip_prefix("http://")
            .with_context(|| format!("--url {url}: only http:// URLs are supported"))?;
        let (host, base_path) = rest.split_once('/').unwrap_or((rest, ""));
        let address = host
            .to_socket_addrs()
            .with_context(|| format!("--url {url}: cannot resolve {host}"))?
            .next()
            .with_context(|| format!("--url {url}: {host} has no address"))?;
        let credentials = format!("{api_key}:{api_secret}");
        let authorization =
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(credentials));
        let base_path =
            format!("/{}", base_path.trim_end_matches('/')).trim_end_matches('/').to_owned();
        Ok(Http {
            address,
            host: host.to_owned(),
            head: RequestHead::new(host, &base_path, &authorization),
            base_path,
        })
    }

    /// The server's CPU time so far, from its `/metrics` (`None` if it does not say).
    pub(super) fn server_cpu_seconds(&self) -> Option<f64> {
        let mut stream = std::net::TcpStream::connect(self.address).ok()?;
        stream.set_read_timeout(Some(RESPONSE_TIMEOUT)).ok()?;
        let request = format!(
            "GET {}/metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.base_path, self.host
        );
        stream.write_all(request.as_bytes()).ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).ok()?;
        let line = text.lines().find(|line| line.starts_with("process_cpu_seconds_total "))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// A kept-alive connection to the endpoint, registered with `poll` under `token`.
    fn connect(&self, poll: &Poll, token: Token) -> std::io::Result<TcpStream> {
        let stream = std::net::TcpStream::connect(self.address)?;
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        let mut stream = TcpStream::from_std(stream);
        poll.registry().register(&mut stream, token, Interest::READABLE)?;
        Ok(stream)
    }
}

impl Multiplexed for Http {
    fn drive(&self, n_clients: usize, feed: &mut dyn Feed) {
        let poll = match Poll::new() {
            Ok(poll) => poll,
            Err(err) => {
                // No event loop: every request fails, and says why.
                let mut outcomes = Vec::new();
                while let Some(chunk) = feed.next_chunk() {
                    let message = format!("cannot create an event loop: {err}");
                    outcomes.extend((0..chunk.n_ready()).map(|_| Outcome::Failed(message.clone())));
                    feed.answered(chunk, &mut outcomes);
                }
                return;
            }
        };
        let mut event_loop = EventLoop {
            http: self,
            poll,
            clients: (0..n_clients).map(|_| Client::new()).collect(),
            idle: Vec::with_capacity(n_clients),
            feed,
            body: Vec::with_capacity(1024),
            now: Instant::now(),
            n_in_flight: 0,
        };
        event_loop.run();
    }
}

/// One client: its connection, and the chunk it has in flight.
#[derive(Debug)]
struct Client {
    /// `None` until the first chunk, and after a failure (the next attempt opens a fresh one).
    stream: Option<TcpStream>,
    /// The chunk in flight (`None`: the workload is finished for this client).
    chunk: Option<Chunk>,
    /// The chunk's requests, rendered once (a retry sends the same bytes).
    out: Vec<u8>,
    /// How much of `out` is written.
    n_written: usize,
    /// Whether the socket is registered for writability (only while `out` does not fit in it).
    wants_writable: bool,
    /// Bytes received: `input[n_parsed..n_received]` are not yet parsed.
    input: Vec<u8>,
    n_parsed: usize,
    n_received: usize,
    /// The outcomes of the chunk's responses read so far.
    outcomes: Vec<Outcome>,
    /// Whether the chunk went out on a connection kept alive from an earlier chunk: if that fails,
    /// the server may have closed it meanwhile, and the chunk is sent once more on a fresh one.
    /// Safe even if some of it was handled: every request carries its `request_id`, so a repeat
    /// gets the first answer and records nothing.
    reused: bool,
    /// When the connection last made progress on the chunk in flight.
    last_progress: Instant,
}

impl Client {
    fn new() -> Client {
        Client {
            stream: None,
            chunk: None,
            out: Vec::with_capacity(4096),
            n_written: 0,
            wants_writable: false,
            input: vec![0; RECEIVE_BUFFER_BYTES],
            n_parsed: 0,
            n_received: 0,
            outcomes: Vec::new(),
            reused: false,
            last_progress: Instant::now(),
        }
    }

    /// Makes room at the end of a full `input`: drops what is parsed, or else grows it, up to
    /// what the largest acceptable response needs.
    fn make_room(&mut self) -> std::io::Result<()> {
        if self.n_parsed > 0 {
            self.input.copy_within(self.n_parsed..self.n_received, 0);
            self.n_received -= self.n_parsed;
            self.n_parsed = 0;
        } else if self.input.len() < wire::RESPONSE_HEAD_BYTES_MAX + wire::RESPONSE_BODY_BYTES_MAX {
            self.input.resize(self.input.len() * 2, 0);
        } else {
            let what = "more unanswered bytes than a response can have";
            return Err(std::io::Error::new(ErrorKind::InvalidData, what));
        }
        Ok(())
    }
}

/// The loop: clients, their sockets' poll, and the feed they take chunks from.
struct EventLoop<'a> {
    http: &'a Http,
    poll: Poll,
    /// Client `idx` is registered under `Token(idx)`.
    clients: Vec<Client>,
    /// Clients waiting for their next chunk (their last one answered or failed). Kept as a queue
    /// rather than served at once, so that a run of failures is a loop and not a recursion.
    idle: Vec<usize>,
    feed: &'a mut dyn Feed,
    /// Scratch space for a request's body.
    body: Vec<u8>,
    /// The time when the last poll returned.
    now: Instant,
    /// Clients with a chunk in flight.
    n_in_flight: usize,
}

impl EventLoop<'_> {
    fn run(&mut self) {
        self.idle.extend((0..self.clients.len()).rev());
        self.start_idle();
        let mut events = Events::with_capacity(EVENTS_MAX);
        let mut next_timeout_check = self.now + Duration::from_secs(1);
        while self.n_in_flight > 0 {
            if let Err(err) = self.poll.poll(&mut events, Some(Duration::from_secs(1))) {
                if err.kind() == ErrorKind::Interrupted {
                    continue;
                }
                // The poll itself failed: every chunk in flight fails (and the next ones will
                // most likely fail the same way).
                for idx in 0..self.clients.len() {
                    self.clients[idx].reused = false;
                    self.failed(idx, &err);
                }
                self.start_idle();
                continue;
            }
            self.now = Instant::now();
            for event in events.iter() {
                let idx = event.token().0;
                if event.is_writable() {
                    self.flush(idx);
                }
                // Errors and hang-ups surface as a read's error or end of stream.
                let closed = event.is_read_closed() || event.is_error();
                if event.is_readable() || closed {
                    self.receive(idx, closed);
                }
                self.start_idle();
            }
            if self.now >= next_timeout_check {
                next_timeout_check = self.now + Duration::from_secs(1);
                self.time_out_stalled();
                self.start_idle();
            }
        }
    }

    /// Gives each idle client its next chunk and sends it; a client the workload has nothing
    /// more for closes its connection.
    fn start_idle(&mut self) {
        while let Some(idx) = self.idle.pop() {
            let Some(chunk) = self.feed.next_chunk() else {
                self.disconnect(idx);
                continue;
            };
            let client = &mut self.clients[idx];
            client.out.clear();
            for ready in chunk.ready() {
                self.http.head.write_request(&mut client.out, &mut self.body, &ready);
            }
            client.chunk = Some(chunk);
            client.reused = client.stream.is_some();
            self.n_in_flight += 1;
            self.send(idx);
        }
    }

    /// (Re)sends the chunk in flight from its first byte, on a fresh connection if there is none.
    fn send(&mut self, idx: usize) {
        let client = &mut self.clients[idx];
        client.n_written = 0;
        client.outcomes.clear();
        client.last_progress = self.now;
        if client.stream.is_none() {
            match self.http.connect(&self.poll, Token(idx)) {
                Ok(stream) => client.stream = Some(stream),
                Err(err) => return self.failed(idx, &err),
            }
        }
        self.flush(idx);
    }

    /// Writes what the socket takes of the chunk in flight; waits for writability if not all.
    fn flush(&mut self, idx: usize) {
        let client = &mut self.clients[idx];
        let Some(stream) = client.stream.as_mut() else { return };
        while client.n_written < client.out.len() {
            match stream.write(&client.out[client.n_written..]) {
                Ok(0) => {
                    let err = std::io::Error::new(ErrorKind::WriteZero, "the connection is closed");
                    return self.failed(idx, &err);
                }
                Ok(n) => {
                    client.n_written += n;
                    client.last_progress = self.now;
                }
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(err) if err.kind() == ErrorKind::WouldBlock => {
                    if !client.wants_writable {
                        client.wants_writable = true;
                        let interest = Interest::READABLE | Interest::WRITABLE;
                        if let Err(err) =
                            self.poll.registry().reregister(stream, Token(idx), interest)
                        {
                            return self.failed(idx, &err);
                        }
                    }
                    return;
                }
                Err(err) => return self.failed(idx, &err),
            }
        }
        if client.wants_writable {
            client.wants_writable = false;
            if let Err(err) =
                self.poll.registry().reregister(stream, Token(idx), Interest::READABLE)
            {
                self.failed(idx, &err);
            }
        }
    }

    /// Reads what client `idx`'s connection has, handling each whole response in it; once its
    /// chunk is answered, the client is idle. `closed`: the poll said the server closed the
    /// connection (or it failed).
    fn receive(&mut self, idx: usize, closed: bool) {
        match self.read(idx, closed) {
            Ok(false) => {}
            Ok(true) => {
                let client = &mut self.clients[idx];
                let chunk = client.chunk.take().expect("a chunk in flight");
                self.n_in_flight -= 1;
                self.feed.answered(chunk, &mut client.outcomes);
                self.idle.push(idx);
                if closed {
                    // Nothing more can come on it: the next chunk opens a fresh connection.
                    self.disconnect(idx);
                }
                // Bytes read past the chunk's responses (none from a well-behaved server) stay
                // buffered, as in a blocking reader, and are parsed as the next chunk's.
            }
            Err(err) => self.failed(idx, &err),
        }
    }

    /// Reads until the socket has nothing more or the chunk in flight is answered (`true`),
    /// parsing each whole response into an outcome. `closed`: read on to the end of the stream
    /// (or the error), which no later event would report.
    fn read(&mut self, idx: usize, closed: bool) -> std::io::Result<bool> {
        let client = &mut self.clients[idx];
        if client.stream.is_none() {
            return Ok(false);
        }
        let mut drained = false;
        loop {
            let answered = parse_buffered(client)
                .map_err(|what| std::io::Error::new(ErrorKind::InvalidData, what))?;
            if answered || drained {
                return Ok(answered);
            }
            if client.n_parsed == client.n_received {
                (client.n_parsed, client.n_received) = (0, 0);
            } else if client.n_received == client.input.len() {
                client.make_room()?;
            }
            let space = client.input.len() - client.n_received;
            let stream = client.stream.as_mut().expect("checked above");
            match stream.read(&mut client.input[client.n_received..]) {
                Ok(0) => {
                    let what = if client.chunk.is_none() {
                        "the server closed an idle connection"
                    } else if client.n_parsed == client.n_received {
                        "the server closed the connection"
                    } else {
                        "the connection closed inside a response"
                    };
                    return Err(std::io::Error::new(ErrorKind::UnexpectedEof, what));
                }
                Ok(n) => {
                    client.n_received += n;
                    client.last_progress = self.now;
                    // A short read emptied the socket (its next data raises a new event): one
                    // more parse, and done. Not so after the end of the stream, which raises
                    // nothing more: then the next read says it.
                    drained = n < space && !closed;
                }
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(err) if err.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(err) => return Err(err),
            }
        }
    }

    /// Client `idx`'s attempt failed with `err`: its connection is dropped (its state is unknown,
    /// a response may be half read). A chunk sent on a kept-alive connection is sent once more on
    /// a fresh one; otherwise every request of the chunk is counted failed, and the client is
    /// idle.
    fn failed(&mut self, idx: usize, err: &std::io::Error) {
        self.disconnect(idx);
        let client = &mut self.clients[idx];
        let Some(chunk) = client.chunk.take() else { return };
        if client.reused {
            client.reused = false;
            client.chunk = Some(chunk);
            return self.send(idx);
        }
        self.n_in_flight -= 1;
        client.outcomes.clear();
        client.outcomes.extend((0..chunk.n_ready()).map(|_| Outcome::Failed(err.to_string())));
        self.feed.answered(chunk, &mut client.outcomes);
        self.idle.push(idx);
    }

    /// Closes client `idx`'s connection, if open, and forgets what it had received.
    fn disconnect(&mut self, idx: usize) {
        let client = &mut self.clients[idx];
        if let Some(mut stream) = client.stream.take() {
            // Closing the socket removes it from the poll anyway; deregistering first is tidy.
            let _ = self.poll.registry().deregister(&mut stream);
        }
        client.wants_writable = false;
        (client.n_parsed, client.n_received) = (0, 0);
    }

    /// Fails the attempt of every client whose connection made no progress for
    /// [`RESPONSE_TIMEOUT`].
    fn time_out_stalled(&mut self) {
        for idx in 0..self.clients.len() {
            let client = &self.clients[idx];
            let stalled = self.now.saturating_duration_since(client.last_progress);
            if client.chunk.is_some() && stalled >= RESPONSE_TIMEOUT {
                let err = std::io::Error::new(ErrorKind::TimedOut, "no response within 30 s");
                self.failed(idx, &err);
            }
        }
    }
}

/// Parses the whole responses `client` has buffered into outcomes of its chunk in flight, as many
/// as the chunk still needs; says whether the chunk is now answered.
fn parse_buffered(client: &mut Client) -> Result<bool, &'static str> {
    let Some(chunk) = &client.chunk else { return Ok(false) };
    while client.outcomes.len() < chunk.n_ready() {
        let buffered = &client.input[client.n_parsed..client.n_received];
        let Some(response) = wire::parse_response(buffered)? else { return Ok(false) };
        let body = &buffered[response.body_start..response.len];
        client.outcomes.push(wire::outcome_of(response.status, body));
        client.n_parsed += response.len;
    }
    Ok(true)
}
