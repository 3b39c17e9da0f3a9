//! The HTTP of the dashboard, as pure functions: reading a request head (httparse does
//! the parsing, this module the limits) and writing a response with the headers every
//! answer carries. No I/O happens here; `server.rs` moves the bytes.

use std::fmt::Write as _;

/// The most a request head may take, request line and headers together. The API's
/// requests are a few hundred bytes; browsers send a few kilobytes of headers at most.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// The most header fields a request may have.
pub const MAX_HEADERS: usize = 32;

/// Sent with every response. The page loads nothing but its own files and builds its
/// DOM without markup from data, so `default-src 'self'` costs it nothing and stops
/// injected markup from running or loading anything; the page may not be framed.
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    /// Any other method: refused with 405.
    Other,
}

/// A request the server will answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The path of the target, without the query.
    pub path: String,
    /// What follows `?` in the target, if anything.
    pub query: Option<String>,
    /// The `Host` header.
    pub host: Option<String>,
    /// The request announces a body (`Content-Length` above 0 or `Transfer-Encoding`).
    pub has_body: bool,
}

impl Request {
    /// The value of `name` in the query (`?days=7`), undecoded: the API's values are
    /// numbers and host names, which need no escaping.
    pub fn query_value(&self, name: &str) -> Option<&str> {
        self.query
            .as_deref()?
            .split('&')
            .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value)
    }
}

/// What the bytes read so far make.
#[derive(Debug, PartialEq)]
pub enum Head {
    /// More bytes are needed.
    Incomplete,
    Complete(Request),
    /// The request cannot be served; answer with this and close.
    Reject(Response),
}

/// Reads the request head at the start of `bytes` (a connection's bytes so far).
pub fn parse_head(bytes: &[u8]) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) if bytes.len() >= MAX_HEAD_BYTES => {
            return Head::Reject(too_large_head());
        }
        Ok(httparse::Status::Partial) => return Head::Incomplete,
        Err(httparse::Error::TooManyHeaders) => {
            return Head::Reject(Response::text(
                431,
                format!("more than {MAX_HEADERS} header fields; send fewer\n"),
            ));
        }
        Err(httparse::Error::Version) => {
            return Head::Reject(Response::text(505, "use HTTP/1.1 or HTTP/1.0\n"));
        }
        Err(e) => {
            return Head::Reject(Response::text(400, format!("malformed request: {e}\n")));
        }
    }
    // A complete head longer than the limit still counts as too long: the limit must
    // not depend on how the bytes happened to arrive.
    if head_length(bytes) > MAX_HEAD_BYTES {
        return Head::Reject(too_large_head());
    }
    let method = match request.method {
        Some("GET") => Method::Get,
        Some("HEAD") => Method::Head,
        _ => Method::Other,
    };
    let target = request.path.unwrap_or_default();
    if !target.starts_with('/') {
        return Head::Reject(Response::text(
            400,
            "the request target must be a path starting with '/'\n",
        ));
    }
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query.to_string())),
        None => (target, None),
    };
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
    };
    let content_length = header("content-length");
    let has_body =
        header("transfer-encoding").is_some() || content_length.is_some_and(|length| length != "0");
    Head::Complete(Request {
        method,
        path: path.to_string(),
        query,
        host: header("host"),
        has_body,
    })
}

/// Where the head ends (after its blank line), or the whole length when it does not.
fn head_length(bytes: &[u8]) -> usize {
    bytes
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map_or(bytes.len(), |end| end + 4)
}

fn too_large_head() -> Response {
    Response::text(
        431,
        format!("the request head is longer than {MAX_HEAD_BYTES} bytes; send a shorter one\n"),
    )
}

/// Whether a request naming `host` in its `Host` header may be answered by a server
/// listening on a loopback address. A page on another site whose name an attacker makes
/// resolve to 127.0.0.1 (DNS rebinding) sends its own name; only loopback names are
/// ours. A server listening elsewhere was exposed on purpose and answers any name.
pub fn host_allowed(host: Option<&str>, loopback_only: bool) -> bool {
    if !loopback_only {
        return true;
    }
    let Some(host) = host else {
        // HTTP/1.0 clients may omit it; they cannot be a browser's rebound page.
        return true;
    };
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _port)| name),
    };
    let name = name.to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A complete answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// Header fields besides the ones every response carries.
    pub headers: Vec<(&'static str, String)>,
}

pub const TEXT: &str = "text/plain; charset=utf-8";
pub const JSON: &str = "application/json";

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type,
            body: body.into(),
            headers: Vec::new(),
        }
    }

    /// A plain-text message: what went wrong and what to do.
    pub fn text(status: u16, message: impl Into<String>) -> Response {
        Response::new(status, TEXT, message.into())
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// The bytes on the wire; for a HEAD request without the body (but with the length
    /// the body would have).
    pub fn encode(&self, head_only: bool) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        common_headers(&mut head);
        for (name, value) in &self.headers {
            let _ = write!(head, "{name}: {value}\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        if !head_only {
            bytes.extend_from_slice(&self.body);
        }
        bytes
    }
}

/// The head of an event stream: it has no length and lasts until either side closes.
pub fn event_stream_head() -> Vec<u8> {
    let mut head = String::from("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n");
    common_headers(&mut head);
    head.push_str("\r\n");
    head.into_bytes()
}

/// What every response carries. Every connection serves one request: a kept-alive idle
/// connection would hold a place that another client could use.
fn common_headers(head: &mut String) {
    let _ = write!(
        head,
        "Connection: close\r\n\
         Cache-Control: no-store\r\n\
         Content-Security-Policy: {CONTENT_SECURITY_POLICY}\r\n\
         X-Content-Type-Options: nosniff\r\n\
         X-Frame-Options: DENY\r\n\
         Referrer-Policy: no-referrer\r\n"
    );
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        421 => "Misdirected Request",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(bytes: &[u8]) -> Request {
        match parse_head(bytes) {
            Head::Complete(request) => request,
            other => panic!("expected a request, got {other:?}"),
        }
    }

    fn rejected(bytes: &[u8]) -> u16 {
        match parse_head(bytes) {
            Head::Reject(response) => response.status,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn a_get_with_a_query() {
        let request =
            complete(b"GET /api/report?days=7&x HTTP/1.1\r\nHost: localhost:8080\r\n\r\n");
        assert_eq!(request.method, Method::Get);
        assert_eq!(request.path, "/api/report");
        assert_eq!(request.query_value("days"), Some("7"));
        assert_eq!(request.query_value("x"), Some(""));
        assert_eq!(request.query_value("host"), None);
        assert_eq!(request.host.as_deref(), Some("localhost:8080"));
        assert!(!request.has_body);
    }

    #[test]
    fn heads_arrive_in_pieces() {
        assert_eq!(parse_head(b""), Head::Incomplete);
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\nHost: x"), Head::Incomplete);
        assert_eq!(complete(b"HEAD / HTTP/1.0\r\n\r\n").method, Method::Head);
    }

    #[test]
    fn other_methods_and_bodies_are_noticed() {
        let post = complete(b"POST /api/status HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
        assert_eq!(post.method, Method::Other);
        assert!(post.has_body);
        let chunked = complete(b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(chunked.has_body);
        assert!(!complete(b"GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n").has_body);
    }

    #[test]
    fn limits_and_garbage() {
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(rejected(&many), 431);
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_HEAD_BYTES));
        assert_eq!(rejected(long.as_bytes()), 431);
        let complete_but_long = format!(
            "GET / HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_HEAD_BYTES)
        );
        assert_eq!(rejected(complete_but_long.as_bytes()), 431);
        assert_eq!(rejected(b"GET / HTTP/2.0\r\n\r\n"), 505);
        assert_eq!(
            rejected(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
            400
        );
        assert_eq!(rejected(b"GET http://example.org/ HTTP/1.1\r\n\r\n"), 400);
    }

    #[test]
    fn loopback_servers_answer_loopback_names_only() {
        for host in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:8080",
            "127.1.2.3",
            "[::1]:8080",
            "[::1]",
            "LOCALHOST",
            "app.localhost:80",
        ] {
            assert!(host_allowed(Some(host), true), "{host}");
        }
        for host in [
            "evil.example:8080",
            "10.0.0.1:8080",
            "[::2]:80",
            "localhost.evil",
        ] {
            assert!(!host_allowed(Some(host), true), "{host}");
            assert!(host_allowed(Some(host), false), "{host}");
        }
        assert!(host_allowed(None, true));
    }

    #[test]
    fn every_response_carries_the_security_headers() {
        let text = String::from_utf8(Response::text(404, "no\n").encode(false)).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"), "{text}");
        for line in [
            "Content-Security-Policy: default-src 'self'",
            "X-Content-Type-Options: nosniff\r\n",
            "Connection: close\r\n",
            "Content-Length: 3\r\n",
        ] {
            assert!(text.contains(line), "{line} missing from {text}");
        }
        assert!(!text.to_ascii_lowercase().contains("access-control"));
        assert!(text.ends_with("\r\n\r\nno\n"));
        let head = String::from_utf8(Response::text(200, "body").encode(true)).unwrap();
        assert!(head.contains("Content-Length: 4\r\n"), "{head}");
        assert!(head.ends_with("\r\n\r\n"), "{head}");
    }
}
