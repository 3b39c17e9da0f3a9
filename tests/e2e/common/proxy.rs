//! A loopback TCP proxy in front of a test redis-server's unix socket, which can lose the
//! reply to a commit: it forwards EXEC, lets the server run it, and drops the client's
//! connection before the reply reaches it. What a client sees when the network fails at
//! the worst moment.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// EXEC as every client sends it (RESP array of one bulk string).
const EXEC: &[u8] = b"*1\r\n$4\r\nEXEC\r\n";
/// Sent after a swallowed EXEC: its reply proves the server has run the EXEC.
const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";
const PONG: &[u8] = b"+PONG\r\n";

pub struct ExecProxy {
    port: u16,
    /// How many of the next EXEC replies to lose.
    to_lose: Arc<AtomicUsize>,
    lost: Arc<AtomicUsize>,
}

impl ExecProxy {
    /// Listens on a free loopback port and forwards every connection to `socket`.
    pub fn start(socket: &Path) -> ExecProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port for the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let proxy = ExecProxy {
            port,
            to_lose: Arc::new(AtomicUsize::new(0)),
            lost: Arc::new(AtomicUsize::new(0)),
        };
        let (socket, to_lose, lost) = (
            socket.to_path_buf(),
            proxy.to_lose.clone(),
            proxy.lost.clone(),
        );
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let (socket, to_lose, lost) = (socket.clone(), to_lose.clone(), lost.clone());
                std::thread::spawn(move || relay(client, &socket, &to_lose, &lost));
            }
        });
        proxy
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Loses the replies of the next `count` EXECs, whichever clients send them.
    pub fn lose_exec_replies(&self, count: usize) {
        self.to_lose.store(count, Ordering::SeqCst);
    }

    /// How many EXEC replies it has lost so far.
    pub fn lost(&self) -> usize {
        self.lost.load(Ordering::SeqCst)
    }
}

/// Forwards one client connection until either side closes it, or until it has lost an
/// EXEC reply.
fn relay(client: TcpStream, socket: &PathBuf, to_lose: &AtomicUsize, lost: &AtomicUsize) {
    let Ok(mut server) = UnixStream::connect(socket) else {
        return;
    };
    let (Ok(mut from_client), Ok(server_reader), Ok(client_writer)) =
        (client.try_clone(), server.try_clone(), client.try_clone())
    else {
        return;
    };
    let swallowing = Arc::new(AtomicBool::new(false));
    let (pong_tx, pong_rx) = mpsc::channel();
    let downstream = {
        let swallowing = swallowing.clone();
        std::thread::spawn(move || {
            forward_replies(server_reader, client_writer, &swallowing, pong_tx)
        })
    };
    let mut seen: Vec<u8> = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    loop {
        let read = match from_client.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        let chunk = &buffer[..read];
        // Keep a tail of what came before, for an EXEC split across two reads; too short
        // to hold a whole EXEC, which must not count twice.
        let keep = seen.len().saturating_sub(EXEC.len() - 1);
        seen.drain(..keep);
        seen.extend_from_slice(chunk);
        let exec = seen.windows(EXEC.len()).any(|window| window == EXEC);
        let lose = exec
            && to_lose
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        if lose {
            // From here no reply reaches the client; the server runs the EXEC, and its
            // answer to the PING after it says when it has.
            swallowing.store(true, Ordering::SeqCst);
            let _ = server.write_all(chunk);
            let _ = server.write_all(PING);
            let _ = pong_rx.recv_timeout(Duration::from_secs(10));
            lost.fetch_add(1, Ordering::SeqCst);
            break;
        }
        if server.write_all(chunk).is_err() {
            break;
        }
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
    let _ = downstream.join();
}

fn forward_replies(
    mut server: UnixStream,
    mut client: TcpStream,
    swallowing: &AtomicBool,
    pong: mpsc::Sender<()>,
) {
    let mut swallowed: Vec<u8> = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    loop {
        let read = match server.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        if swallowing.load(Ordering::SeqCst) {
            swallowed.extend_from_slice(&buffer[..read]);
            if swallowed.ends_with(PONG) {
                let _ = pong.send(());
            }
        } else if client.write_all(&buffer[..read]).is_err() {
            return;
        }
    }
}
