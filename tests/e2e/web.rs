//! `canhazgpu web`: every route of the real binary against real stores (embedded and
//! Redis), its refusals and limits, its event stream, and the page in a real headless
//! Chromium. Loopback only.

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::browser::Browser;
use common::http::{self, HttpResponse};
use common::{BACKENDS, Backend, TestStore, unix_now, wait_for};
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(20);
/// What the issue promises: a change shows on an open page within 2 s.
const LIVE: Duration = Duration::from_secs(2);
const XSS_NOTE: &str = "<img src=x onerror=alert(1)>";
const XSS_USER: &str = "<img src=x onerror=\"document.title='pwned'\">";

/// A running `canhazgpu web` on a free loopback port, killed on drop.
struct WebServer {
    child: Child,
    addr: SocketAddr,
}

impl WebServer {
    fn start(store: &TestStore) -> WebServer {
        Self::start_with(store, |_| {})
    }

    fn start_with(store: &TestStore, setup: impl FnOnce(&mut Command)) -> WebServer {
        let mut cmd = store.std_cmd();
        cmd.args(["web", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        setup(&mut cmd);
        let mut child = cmd.spawn().expect("start canhazgpu web");
        let stdout = child.stdout.take().expect("stdout of canhazgpu web");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the line canhazgpu web prints");
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        WebServer { child, addr }
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    fn get(&self, path: &str) -> HttpResponse {
        http::get(self.addr, path)
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `reserve --wait` in the queue, killed (with its process group) on drop.
struct Waiter(Child);

impl Waiter {
    fn start(store: &TestStore) -> Waiter {
        let child = store
            .std_cmd()
            .args(["reserve", "--gpus", "1", "--wait=10m"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start a waiter");
        Waiter(child)
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

fn cli_json(store: &TestStore, args: &[&str]) -> Value {
    let out = store.cmd().args(args).output().expect("run canhazgpu");
    assert!(out.status.success(), "{args:?}: {out:?}");
    serde_json::from_slice(&out.stdout).expect("JSON from the CLI")
}

fn reserve(store: &TestStore, args: &[&str]) {
    store.cmd().arg("reserve").args(args).assert().success();
}

fn assert_safe_headers(response: &HttpResponse, what: &str) {
    let csp = response
        .header("Content-Security-Policy")
        .unwrap_or_default();
    assert!(csp.starts_with("default-src 'self'"), "{what}: CSP {csp:?}");
    assert_eq!(
        response.header("X-Content-Type-Options"),
        Some("nosniff"),
        "{what}"
    );
    let cors = response
        .headers
        .iter()
        .find(|(name, _)| name.to_ascii_lowercase().starts_with("access-control-"));
    assert_eq!(cors, None, "{what}: no CORS header may be sent");
}

#[test]
fn every_route_answers_with_its_type_and_the_security_headers() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        store.admin(2);
        reserve(
            &store,
            &["--gpus", "1", "--note", "training", "--user", "alice"],
        );
        reserve(&store, &["--gpus", "1"]);
        let _waiter = Waiter::start(&store);
        wait_for(DEADLINE, "a waiter in the queue", || {
            (cli_json(&store, &["queue", "--json"]).as_array()?.len() == 1).then_some(())
        });
        let server = WebServer::start(&store);
        let before = store.dump();

        for (path, content_type) in [
            ("/", "text/html; charset=utf-8"),
            ("/index.html", "text/html; charset=utf-8"),
            ("/app.js", "text/javascript; charset=utf-8"),
            ("/style.css", "text/css; charset=utf-8"),
            ("/favicon.svg", "image/svg+xml"),
            ("/healthz", "text/plain; charset=utf-8"),
            ("/api/hosts", "application/json"),
            ("/api/status", "application/json"),
            ("/api/queue", "application/json"),
            ("/api/report?days=7", "application/json"),
        ] {
            let response = server.get(path);
            assert_eq!(
                response.status,
                200,
                "{backend:?} {path}: {}",
                response.text()
            );
            assert_eq!(
                response.header("Content-Type"),
                Some(content_type),
                "{path}"
            );
            assert_safe_headers(&response, path);
        }

        // The same JSON as the CLI's, from the same code.
        let status = server.get("/api/status").json();
        assert_eq!(
            status,
            cli_json(&store, &["status", "--json"]),
            "{backend:?}"
        );
        let queue = server.get("/api/queue").json();
        assert_eq!(queue, cli_json(&store, &["queue", "--json"]), "{backend:?}");
        assert_eq!(queue[0]["position"], 1);
        let hosts = server.get("/api/hosts").json();
        assert_eq!(hosts.as_array().map(Vec::len), Some(1), "{hosts}");
        assert_eq!(hosts[0]["reachable"], true);
        assert_eq!(hosts[0]["error"], Value::Null);
        assert_eq!(hosts[0]["gpus"], status);
        assert_eq!(hosts[0]["queue"], queue);
        assert_eq!(
            hosts[0]["summary"],
            json!({"gpus": 2, "available": 0, "in_use": 2,
                   "in_use_without_reservation": 0, "waiting": 1, "free_now": 0})
        );
        let host = hosts[0]["host"].as_str().expect("a host name");
        assert_eq!(
            server.get(&format!("/api/status?host={host}")).json(),
            status
        );
        let report = server.get("/api/report?days=7").json();
        let cli_report = cli_json(&store, &["report", "--days", "7", "--json"]);
        assert_eq!(report["days"], 7);
        let users = |report: &Value| -> Vec<Value> {
            let users = report["users"].as_array().expect("users");
            users
                .iter()
                .map(|u| json!([u["user"], u["in_progress"]]))
                .collect()
        };
        assert_eq!(users(&report), users(&cli_report));
        assert_eq!(server.get("/api/report").json()["days"], 30);

        // HEAD: the GET's head, no body.
        let head = http::request(server.addr, "HEAD", "/", None).expect("HEAD /");
        let page = server.get("/");
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty());
        assert_eq!(
            head.header("Content-Length"),
            Some(page.body.len().to_string().as_str())
        );

        for (path, status) in [
            ("/nope", 404),
            ("/api/nope", 404),
            ("/api/status?host=no-such-host", 404),
            ("/api/report?days=0", 400),
            ("/api/report?days=3651", 400),
            ("/api/report?days=week", 400),
        ] {
            let response = server.get(path);
            assert_eq!(response.status, status, "{path}: {}", response.text());
            assert_safe_headers(&response, path);
            if path.starts_with("/api/") {
                let error = response.json()["error"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                assert!(!error.is_empty(), "{path}: an API error says why");
            }
        }
        let days = server.get("/api/report?days=0").json();
        assert!(
            days["error"]
                .as_str()
                .unwrap_or_default()
                .contains("1 to 3650")
        );

        for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
            for path in ["/api/hosts", "/api/status", "/"] {
                let response =
                    http::request(server.addr, method, path, Some("{\"gpus\":1}")).expect(method);
                assert_eq!(response.status, 405, "{method} {path}");
                assert_eq!(response.header("Allow"), Some("GET, HEAD"));
                assert_safe_headers(&response, method);
            }
        }
        assert_eq!(
            store.dump(),
            before,
            "{backend:?}: the API changed the store"
        );
    }
}

#[test]
fn a_page_from_another_site_cannot_read_a_loopback_dashboard() {
    // DNS rebinding: evil.example resolving to 127.0.0.1 sends its own name.
    let store = TestStore::new(Backend::File);
    store.admin(1);
    let server = WebServer::start(&store);
    let request = "GET /api/hosts HTTP/1.1\r\nHost: evil.example:8080\r\n\r\n";
    let response = http::raw(server.addr, request.as_bytes()).expect("an answer");
    assert_eq!(response.status, 421, "{}", response.text());
    assert!(response.text().contains("http://localhost:PORT/"));
    for host in ["localhost", "127.0.0.1", "[::1]"] {
        let request = format!("GET /healthz HTTP/1.1\r\nHost: {host}:8080\r\n\r\n");
        let response = http::raw(server.addr, request.as_bytes()).expect("an answer");
        assert_eq!(response.status, 200, "{host}");
    }
}

#[test]
fn malformed_and_oversized_requests_are_refused() {
    let store = TestStore::new(Backend::File);
    store.admin(1);
    let server = WebServer::start(&store);
    let huge_header = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
        "a".repeat(9000)
    );
    let many_headers = format!(
        "GET / HTTP/1.1\r\n{}\r\n",
        (0..40).map(|i| format!("X-{i}: y\r\n")).collect::<String>()
    );
    let long_target = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(9000));
    let with_body = "GET /api/hosts HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello";
    let cases: [(&str, &[u8], u16); 6] = [
        ("a 9000-byte header", huge_header.as_bytes(), 431),
        ("40 headers", many_headers.as_bytes(), 431),
        ("a 9000-byte target", long_target.as_bytes(), 431),
        ("a body", with_body.as_bytes(), 413),
        ("TLS", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),
        ("HTTP/2", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
    ];
    for (what, bytes, status) in cases {
        let response = http::raw(server.addr, bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(response.status, status, "{what}: {}", response.text());
        assert!(!response.text().is_empty(), "{what}: the refusal says why");
    }
    // A head that never ends gets 408 at its deadline: see web::tests, with a short one.
    assert_eq!(server.get("/healthz").status, 200);
}

#[test]
fn idle_connections_do_not_keep_out_a_new_request() {
    let store = TestStore::new(Backend::File);
    store.admin(2);
    let server = WebServer::start(&store);
    // More idle connections than the server serves at once (256), each sending half a
    // request, as a slowloris client would.
    let idle: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut stream = http::connect(server.addr);
            stream
                .write_all(b"GET /api/hosts HTTP/1.1\r\n")
                .expect("half a request");
            stream
        })
        .collect();
    let response = server.get("/api/hosts");
    assert_eq!(response.status, 200);
    assert_eq!(response.json()[0]["summary"]["gpus"], 2);
    // Served while most idle connections were still held open: the new request did not
    // wait for their timeout (after which all of them would be closed).
    let still_open = idle
        .iter()
        .filter(|stream| {
            stream.set_nonblocking(true).expect("nonblocking");
            let mut reader: &TcpStream = stream;
            let read = reader.read(&mut [0u8; 1]);
            matches!(read, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        })
        .count();
    assert!(
        still_open >= 200,
        "only {still_open} idle connections were still open"
    );
}

/// Reads an event stream on its own thread, handing over each event's name.
fn event_names(addr: SocketAddr) -> mpsc::Receiver<String> {
    let mut stream = http::connect(addr);
    stream
        .write_all(b"GET /api/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("request the event stream");
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stream).lines().map_while(Result::ok);
        let head = lines.next().unwrap_or_default();
        let _ = send.send(head);
        for line in lines {
            if let Some(name) = line.strip_prefix("event: ") {
                if send.send(name.to_string()).is_err() {
                    return;
                }
            } else if line.starts_with("Content-Type:") {
                let _ = send.send(line);
            }
        }
    });
    receive
}

fn next_change(events: &mpsc::Receiver<String>, what: &str) {
    loop {
        match events.recv_timeout(DEADLINE) {
            Ok(name) if name == "change" => return,
            Ok(_) => continue,
            Err(e) => panic!("no change event after {what}: {e}"),
        }
    }
}

#[test]
fn the_event_stream_announces_every_change() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        store.admin(2);
        let server = WebServer::start(&store);
        let events = event_names(server.addr);
        assert_eq!(
            events.recv_timeout(DEADLINE).expect("a response"),
            "HTTP/1.1 200 OK"
        );
        assert_eq!(
            events.recv_timeout(DEADLINE).expect("its type"),
            "Content-Type: text/event-stream"
        );
        reserve(&store, &["--gpus", "1"]);
        next_change(&events, "a reservation");
        store.cmd().arg("release").assert().success();
        next_change(&events, "a release");
        let _waiter = {
            reserve(&store, &["--gpus", "2"]);
            next_change(&events, "a second reservation");
            Waiter::start(&store)
        };
        next_change(&events, "a waiter joining");
        // Expiry writes nothing: the server sees it by looking.
        let now = unix_now();
        store.set_raw_slot(
            0,
            json!({"user": "bob", "start_time": now - 60, "last_heartbeat": now - 60,
                   "type": "manual", "expiry_time": now + 2}),
        );
        next_change(&events, "a reservation written behind the tool's back");
        next_change(&events, "an expiry");
    }
}

#[test]
fn bad_listen_addresses_are_refused_clearly() {
    let store = TestStore::new(Backend::File);
    store.admin(1);
    let out = store
        .cmd()
        .args(["web", "--listen", "localhost:8080"])
        .output()
        .expect("run web");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("e.g. 127.0.0.1:8080"), "{stderr}");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let addr = taken.local_addr().expect("its address").to_string();
    let out = store
        .cmd()
        .args(["web", "--listen", &addr])
        .output()
        .expect("run web");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
    assert!(stderr.contains("--listen ADDR:PORT"), "{stderr}");
    drop(taken);
}

/// The text of the tile of GPU `id`, or null while there is none.
fn tile_text(id: u64) -> String {
    format!(
        "const tile = document.querySelector('.gpu[data-gpu=\"{id}\"]'); \
         return tile && {{state: tile.dataset.state, text: tile.textContent}};"
    )
}

fn reserved_ids(store: &TestStore) -> Vec<u64> {
    let status = cli_json(store, &["status", "--json"]);
    let gpus = status.as_array().expect("status array").iter();
    gpus.filter(|gpu| gpu["state"] == "in_use")
        .filter_map(|gpu| gpu["id"].as_u64())
        .collect()
}

#[test]
fn the_page_in_a_real_browser() {
    let Some(browser) = Browser::start("web::the_page_in_a_real_browser") else {
        return;
    };
    for backend in BACKENDS {
        page_in_browser(&browser, backend);
    }
}

fn page_in_browser(browser: &Browser, backend: Backend) {
    let store = TestStore::new(backend);
    store.admin(4);
    reserve(&store, &["--gpus", "1", "--note", XSS_NOTE]);
    let noted = reserved_ids(&store)[0];
    // A user name the CLI would refuse, as another client could write it.
    let now = unix_now();
    let hostile: u64 = if noted == 3 { 2 } else { 3 };
    store.set_raw_slot(
        hostile as u32,
        json!({"user": XSS_USER, "start_time": now - 3600, "last_heartbeat": now - 3600,
               "type": "manual", "expiry_time": now + 3600}),
    );
    let nvml = tempfile::tempdir().expect("stub config dir");
    let stub_config = nvml.path().join("stub.conf");
    let pid = std::process::id();
    // The noted GPU's holder uses 40 GiB; root's process on the hostile user's GPU is
    // foreign use.
    let used = |id: u64| match id {
        id if id == noted => 40960,
        id if id == hostile => 2048,
        _ => 0,
    };
    let mut config: String = (0..4)
        .map(|id| format!("gpu GPU-{id} 81920 {} NVIDIA H100 80GB HBM3\n", used(id)))
        .collect();
    config.push_str(&format!("proc {hostile} {pid} 2048\n"));
    std::fs::write(&stub_config, config).expect("write the stub config");
    let server = WebServer::start_with(&store, |cmd| {
        if backend == Backend::File {
            let library = crate::nvml_stub::stub_library_dir(crate::nvml_stub::Variant::Current);
            cmd.env("CANHAZGPU_NVML_LIBRARY", library)
                .env(crate::nvml_stub::CONFIG_ENV, &stub_config);
        }
    });
    browser.goto(&server.url());
    browser.wait_for(
        DEADLINE,
        "four GPU tiles and a live stream",
        "return document.querySelectorAll('.gpu').length === 4 && \
         document.getElementById('connection').dataset.mode === 'live';",
    );

    // What the CLI reserved, with its note shown as text.
    let tile = browser.eval(&tile_text(noted));
    assert_eq!(tile["state"], "in_use", "{backend:?}: {tile}");
    let text = tile["text"].as_str().unwrap_or_default();
    assert!(
        text.contains(XSS_NOTE),
        "{backend:?}: the note as text: {text}"
    );
    assert!(
        text.contains("root") && text.contains("expires in"),
        "{text}"
    );
    let hostile_text = browser.eval(&tile_text(hostile))["text"].clone();
    assert!(
        hostile_text.as_str().unwrap_or_default().contains(XSS_USER),
        "{backend:?}: the user as text: {hostile_text}"
    );
    // Markup in data made no element and ran nothing.
    let harm = browser
        .eval("return {images: document.querySelectorAll('img').length, title: document.title};");
    assert_eq!(
        harm,
        json!({"images": 0, "title": "GPUs · canhazgpu"}),
        "{backend:?}"
    );
    if backend == Backend::File {
        let model = browser.eval(&format!(
            "return document.querySelector('.gpu[data-gpu=\"{noted}\"] .nvml').textContent;"
        ));
        assert_eq!(model, "NVIDIA H100 80GB HBM340 GiB / 80 GiB", "{backend:?}");
        let warning = browser.eval(&format!(
            "const w = document.querySelector('.gpu[data-gpu=\"{hostile}\"] .warning'); \
             return w && w.textContent;"
        ));
        assert!(
            warning
                .as_str()
                .unwrap_or_default()
                .starts_with("Also used by root"),
            "{warning}"
        );
    }

    // Relative times count on by themselves, without asking the server.
    let before = browser.eval(
        "return {text: document.querySelector('.gpu time').textContent, \
                 asked: performance.getEntriesByType('resource').length};",
    );
    let after = browser.wait_for(
        DEADLINE,
        "a relative time to change",
        &format!(
            "const text = document.querySelector('.gpu time').textContent; \
             const asked = performance.getEntriesByType('resource').length; \
             return text !== {} && {{text, asked}};",
            before["text"]
        ),
    );
    assert_eq!(
        after["asked"], before["asked"],
        "{backend:?}: the page asked the server"
    );

    // A reservation made after the page loaded shows within 2 s.
    reserve(
        &store,
        &["--gpus", "1", "--user", "carol", "--note", "live"],
    );
    let fresh = *reserved_ids(&store)
        .iter()
        .find(|id| **id != noted && **id != hostile)
        .expect("a third reserved GPU");
    browser.wait_for(
        LIVE,
        "the new reservation on the page",
        &format!(
            "const tile = document.querySelector('.gpu[data-gpu=\"{fresh}\"]'); \
             return tile && tile.dataset.state === 'in_use' && tile.textContent.includes('carol');"
        ),
    );
    // And a release. The noted GPU's 40 GiB stay in use (NVML, embedded store only).
    store.cmd().arg("release").assert().success();
    let after = match backend {
        Backend::File => "in_use_without_reservation",
        Backend::Redis => "available",
    };
    browser.wait_for(
        LIVE,
        "the released GPUs on the page",
        &format!(
            "const state = id => \
               document.querySelector(`.gpu[data-gpu=\"${{id}}\"]`).dataset.state; \
             return state({noted}) === '{after}' && state({fresh}) === 'available';"
        ),
    );
    // A waiter joining.
    reserve(&store, &["--gpus", "3"]);
    let _waiter = Waiter::start(&store);
    browser.wait_for(
        DEADLINE,
        "the waiter in the queue table",
        "const row = document.querySelector('.queue tbody tr'); \
         return row && row.textContent.includes('root');",
    );
    let errors = browser.console_errors();
    assert!(errors.is_empty(), "{backend:?}: console errors: {errors:?}");

    // The server gone: the page says its data is stale.
    drop(server);
    let said = browser.wait_for(
        DEADLINE,
        "the page to say the connection is lost",
        "const c = document.getElementById('connection'); \
         return c.dataset.mode === 'lost' && c.textContent;",
    );
    assert!(
        said.as_str()
            .unwrap_or_default()
            .contains("Connection lost"),
        "{said}"
    );
    // The refused reconnections are console errors by design; start clean next time.
    browser.console_errors();
}
