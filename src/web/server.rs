//! The sockets of the dashboard: one I/O thread, a few workers and the watcher.
//!
//! The I/O thread owns every connection and never blocks on one: it polls them all, reads
//! request heads as they trickle in, hands complete requests to the workers, writes
//! their answers as fast as each client takes them, and feeds the event streams. A
//! worker never touches a socket, so a client that is slow to send or to read costs a
//! table entry until its deadline, not a thread. Every connection carries one request.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::error::{Error, Result};
use crate::web::events::{self, STREAM_PREAMBLE};
use crate::web::http::{self, Head, Method, Request, Response};
use crate::web::routes::{self, Reply};
use crate::web::{Lab, Limits};

/// After its answer, a connection is read (and what comes is thrown away) for this long
/// before it is closed: closing a socket with unread input resets the connection, and a
/// reset can destroy the answer before the client reads it (a refused request's body,
/// say).
const LINGER: Duration = Duration::from_secs(2);
/// The longest poll(2) sleeps, so that a stop is noticed even without a wake-up.
const MAX_POLL_WAIT: Duration = Duration::from_secs(1);

/// A running dashboard server; dropping it stops it.
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    waker: Waker,
    io: Option<JoinHandle<std::io::Result<()>>>,
    helpers: Vec<JoinHandle<()>>,
}

impl Server {
    /// Serves `lab` on `listener` until dropped.
    pub fn start(listener: TcpListener, lab: Arc<dyn Lab>, limits: Limits) -> Result<Server> {
        Self::try_start(listener, lab, limits)
            .map_err(|e| Error::failure(format!("cannot start the web server: {e}")))
    }

    fn try_start(
        listener: TcpListener,
        lab: Arc<dyn Lab>,
        limits: Limits,
    ) -> std::io::Result<Server> {
        let addr = listener.local_addr()?;
        let loopback_only = addr.ip().is_loopback();
        listener.set_nonblocking(true)?;
        let (wake_read, wake_write) = UnixStream::pair()?;
        wake_read.set_nonblocking(true)?;
        wake_write.set_nonblocking(true)?;
        let waker = Waker(Arc::new(wake_write));
        let (to_io, messages) = mpsc::channel();
        let (jobs, job_queue) = mpsc::sync_channel(limits.queue);
        let job_queue = Arc::new(Mutex::new(job_queue));
        let stop = Arc::new(AtomicBool::new(false));
        let mut helpers = Vec::new();
        for index in 0..limits.workers.max(1) {
            let worker = Worker {
                lab: lab.clone(),
                jobs: job_queue.clone(),
                to_io: to_io.clone(),
                waker: waker.clone(),
            };
            helpers.push(
                std::thread::Builder::new()
                    .name(format!("web-worker-{index}"))
                    .spawn(move || worker.run())?,
            );
        }
        let (events_to_io, event_waker) = (to_io, waker.clone());
        helpers.push(events::spawn_watcher(lab, stop.clone(), move |event| {
            let _ = events_to_io.send(Message::Broadcast(event));
            event_waker.wake();
        })?);
        let io = IoLoop {
            listener,
            wake_read,
            messages,
            jobs: Some(jobs),
            conns: HashMap::new(),
            next_token: 0,
            limits,
            loopback_only,
            stop: stop.clone(),
        };
        let io = std::thread::Builder::new()
            .name("web-io".into())
            .spawn(move || io.run())?;
        Ok(Server {
            addr,
            stop,
            waker,
            io: Some(io),
            helpers,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until the I/O thread fails, which it only does when poll(2) does.
    pub fn wait(mut self) -> Result<()> {
        match self.io.take().map(JoinHandle::join) {
            Some(Ok(Ok(()))) | None => Ok(()),
            Some(Ok(Err(e))) => Err(Error::failure(format!("the web server failed: {e}"))),
            Some(Err(_)) => Err(Error::failure("the web server's I/O thread panicked")),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.waker.wake();
        if let Some(io) = self.io.take() {
            let _ = io.join();
        }
        for helper in self.helpers.drain(..) {
            let _ = helper.join();
        }
    }
}

/// Wakes the I/O thread out of poll(2): one byte on a socket pair it polls.
#[derive(Clone)]
struct Waker(Arc<UnixStream>);

impl Waker {
    fn wake(&self) {
        // A full socket already holds a wake-up.
        let _ = (&*self.0).write(&[1]);
    }
}

enum Message {
    Done(u64, Reply),
    Broadcast(Vec<u8>),
}

struct Job {
    token: u64,
    request: Request,
}

struct Worker {
    lab: Arc<dyn Lab>,
    jobs: Arc<Mutex<Receiver<Job>>>,
    to_io: Sender<Message>,
    waker: Waker,
}

impl Worker {
    fn run(self) {
        loop {
            let job = match self.jobs.lock() {
                Ok(jobs) => jobs.recv(),
                Err(_) => return,
            };
            // The I/O thread has gone: the server is stopping.
            let Ok(Job { token, request }) = job else {
                return;
            };
            let reply = routes::route_to_lab(&request, self.lab.as_ref());
            if self.to_io.send(Message::Done(token, reply)).is_err() {
                return;
            }
            self.waker.wake();
        }
    }
}

enum State {
    /// Waiting for the rest of the request head.
    Reading { head: Vec<u8>, deadline: Instant },
    /// A worker computes the answer.
    Working { head_only: bool },
    Writing {
        out: Vec<u8>,
        written: usize,
        deadline: Instant,
    },
    /// Answered; draining what the client still sends before closing.
    Closing { deadline: Instant },
    /// An open event stream: whatever is queued for it.
    Streaming { out: Vec<u8>, written: usize },
}

struct Conn {
    stream: TcpStream,
    state: State,
}

impl Conn {
    fn interest(&self) -> PollFlags {
        match &self.state {
            State::Reading { .. } | State::Closing { .. } => PollFlags::POLLIN,
            State::Working { .. } => PollFlags::empty(),
            State::Writing { .. } => PollFlags::POLLOUT,
            // A stream's client sends nothing: anything readable is its end.
            State::Streaming { out, written } if *written < out.len() => {
                PollFlags::POLLIN | PollFlags::POLLOUT
            }
            State::Streaming { .. } => PollFlags::POLLIN,
        }
    }

    fn deadline(&self) -> Option<Instant> {
        match &self.state {
            State::Reading { deadline, .. }
            | State::Writing { deadline, .. }
            | State::Closing { deadline } => Some(*deadline),
            State::Working { .. } | State::Streaming { .. } => None,
        }
    }
}

/// What a connection's turn leads to.
enum Next {
    Keep,
    Drop,
    Dispatch(Request),
    /// Refused before any worker saw it: answer with this.
    Refuse(Response),
}

enum Ready {
    Listener,
    Waker,
    Conn(u64, PollFlags),
}

struct IoLoop {
    listener: TcpListener,
    wake_read: UnixStream,
    messages: Receiver<Message>,
    /// `None` once stopping, so that the workers end.
    jobs: Option<SyncSender<Job>>,
    conns: HashMap<u64, Conn>,
    next_token: u64,
    limits: Limits,
    loopback_only: bool,
    stop: Arc<AtomicBool>,
}

impl IoLoop {
    fn run(mut self) -> std::io::Result<()> {
        while !self.stop.load(Ordering::Relaxed) {
            for ready in self.poll_once()? {
                match ready {
                    Ready::Listener => self.accept(),
                    Ready::Waker => self.drain_waker(),
                    Ready::Conn(token, flags) => self.serve(token, flags),
                }
            }
            self.take_messages();
            self.expire(Instant::now());
        }
        self.jobs = None;
        Ok(())
    }

    fn poll_once(&self) -> std::io::Result<Vec<Ready>> {
        let now = Instant::now();
        let wait = self
            .conns
            .values()
            .filter_map(Conn::deadline)
            .map(|deadline| deadline.saturating_duration_since(now))
            .min()
            .unwrap_or(MAX_POLL_WAIT)
            .min(MAX_POLL_WAIT);
        // Rounded up: a deadline a fraction of a millisecond away must not spin.
        let millis = u16::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(u16::MAX);
        let mut tokens = Vec::with_capacity(self.conns.len() + 2);
        let mut fds = Vec::with_capacity(self.conns.len() + 2);
        fds.push(PollFd::new(self.listener.as_fd(), PollFlags::POLLIN));
        fds.push(PollFd::new(self.wake_read.as_fd(), PollFlags::POLLIN));
        for (token, conn) in &self.conns {
            let interest = conn.interest();
            if !interest.is_empty() {
                tokens.push(*token);
                fds.push(PollFd::new(conn.stream.as_fd(), interest));
            }
        }
        match poll(&mut fds, PollTimeout::from(millis)) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
        let revents = |fd: &PollFd| fd.revents().unwrap_or(PollFlags::empty());
        let mut ready = Vec::new();
        if !revents(&fds[0]).is_empty() {
            ready.push(Ready::Listener);
        }
        if !revents(&fds[1]).is_empty() {
            ready.push(Ready::Waker);
        }
        for (token, fd) in tokens.iter().zip(&fds[2..]) {
            let flags = revents(fd);
            if !flags.is_empty() {
                ready.push(Ready::Conn(*token, flags));
            }
        }
        Ok(ready)
    }

    fn drain_waker(&mut self) {
        let mut sink = [0u8; 64];
        while matches!((&self.wake_read).read(&mut sink), Ok(n) if n > 0) {}
    }

    fn accept(&mut self) {
        loop {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                // Out of file descriptors, say: what is open will finish and free some.
                Err(_) => return,
            };
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            if self.requests_open() >= self.limits.connections && !self.evict_slowest() {
                // Every place holds a request being answered; they end within their
                // deadlines. This one is closed at once.
                continue;
            }
            let token = self.next_token;
            self.next_token += 1;
            let deadline = Instant::now() + self.limits.head_timeout;
            let head = Vec::new();
            let state = State::Reading { head, deadline };
            self.conns.insert(token, Conn { stream, state });
        }
    }

    fn requests_open(&self) -> usize {
        let streaming = |conn: &&Conn| matches!(conn.state, State::Streaming { .. });
        self.conns.len() - self.conns.values().filter(streaming).count()
    }

    /// Closes the connection that has waited longest for its request head: the one
    /// most likely idle. Returns whether there was one.
    fn evict_slowest(&mut self) -> bool {
        let oldest = self
            .conns
            .iter()
            .filter_map(|(token, conn)| match conn.state {
                State::Reading { deadline, .. } => Some((deadline, *token)),
                _ => None,
            })
            .min();
        match oldest {
            Some((_, token)) => self.conns.remove(&token).is_some(),
            None => false,
        }
    }

    fn streams_open(&self) -> usize {
        let streaming = |conn: &&Conn| matches!(conn.state, State::Streaming { .. });
        self.conns.values().filter(streaming).count()
    }

    fn serve(&mut self, token: u64, flags: PollFlags) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        let next = match &mut conn.state {
            State::Reading { head, .. } => read_head(&mut conn.stream, head),
            State::Writing { .. } | State::Streaming { .. } => write_out(conn, flags),
            State::Closing { .. } => drain(&mut conn.stream),
            State::Working { .. } => Next::Keep,
        };
        match next {
            Next::Keep => {}
            Next::Drop => {
                self.conns.remove(&token);
            }
            Next::Dispatch(request) => self.dispatch(token, request),
            Next::Refuse(response) => self.respond(token, response.encode(false)),
        }
    }

    fn dispatch(&mut self, token: u64, request: Request) {
        let head_only = request.method == Method::Head;
        if let Some(reply) = routes::route_at_once(&request, self.loopback_only) {
            self.set_state(token, State::Working { head_only });
            self.finish(token, reply);
            return;
        }
        let sent = match &self.jobs {
            Some(jobs) => jobs.try_send(Job { token, request }),
            None => return,
        };
        let reply = match sent {
            Ok(()) => {
                self.set_state(token, State::Working { head_only });
                return;
            }
            Err(TrySendError::Full(_)) => Response::text(
                503,
                "the dashboard is busy answering other requests; try again in a moment\n",
            )
            .with_header("Retry-After", "1"),
            Err(TrySendError::Disconnected(_)) => {
                Response::text(503, "the dashboard is stopping\n")
            }
        };
        self.respond(token, reply.encode(head_only));
    }

    fn set_state(&mut self, token: u64, state: State) {
        if let Some(conn) = self.conns.get_mut(&token) {
            conn.state = state;
        }
    }

    fn respond(&mut self, token: u64, out: Vec<u8>) {
        let deadline = Instant::now() + self.limits.write_timeout;
        let state = State::Writing {
            out,
            written: 0,
            deadline,
        };
        self.set_state(token, state);
    }

    fn take_messages(&mut self) {
        while let Ok(message) = self.messages.try_recv() {
            match message {
                Message::Done(token, reply) => self.finish(token, reply),
                Message::Broadcast(event) => self.broadcast(&event),
            }
        }
    }

    /// A worker's answer for `token`.
    fn finish(&mut self, token: u64, reply: Reply) {
        let Some(State::Working { head_only }) = self.conns.get(&token).map(|conn| &conn.state)
        else {
            return;
        };
        let head_only = *head_only;
        match reply {
            Reply::Respond(response) => self.respond(token, response.encode(head_only)),
            Reply::EventStream if head_only => self.respond(token, http::event_stream_head()),
            Reply::EventStream if self.streams_open() >= self.limits.streams => {
                let busy = Response::text(
                    503,
                    format!(
                        "{} event streams are open, the most this dashboard serves; \
                         the page polls instead\n",
                        self.limits.streams
                    ),
                )
                .with_header("Retry-After", "30");
                self.respond(token, busy.encode(false));
            }
            Reply::EventStream => {
                let mut out = http::event_stream_head();
                out.extend_from_slice(STREAM_PREAMBLE);
                self.set_state(token, State::Streaming { out, written: 0 });
            }
        }
    }

    fn broadcast(&mut self, event: &[u8]) {
        let backlog = self.limits.stream_backlog;
        self.conns.retain(|_, conn| match &mut conn.state {
            State::Streaming { out, written } => {
                if *written == out.len() {
                    out.clear();
                    *written = 0;
                }
                out.extend_from_slice(event);
                // A client this far behind has stopped reading.
                out.len() - *written <= backlog
            }
            _ => true,
        });
    }

    fn expire(&mut self, now: Instant) {
        let expired: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, conn)| conn.deadline().is_some_and(|deadline| deadline <= now))
            .map(|(token, _)| *token)
            .collect();
        for token in expired {
            let Some(conn) = self.conns.get(&token) else {
                continue;
            };
            if let State::Reading { .. } = conn.state {
                let late = Response::text(
                    408,
                    "the request did not arrive in time; send it whole within a few seconds\n",
                );
                // Best effort, once: this client has shown it is slow.
                let _ = (&conn.stream).write(&late.encode(false));
            }
            self.conns.remove(&token);
        }
    }
}

/// Reads what has arrived of a request head and judges it.
fn read_head(stream: &mut TcpStream, head: &mut Vec<u8>) -> Next {
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return Next::Drop,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return Next::Drop,
        }
        if head.len() > http::MAX_HEAD_BYTES {
            break;
        }
    }
    match http::parse_head(head) {
        Head::Incomplete => Next::Keep,
        Head::Complete(request) => Next::Dispatch(request),
        Head::Reject(response) => Next::Refuse(response),
    }
}

/// Writes what the client will take now; an answered request then lingers.
fn write_out(conn: &mut Conn, flags: PollFlags) -> Next {
    let streaming = matches!(conn.state, State::Streaming { .. });
    let (out, written) = match &mut conn.state {
        State::Writing { out, written, .. } | State::Streaming { out, written } => (out, written),
        _ => return Next::Keep,
    };
    if streaming && flags.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
        // The client of a stream sends nothing; readable means it has closed.
        return Next::Drop;
    }
    if flags.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
        return Next::Drop;
    }
    while *written < out.len() {
        match conn.stream.write(&out[*written..]) {
            Ok(0) => return Next::Drop,
            Ok(n) => *written += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Next::Keep,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return Next::Drop,
        }
    }
    if streaming {
        return Next::Keep;
    }
    let _ = conn.stream.shutdown(Shutdown::Write);
    conn.state = State::Closing {
        deadline: Instant::now() + LINGER,
    };
    Next::Keep
}

/// Throws away what a client sends after its answer, until it closes.
fn drain(stream: &mut TcpStream) -> Next {
    let mut sink = [0u8; 4096];
    loop {
        match stream.read(&mut sink) {
            Ok(0) => return Next::Drop,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Next::Keep,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return Next::Drop,
        }
    }
}
