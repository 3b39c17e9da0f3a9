//! The dashboard server with labs of several hosts (the seam the multi-host work will
//! fill), read from real embedded stores, plus its limits under clients that misbehave,
//! and the page with several hosts in a real headless Chromium. Also the screenshot of
//! docs/images (an ignored test that scripts/screenshot.sh runs).

// Tests print what they measured; the test harness captures it.
#![allow(clippy::disallowed_macros)]

#[path = "../../tests/e2e/common/browser.rs"]
mod browser;
#[path = "../../tests/e2e/common/http.rs"]
mod http;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::cli::GpuLibraryArgs;
use crate::commands::Context;
use crate::commands::gpus::Gpus;
use crate::commands::report::Report;
use crate::config::Config;
use crate::error::Result;
use crate::gpu::stub as nvml_stub;
use crate::lab;
use crate::liveness::ProcView;
use crate::model::{Kind, Pool, Reservation, Timestamp, Waiter};
use crate::store::Store;
use crate::views::HostView;
use crate::web::{Lab, Limits, Server};

const DEADLINE: Duration = Duration::from_secs(20);

/// One host of a test lab: a name, a store, and what NVML says about its GPUs.
struct TestHost {
    name: String,
    ctx: Context,
    gpus: Gpus,
}

/// Several hosts read as the real lab reads one: [`lab::view_of`] on each store.
struct StoresLab {
    hosts: Vec<TestHost>,
}

impl Lab for StoresLab {
    fn hosts(&self) -> Vec<HostView> {
        self.hosts
            .iter()
            .map(|host| lab::view_of(&host.ctx, host.name.clone(), &host.gpus, 1024))
            .collect()
    }

    fn report(&self, days: u32) -> Result<Report> {
        lab::local_report(&self.hosts[0].ctx, days)
    }
}

fn context(url: &str) -> Context {
    Context {
        store: Store::open(url, &Default::default()).expect("a store URL"),
        store_url: url.to_string(),
        config: Config::default(),
        view: ProcView::new(),
        store_key: Some(url.to_string()),
    }
}

/// An embedded store of `gpus` GPUs in `dir`.
fn file_host(name: &str, dir: &Path, gpus: u32) -> TestHost {
    let ctx = context(&format!("file://{}", dir.join(name).display()));
    ctx.store.prepare_for_admin().expect("create the store");
    ctx.store
        .overwrite(|now| Pool::new(gpus, now - 30 * 86_400))
        .expect("initialize a pool");
    TestHost {
        name: name.to_string(),
        ctx,
        gpus: Gpus::none(),
    }
}

/// A host whose store cannot be reached: a Redis socket that does not exist.
fn unreachable_host(name: &str, dir: &Path) -> TestHost {
    let socket = dir.join(format!("{name}-redis.sock"));
    TestHost {
        name: name.to_string(),
        ctx: context(&format!("redis+unix://{}", socket.display())),
        gpus: Gpus::none(),
    }
}

fn manual(user: &str, start: Timestamp, hours: i64, note: Option<&str>) -> Reservation {
    Reservation {
        user: user.into(),
        actual_user: None,
        kind: Kind::Manual,
        start_time: start,
        last_heartbeat: start,
        expiry_time: Some(start + hours * 3600),
        note: note.map(str::to_string),
        owner: None,
        request_id: None,
    }
}

/// A `run` reservation whose owner this host cannot see, alive by its heartbeat.
fn run(user: &str, start: Timestamp, heartbeat: Timestamp, note: Option<&str>) -> Reservation {
    Reservation {
        kind: Kind::Run,
        expiry_time: None,
        last_heartbeat: heartbeat,
        ..manual(user, start, 0, note)
    }
}

/// Reserves GPU `id` of `host` as `reservation` made it, at the store's time `now`.
fn hold(host: &TestHost, id: u32, reservation: impl Fn(Timestamp) -> Reservation) {
    host.ctx
        .store
        .update(|pool, now| {
            pool.gpus[id as usize].reservation = Some(reservation(now));
            Ok(())
        })
        .expect("reserve");
}

/// A serving of `lab` on a free loopback port.
fn serve(lab: impl Lab + 'static, limits: Limits) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    Server::start(listener, Arc::new(lab), limits).expect("start the server")
}

fn three_hosts(dir: &Path) -> StoresLab {
    let a = file_host("gpu-a", dir, 4);
    let b = file_host("gpu-b", dir, 2);
    hold(&a, 1, |now| {
        manual("alice", now - 600, 2, Some("<b>bold</b>"))
    });
    hold(&b, 0, |now| run("bob", now - 60, now - 5, None));
    StoresLab {
        hosts: vec![a, b, unreachable_host("gpu-c", dir)],
    }
}

#[test]
fn every_host_is_in_the_api_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(three_hosts(dir.path()), Limits::default());
    let hosts = http::get(server.addr(), "/api/hosts").json();
    let names: Vec<&str> = hosts
        .as_array()
        .unwrap()
        .iter()
        .map(|host| host["host"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["gpu-a", "gpu-b", "gpu-c"]);
    assert_eq!(hosts[0]["summary"]["in_use"], 1);
    assert_eq!(hosts[1]["gpus"][0]["user"], "bob");
    assert_eq!(hosts[2]["reachable"], false);
    assert!(
        hosts[2]["error"]
            .as_str()
            .unwrap()
            .contains("cannot connect to Redis at redis+unix://")
    );
    assert_eq!(hosts[2]["gpus"], json!([]));

    // Without ?host=, the first host: the one the server runs on.
    let status = http::get(server.addr(), "/api/status").json();
    assert_eq!(status, hosts[0]["gpus"]);
    let b = http::get(server.addr(), "/api/status?host=gpu-b").json();
    assert_eq!(b, hosts[1]["gpus"]);
    let queue = http::get(server.addr(), "/api/queue?host=gpu-b");
    assert_eq!((queue.status, queue.json()), (200, json!([])));
    let down = http::get(server.addr(), "/api/status?host=gpu-c");
    assert_eq!(down.status, 503);
    assert!(down.json()["error"].as_str().unwrap().contains("gpu-c"));
}

#[test]
fn several_hosts_on_the_page_in_a_real_browser() {
    let Some(browser) = browser::Browser::start("web::tests::several_hosts_on_the_page") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = serve(three_hosts(dir.path()), Limits::default());
    browser.goto(&format!("http://{}/", server.addr()));
    let shown = browser.wait_for(
        DEADLINE,
        "three host sections",
        "const hosts = [...document.querySelectorAll('section.host')]; \
         return hosts.length === 3 && hosts.map(h => ({ \
           name: h.dataset.host, tiles: h.querySelectorAll('.gpu').length, \
           unreachable: h.classList.contains('unreachable'), \
           summary: (h.querySelector('.summary') || {}).textContent || null, \
           error: (h.querySelector('.host-error') || {}).textContent || null }));",
    );
    assert_eq!(shown[0]["name"], "gpu-a");
    assert_eq!(shown[0]["tiles"], 4);
    assert_eq!(shown[0]["summary"], "3 free1 reserved0 waiting");
    assert_eq!(shown[1]["name"], "gpu-b");
    assert_eq!(shown[1]["tiles"], 2);
    assert_eq!(shown[2]["name"], "gpu-c");
    assert_eq!(shown[2]["unreachable"], true);
    assert_eq!(shown[2]["tiles"], 0);
    let error = shown[2]["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("Unreachable: cannot connect to Redis at"),
        "{error}"
    );
    let note = browser.eval(
        "return document.querySelector('[data-host=\"gpu-a\"] .gpu[data-gpu=\"1\"] .note')\
         .textContent;",
    );
    assert_eq!(note, "<b>bold</b>");
    let markup = browser.eval("return document.querySelectorAll('.note b, img').length;");
    assert_eq!(markup, 0, "markup in a note became elements");
    // Light and dark follow the system's setting.
    let background = "return getComputedStyle(document.body).backgroundColor;";
    browser.prefer_dark(true);
    assert_eq!(browser.eval(background), "rgb(14, 17, 22)");
    browser.prefer_dark(false);
    assert_eq!(browser.eval(background), "rgb(244, 246, 248)");
    // On a phone nothing is wider than the screen (the queue table scrolls in its box).
    browser.emulate_phone(Some(360));
    let overflow = browser.eval(
        "return [document.documentElement.scrollWidth, window.innerWidth, \
                 [...document.querySelectorAll('section.host, .gpu, .period')] \
                   .filter(e => e.getBoundingClientRect().right > window.innerWidth).length];",
    );
    assert_eq!(
        overflow,
        json!([360, 360, 0]),
        "[page width, screen width, wider boxes]"
    );
    browser.emulate_phone(None);
    let errors = browser.console_errors();
    assert!(errors.is_empty(), "console errors: {errors:?}");
}

/// A lab whose reads wait until the test lets them go.
struct GatedLab {
    gate: Mutex<mpsc::Receiver<()>>,
    reads: Arc<Mutex<usize>>,
}

/// The watcher reads the lab too; tests that count or hold reads leave its reads alone.
fn on_watcher_thread() -> bool {
    std::thread::current().name() == Some("web-watch")
}

impl Lab for GatedLab {
    fn hosts(&self) -> Vec<HostView> {
        if on_watcher_thread() {
            return Vec::new();
        }
        *self.reads.lock().unwrap() += 1;
        let _ = self.gate.lock().unwrap().recv_timeout(DEADLINE);
        Vec::new()
    }

    fn report(&self, _days: u32) -> Result<Report> {
        unreachable!("not asked")
    }
}

fn send_request(addr: SocketAddr, path: &str) -> TcpStream {
    let mut stream = http::connect(addr);
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    stream
}

#[test]
fn a_full_queue_answers_busy_at_once() {
    let (open, gate) = mpsc::channel();
    let reads = Arc::new(Mutex::new(0));
    let lab = GatedLab {
        gate: Mutex::new(gate),
        reads: reads.clone(),
    };
    let limits = Limits {
        workers: 1,
        queue: 1,
        ..Limits::default()
    };
    let server = serve(lab, limits);
    let held = send_request(server.addr(), "/api/hosts");
    common_wait(|| *reads.lock().unwrap() == 1);
    // The one worker is held: one request fits in the queue, the others are refused.
    let (answered, answers) = mpsc::channel();
    for mut stream in (0..5).map(|_| send_request(server.addr(), "/api/hosts")) {
        let answered = answered.clone();
        std::thread::spawn(move || {
            let _ = answered.send(http::read_response(&mut stream).unwrap());
        });
    }
    for _ in 0..4 {
        let refused = answers.recv_timeout(DEADLINE).expect("a refusal");
        assert_eq!(refused.status, 503);
        assert!(refused.text().contains("busy"), "{}", refused.text());
        assert_eq!(refused.header("Retry-After"), Some("1"));
    }
    // The fifth waits in the queue behind the held worker: nothing can answer it yet.
    assert!(
        answers.try_recv().is_err(),
        "the queued request was answered"
    );
    for _ in 0..2 {
        open.send(()).unwrap();
    }
    let queued = answers.recv_timeout(DEADLINE).expect("the queued answer");
    assert_eq!(queued.status, 200);
    let mut held = held;
    assert_eq!(http::read_response(&mut held).unwrap().status, 200);
}

fn common_wait(mut check: impl FnMut() -> bool) {
    wait_until(|| check().then_some(()));
}

fn wait_until<T>(mut check: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < end, "timed out");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn empty_lab(dir: &Path) -> StoresLab {
    StoresLab {
        hosts: vec![file_host("solo", dir, 1)],
    }
}

/// Opens an event stream and returns it once its head has arrived, with that head.
fn open_stream(addr: SocketAddr) -> (BufReader<TcpStream>, String) {
    let mut reader = BufReader::new(send_request(addr, "/api/events"));
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    (reader, status)
}

#[test]
fn event_streams_are_bounded_and_places_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        streams: 2,
        ..Limits::default()
    };
    let server = serve(empty_lab(dir.path()), limits);
    let (first, status) = open_stream(server.addr());
    assert_eq!(status, "HTTP/1.1 200 OK\r\n");
    let (_second, status) = open_stream(server.addr());
    assert_eq!(status, "HTTP/1.1 200 OK\r\n");
    let refused = http::get(server.addr(), "/api/events");
    assert_eq!(refused.status, 503);
    assert!(refused.text().contains("the page polls instead"));
    assert_eq!(refused.header("Retry-After"), Some("30"));
    // A closed stream frees its place.
    drop(first);
    wait_until(|| {
        let (_stream, status) = open_stream(server.addr());
        (status == "HTTP/1.1 200 OK\r\n").then_some(())
    });
    // HEAD of a stream is its head alone.
    let head = http::request(server.addr(), "HEAD", "/api/events", None).unwrap();
    assert_eq!(head.header("Content-Type"), Some("text/event-stream"));
    assert!(head.body.is_empty());
}

#[test]
fn a_hundred_pages_opening_at_once_all_get_their_stream() {
    // A wall of screens reconnecting after a restart: 100 streams asked at the same time.
    let dir = tempfile::tempdir().unwrap();
    let server = serve(empty_lab(dir.path()), Limits::default());
    let streams: Vec<TcpStream> = (0..100)
        .map(|_| send_request(server.addr(), "/api/events"))
        .collect();
    for stream in streams {
        let mut status = String::new();
        BufReader::new(stream).read_line(&mut status).unwrap();
        assert_eq!(status, "HTTP/1.1 200 OK\r\n");
    }
    // And then all of them ask for the data at once, as after a change.
    let asking: Vec<TcpStream> = (0..100)
        .map(|_| send_request(server.addr(), "/api/hosts"))
        .collect();
    for mut stream in asking {
        assert_eq!(http::read_response(&mut stream).unwrap().status, 200);
    }
}

#[test]
fn a_head_that_never_ends_is_dropped_at_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        head_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let server = serve(empty_lab(dir.path()), limits);
    let mut slow = http::connect(server.addr());
    slow.write_all(b"GET /api/hosts HTTP/1.1\r\nHost: loc")
        .unwrap();
    let response = http::read_response(&mut slow).unwrap();
    assert_eq!(response.status, 408);
    assert!(response.text().contains("in time"));
}

/// `count` hosts of 8 GPUs each, from one store read `count` times.
struct ManyHosts {
    host: TestHost,
    count: usize,
}

impl Lab for ManyHosts {
    fn hosts(&self) -> Vec<HostView> {
        let one = lab::view_of(&self.host.ctx, "h".into(), &self.host.gpus, 1024);
        let count = if on_watcher_thread() { 1 } else { self.count };
        (0..count)
            .map(|i| HostView {
                host: format!("host-{i}"),
                ..one.clone()
            })
            .collect()
    }

    fn report(&self, days: u32) -> Result<Report> {
        lab::local_report(&self.host.ctx, days)
    }
}

#[test]
fn a_client_that_does_not_read_holds_no_worker() {
    let dir = tempfile::tempdir().unwrap();
    let host = file_host("big", dir.path(), 8);
    for id in 0..8 {
        hold(&host, id, |now| {
            manual("someone", now, 1, Some(&"n".repeat(200)))
        });
    }
    let limits = Limits {
        workers: 1,
        write_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    // About 30 MB of JSON: far more than the sockets buffer.
    let server = serve(ManyHosts { host, count: 8000 }, limits);
    let mut stalled = send_request(server.addr(), "/api/hosts");
    // The one worker answered it; the I/O thread writes it as the client reads, and
    // serves another request meanwhile.
    assert_eq!(http::get(server.addr(), "/healthz").status, 200);
    // Read at most 64 KiB per 20 ms: far too slow to take 30 MB before the write
    // deadline, so the server drops the connection and the answer ends short.
    let mut received = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match stalled.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => received.extend_from_slice(&chunk[..n]),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let response = http::parse_response(&received).unwrap();
    let length: usize = response.header("Content-Length").unwrap().parse().unwrap();
    assert!(length > 20_000_000, "a small answer: {length} bytes");
    assert!(
        response.body.len() < length,
        "the whole answer ({length} bytes) arrived"
    );
}

/// Where scripts/screenshot.sh wants the pictures.
const SCREENSHOT_ENV: &str = "CANHAZGPU_SCREENSHOT_DIR";

#[test]
#[ignore = "makes docs/images/dashboard*.png; run by scripts/screenshot.sh"]
fn screenshot() {
    let out = std::env::var_os(SCREENSHOT_ENV).expect("CANHAZGPU_SCREENSHOT_DIR");
    let out = Path::new(&out);
    let dir = tempfile::tempdir().unwrap();
    let lab = demo_lab(dir.path());
    let server = serve(lab, Limits::default());
    let browser = browser::Browser::start("web::tests::screenshot").expect("a browser");
    let url = format!("http://{}/", server.addr());
    browser.set_window_size(1280, 900);
    for (dark, phone, name) in [
        (false, None, "dashboard.png"),
        (true, None, "dashboard-dark.png"),
        (false, Some(390), "dashboard-phone.png"),
    ] {
        browser.emulate_phone(phone);
        browser.prefer_dark(dark);
        browser.goto(&url);
        browser.wait_for(
            DEADLINE,
            "the page with its report",
            "return document.querySelectorAll('section.host').length === 3 && \
             document.querySelectorAll('.period').length === 4 && \
             document.getElementById('connection').dataset.mode === 'live';",
        );
        browser.screenshot(&out.join(name));
    }
    let errors = browser.console_errors();
    assert!(errors.is_empty(), "console errors: {errors:?}");
}

/// A lab that looks like a real one: two hosts with reservations, NVML on the first,
/// a queue, a usage history, and a host that is down.
fn demo_lab(dir: &Path) -> StoresLab {
    let mut a = file_host("gpu-a", dir, 8);
    let b = file_host("gpu-b", dir, 4);
    a.gpus = demo_nvml(dir);
    demo_history(&a);
    hold(&a, 0, |now| {
        run(
            "alice",
            now - 3 * 3600 - 420,
            now - 12,
            Some("llama-70b finetune"),
        )
    });
    hold(&a, 1, |now| {
        run(
            "alice",
            now - 3 * 3600 - 420,
            now - 12,
            Some("llama-70b finetune"),
        )
    });
    hold(&a, 3, |now| {
        manual("bob", now - 1500, 4, Some("eval sweep, back at 5pm"))
    });
    hold(&a, 4, |now| Reservation {
        actual_user: Some("dave".into()),
        ..manual("carol", now - 86_400 + 3000, 24, None)
    });
    a.ctx
        .store
        .update(|pool, now| {
            pool.queue.push(demo_waiter("erin", 2, now - 720));
            Ok(())
        })
        .unwrap();
    hold(&b, 0, |now| run("frank", now - 47 * 60, now - 30, None));
    hold(&b, 3, |now| {
        manual("grace", now - 5 * 3600, 8, Some("demo for the review"))
    });
    b.ctx
        .store
        .update(|pool, now| {
            pool.gpus[2].last_released = Some(now - 2 * 3600 - 300);
            Ok(())
        })
        .unwrap();
    StoresLab {
        hosts: vec![a, b, unreachable_host("gpu-c", dir)],
    }
}

/// NVML of eight H100s: the run's GPUs busy (one also used by someone else), one GPU
/// used without a reservation.
fn demo_nvml(dir: &Path) -> Gpus {
    let pid = std::process::id();
    let used = [61_440, 58_368, 0, 12_288, 30_720, 0, 20_480, 0];
    let mut config: String = used
        .iter()
        .enumerate()
        .map(|(i, mib)| format!("gpu GPU-{i:08x} 81559 {mib} NVIDIA H100 80GB HBM3\n"))
        .collect();
    config.push_str(&format!("proc 1 {pid} 8192\nproc 6 {pid} 20480\n"));
    let stub_dir = dir.join("nvml");
    std::fs::create_dir_all(&stub_dir).unwrap();
    let library = nvml_stub::install_stub(nvml_stub::Variant::Current, &stub_dir, &config);
    let args = GpuLibraryArgs {
        nvml_library: Some(library),
        amd_smi_library: None,
    };
    Gpus::probe(&Config::default(), &args)
}

fn demo_waiter(user: &str, gpus: u32, since: Timestamp) -> Waiter {
    let value = json!({"id": format!("{user}-1"), "user": user, "count": gpus, "kind": "run",
                       "enqueued_at": since, "last_heartbeat": since + 700});
    serde_json::from_value(value).unwrap()
}

/// Finished reservations over the last 90 days, through the store's own history.
fn demo_history(host: &TestHost) {
    let day = 86_400;
    let spans: [(&str, i64, i64); 9] = [
        ("alice", 2 * day, 9 * 3600),
        ("alice", 5 * day, 20 * 3600),
        ("bob", 3 * 3600, 2 * 3600),
        ("bob", 20 * day, 30 * 3600),
        ("carol", 12 * day, 50 * 3600),
        ("frank", 6 * 3600, 4 * 3600),
        ("frank", 60 * day, 70 * 3600),
        ("grace", 40 * day, 25 * 3600),
        ("henry", 80 * day, 12 * 3600),
    ];
    for (user, ago, length) in spans {
        let user = user.to_string();
        host.ctx
            .store
            .update(|pool, now| {
                let start = now - ago - length;
                pool.gpus[7].reservation = Some(manual(&user, start, 100, None));
                Ok(())
            })
            .unwrap();
        host.ctx
            .store
            .update(|pool, now| {
                pool.gpus[7].reservation = None;
                pool.gpus[7].last_released = Some(now - ago);
                Ok(())
            })
            .unwrap();
    }
}

/// Requests per second of `path` from `clients` threads asking one after another for
/// `seconds`, each on a new connection (as the server serves one request per connection).
fn requests_per_second(addr: SocketAddr, path: &str, clients: usize, seconds: f64) -> f64 {
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let path = path.to_string();
            std::thread::spawn(move || {
                let mut done = 0u64;
                while Instant::now() < end {
                    let response = http::get(addr, &path);
                    assert_eq!(response.status, 200, "{}", response.text());
                    done += 1;
                }
                done
            })
        })
        .collect();
    let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    total as f64 / start.elapsed().as_secs_f64()
}

/// `count` hosts of 8 GPUs, each its own embedded store with three reservations.
fn bench_lab(dir: &Path, count: usize) -> StoresLab {
    let hosts = (0..count)
        .map(|i| {
            let host = file_host(&format!("host-{i:03}"), dir, 8);
            for id in [0, 3, 5] {
                hold(&host, id, |now| {
                    manual("someone", now - 600, 4, Some("a note"))
                });
            }
            host
        })
        .collect();
    StoresLab { hosts }
}

#[test]
#[ignore = "a benchmark: run by bench/web.sh in a release build"]
fn bench_requests() {
    let clients = 4;
    println!("| route | hosts | answer bytes | requests/s ({clients} clients) |");
    println!("|---|---|---|---|");
    for count in [1, 100] {
        let dir = tempfile::tempdir().unwrap();
        let server = serve(bench_lab(dir.path(), count), Limits::default());
        for path in ["/api/status", "/api/hosts"] {
            let _warm = requests_per_second(server.addr(), path, clients, 0.5);
            let rate = requests_per_second(server.addr(), path, clients, 3.0);
            let bytes = http::get(server.addr(), path).body.len();
            println!("| {path} | {count} | {bytes} | {rate:.0} |");
        }
    }
}
