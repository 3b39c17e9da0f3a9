//! Which answer each request gets. Only GET and HEAD exist, and no route writes.

use serde::Serialize;

use crate::views::HostView;
use crate::web::Lab;
use crate::web::assets;
use crate::web::http::{JSON, Method, Request, Response, TEXT, host_allowed};

/// `report`'s own default and range.
const DEFAULT_REPORT_DAYS: u32 = 30;
const MAX_REPORT_DAYS: u32 = 3650;

/// What a worker hands back.
#[derive(Debug, PartialEq)]
pub enum Reply {
    Respond(Response),
    /// Open an event stream (`/api/events`).
    EventStream,
}

/// The body of every API error.
#[derive(Serialize)]
struct ApiError<'a> {
    error: &'a str,
}

fn api_error(status: u16, message: &str) -> Reply {
    let body = serde_json::to_vec(&ApiError { error: message }).unwrap_or_default();
    Reply::Respond(Response::new(status, JSON, body))
}

fn json(value: &impl Serialize) -> Reply {
    match serde_json::to_vec(value) {
        Ok(body) => Reply::Respond(Response::new(200, JSON, body)),
        Err(e) => api_error(500, &format!("cannot encode the answer as JSON: {e}")),
    }
}

/// The answers that read no store: refusals, the page's files, `/healthz` and the event
/// stream. The I/O thread gives them itself, so that a burst of pages opening never
/// waits for a worker. `None`: the request needs [`route_to_lab`]. `loopback_only`: the
/// server listens on a loopback address (see [`host_allowed`]).
pub fn route_at_once(request: &Request, loopback_only: bool) -> Option<Reply> {
    if request.method == Method::Other {
        return Some(Reply::Respond(
            Response::text(
                405,
                "this dashboard is read-only: only GET and HEAD are served\n",
            )
            .with_header("Allow", "GET, HEAD"),
        ));
    }
    if request.has_body {
        return Some(Reply::Respond(Response::text(
            413,
            "requests to this dashboard have no body; send GET without one\n",
        )));
    }
    if !host_allowed(request.host.as_deref(), loopback_only) {
        return Some(Reply::Respond(Response::text(
            421,
            "this dashboard listens on a loopback address and answers only to localhost \
             names; open it as http://localhost:PORT/ or http://127.0.0.1:PORT/\n",
        )));
    }
    if let Some(asset) = assets::find(&request.path) {
        return Some(Reply::Respond(Response::new(
            200,
            asset.content_type,
            asset.body,
        )));
    }
    match request.path.as_str() {
        "/healthz" => Some(Reply::Respond(Response::new(200, TEXT, "ok\n"))),
        "/api/events" => Some(Reply::EventStream),
        "/api/hosts" | "/api/status" | "/api/queue" | "/api/report" => None,
        path if path.starts_with("/api/") => Some(api_error(
            404,
            &format!(
                "no API route {path}; the routes are /api/hosts, /api/status, /api/queue, \
                 /api/report?days=N and /api/events (see docs/web.md)"
            ),
        )),
        _ => Some(Reply::Respond(Response::text(
            404,
            "no such page; the dashboard is at /\n",
        ))),
    }
}

/// The answers read from the lab (on a worker thread).
pub fn route_to_lab(request: &Request, lab: &dyn Lab) -> Reply {
    match request.path.as_str() {
        "/api/hosts" => json(&lab.hosts()),
        "/api/status" => with_host(request, lab, |host| json(&host.gpus)),
        "/api/queue" => with_host(request, lab, |host| json(&host.queue)),
        "/api/report" => match report_days(request) {
            Ok(days) => match lab.report(days) {
                Ok(report) => json(&report),
                Err(e) => api_error(503, &e.message),
            },
            Err(message) => api_error(400, &message),
        },
        path => api_error(404, &format!("no API route {path}")),
    }
}

/// Answers with `answer` for the host named by `?host=`, else the first host (the one the
/// server runs on).
fn with_host(request: &Request, lab: &dyn Lab, answer: impl FnOnce(&HostView) -> Reply) -> Reply {
    let hosts = lab.hosts();
    let wanted = request.query_value("host");
    let found = match wanted {
        Some(name) => hosts.iter().find(|host| host.host == name),
        None => hosts.first(),
    };
    match found {
        Some(host) if host.reachable => answer(host),
        Some(host) => api_error(
            503,
            &format!(
                "cannot read host {}: {}",
                host.host,
                host.error.as_deref().unwrap_or("unreachable")
            ),
        ),
        None => api_error(
            404,
            &format!(
                "no host named '{}'; /api/hosts lists every host",
                wanted.unwrap_or_default()
            ),
        ),
    }
}

/// `?days=N` as `report --days N` takes it.
fn report_days(request: &Request) -> Result<u32, String> {
    let Some(text) = request.query_value("days") else {
        return Ok(DEFAULT_REPORT_DAYS);
    };
    match text.parse::<u32>() {
        Ok(days) if (1..=MAX_REPORT_DAYS).contains(&days) => Ok(days),
        _ => Err(format!(
            "days must be a whole number from 1 to {MAX_REPORT_DAYS}, not '{text}'; \
             e.g. /api/report?days=7"
        )),
    }
}
