//! The request and response model: what a handler sees of a request ([`RequestInfo`]), what
//! it answers ([`Reply`], [`Body`]), the [`screen`] every request passes first, and
//! [`respond`], the one place a reply is written, with the headers every response carries.
//!
//! Every response gets `Cache-Control: no-store` (each answer is of this moment and this
//! replica) and a `Server` header; tiny_http adds `Date` and the framing
//! (`Content-Length`, or chunked for a [`Body::Stream`]).
//!
//! Architecture Invariant: this module knows requests and responses, not routes: nothing here
//! reads the journal, and request bodies are never read.

use std::io::{self, Cursor, Read, Write};
use std::net::{IpAddr, SocketAddr};

use tiny_http::{Header, Method, Request, Response, StatusCode};

/// The most bytes of request line and headers accepted; more is answered 431.
///
/// tiny_http has already read them into memory by then (it has no limit of its own), so this
/// bounds what reaches the handlers, not what a connection can make the server buffer.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// `Retry-After` of a 503, in seconds.
pub const RETRY_AFTER: &str = "1";

/// The content type of plain-text bodies.
pub const TEXT: &str = "text/plain; charset=utf-8";

/// The content type of JSON bodies.
pub const JSON: &str = "application/json";

/// The `Server` header.
const SERVER: &str = concat!("visit-server/", env!("CARGO_PKG_VERSION"));

/// The headers [`respond`] adds to every reply.
const DEFAULT_HEADERS: [(&str, &str); 2] = [("Cache-Control", "no-store"), ("Server", SERVER)];

/// What a handler needs to know about a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    /// The method.
    pub method: &'a Method,
    /// The request target as sent: path and query, undecoded.
    pub url: &'a str,
    /// `(1, 1)` or `(1, 0)`; tiny_http answers other versions itself.
    pub http_version: (u8, u8),
    /// The TCP peer.
    pub peer: Option<SocketAddr>,
    /// The headers, in order.
    pub headers: &'a [Header],
}

impl<'a> RequestInfo<'a> {
    /// Views a tiny_http request.
    pub fn of(rq: &'a Request) -> RequestInfo<'a> {
        let v = rq.http_version();
        RequestInfo {
            method: rq.method(),
            url: rq.url(),
            http_version: (v.0, v.1),
            peer: rq.remote_addr().copied(),
            headers: rq.headers(),
        }
    }

    /// The values of every header named `name`, in order.
    pub fn header_values(&self, name: &'static str) -> impl DoubleEndedIterator<Item = &'a str> {
        self.headers
            .iter()
            .filter(move |h| h.field.equiv(name))
            .map(|h| h.value.as_str())
    }

    /// The path, without the query.
    pub fn path(&self) -> &'a str {
        self.url.split_once('?').map_or(self.url, |(p, _)| p)
    }

    /// The query, without `?` (empty if none).
    pub fn query(&self) -> &'a str {
        self.url.split_once('?').map_or("", |(_, q)| q)
    }

    /// The declared body length: `Ok(0)` without `Content-Length`.
    ///
    /// # Errors
    ///
    /// A reason for the 400, if a length is not a number or two lengths differ.
    pub fn content_length(&self) -> Result<u64, &'static str> {
        let mut length = None;
        for v in self.header_values("Content-Length") {
            // RFC 9110 allows `Content-Length: 5, 5`; take each element.
            for v in v.split(',').map(str::trim) {
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err("bad Content-Length");
                }
                let n: u64 = v.parse().map_err(|_| "bad Content-Length")?;
                match length {
                    Some(m) if m != n => return Err("conflicting Content-Length headers"),
                    _ => length = Some(n),
                }
            }
        }
        Ok(length.unwrap_or(0))
    }
}

/// A response, before it is written.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// Headers besides those [`respond`] adds to every response.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Body,
    /// Close the connection after this response (see [`screen`]).
    pub close: bool,
    /// The address a visit was recorded with, for the request log.
    pub recorded: Option<IpAddr>,
    /// Why a read was refused for want of a token (a `401`), for the `unauthorized` log line.
    pub denied: Option<Denied>,
}

/// A read refused for want of a valid token: what the `unauthorized` log line says besides
/// the path and the peer. Never the credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denied {
    /// Why, in a few words (`no credentials`, `wrong token`, ...).
    pub reason: &'static str,
    /// The client: the TCP peer, or the address a trusted proxy forwarded.
    pub client: IpAddr,
}

/// A response body.
pub enum Body {
    /// A small body, sent with `Content-Length`.
    Text(String),
    /// A streamed body of unknown length, sent chunked.
    Stream(Box<dyn Read + Send>),
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Body::Text(s) => f.debug_tuple("Text").field(s).finish(),
            Body::Stream(_) => f.write_str("Stream(..)"),
        }
    }
}

impl Reply {
    /// A reply with a `Content-Type`.
    pub fn new(status: u16, content_type: &str, body: Body) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type", content_type.into())],
            body,
            close: false,
            recorded: None,
            denied: None,
        }
    }

    /// A plain-text reply.
    pub fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply::new(status, TEXT, Body::Text(body.into()))
    }

    /// A JSON reply.
    pub fn json(status: u16, body: String) -> Reply {
        Reply::new(status, JSON, Body::Text(body))
    }

    /// A 200 whose body streams.
    pub fn stream(content_type: &str, body: impl Read + Send + 'static) -> Reply {
        Reply::new(200, content_type, Body::Stream(Box::new(body)))
    }

    /// A 503 with `Retry-After`.
    pub fn unavailable(body: impl Into<String>) -> Reply {
        Reply::text(503, body).with_header("Retry-After", RETRY_AFTER)
    }

    /// Sets a header (replacing one of the same name).
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        match self.headers.iter_mut().find(|(n, _)| *n == name) {
            Some(h) => h.1 = value.into(),
            None => self.headers.push((name, value.into())),
        }
        self
    }

    /// Closes the connection after this reply.
    pub fn closing(mut self) -> Reply {
        self.close = true;
        self
    }

    /// A header's value, if set.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Reads the whole body (for tests and small bodies).
    ///
    /// # Errors
    ///
    /// An I/O error from a streamed body.
    pub fn into_bytes(self) -> std::io::Result<Vec<u8>> {
        match self.body {
            Body::Text(s) => Ok(s.into_bytes()),
            Body::Stream(mut r) => {
                let mut v = Vec::new();
                r.read_to_end(&mut v)?;
                Ok(v)
            }
        }
    }
}

/// True if the reply to this request will close the connection, known before handling it
/// (the worker marks the connection before the next request on it can be taken).
pub fn must_close(rq: &RequestInfo<'_>) -> bool {
    screen(rq).is_some() || rq.content_length().is_ok_and(|n| n > 0)
}

/// Refuses requests this server will not parse; `None` lets them through.
///
/// - more than [`MAX_HEADER_BYTES`] of request line and headers: 431;
/// - a control character (other than tab) in the target or a header: 400 — tiny_http splits
///   lines on CRLF only, so a bare LF or CR inside a header value is a smuggling or log-forging
///   attempt, not something a client sends by accident;
/// - `Transfer-Encoding` (any value, any method): 400 — this server reads no body, and
///   tiny_http gives `Transfer-Encoding` precedence over `Content-Length`, which a proxy in
///   front may not;
/// - an unparsable or conflicting `Content-Length`: 400;
/// - a body on `GET` or `HEAD`: 400.
///
/// Every refusal closes the connection.
pub fn screen(rq: &RequestInfo<'_>) -> Option<Reply> {
    let size = rq.method.as_str().len()
        + rq.url.len()
        + 12
        + rq.headers
            .iter()
            .map(|h| h.field.as_str().len() + h.value.len() + 4)
            .sum::<usize>();
    if size > MAX_HEADER_BYTES {
        return Some(
            Reply::text(
                431,
                format!("request header fields too large (over {MAX_HEADER_BYTES} bytes)\n"),
            )
            .closing(),
        );
    }
    let is_ctl = |b: u8| (b < 0x20 && b != b'\t') || b == 0x7f;
    if rq.url.bytes().any(is_ctl)
        || rq.headers.iter().any(|h| {
            h.field.as_str().as_bytes().iter().any(|&b| is_ctl(b))
                || h.value.as_bytes().iter().any(|&b| is_ctl(b))
        })
    {
        return Some(Reply::text(400, "control character in request\n").closing());
    }
    if rq.header_values("Transfer-Encoding").next().is_some() {
        return Some(
            Reply::text(
                400,
                "Transfer-Encoding is not accepted: this server reads no request body\n",
            )
            .closing(),
        );
    }
    match rq.content_length() {
        Err(why) => Some(Reply::text(400, format!("{why}\n")).closing()),
        Ok(n) if n > 0 && matches!(rq.method, Method::Get | Method::Head) => {
            Some(Reply::text(400, format!("{} takes no request body\n", rq.method)).closing())
        }
        Ok(_) => None,
    }
}

/// Writes `reply` as the answer to `rq`, with the default headers, and closes the connection
/// afterwards if the reply says so.
///
/// # Errors
///
/// The connection failed while the reply was written (a client that hung up before a closing
/// reply was sent is no error).
pub fn respond(rq: Request, reply: Reply) -> io::Result<()> {
    if reply.close {
        write_closing(rq, reply)
    } else {
        rq.respond(response(reply))
    }
}

/// A tiny_http response for a reply that keeps the connection open.
fn response(reply: Reply) -> Response<Box<dyn Read + Send>> {
    let headers: Vec<Header> = reply
        .headers
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .chain(DEFAULT_HEADERS)
        .map(|(name, value)| header(name, value))
        .collect();
    let status = StatusCode(reply.status);
    match reply.body {
        Body::Text(s) => {
            let len = s.len();
            Response::new(
                status,
                headers,
                Box::new(Cursor::new(s.into_bytes())),
                Some(len),
                None,
            )
        }
        // No length: tiny_http sends it chunked, reading the body as it goes.
        Body::Stream(r) => Response::new(status, headers, r, None, None),
    }
}

fn header(name: &str, value: &str) -> Header {
    // Names and values are this crate's constants, numbers and content types: ASCII.
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("response headers are ASCII")
}

/// Writes a reply with `Connection: close` by hand, on the raw writer of the request:
/// tiny_http 0.12 refuses a `Connection` header in a [`Response`] and keeps reading the
/// connection after any response (tiny-http issue #244), so a refused request's unread body
/// would be parsed as the next request. See `tiny_http_quirks` for the rest of that defence;
/// `hostile::a_request_smuggled_in_a_body_is_never_served` pins it.
fn write_closing(rq: Request, reply: Reply) -> io::Result<()> {
    let head = *rq.method() == Method::Head;
    let status = reply.status;
    let headers = reply.headers.clone();
    // Closing replies are short texts (refusals, 404/405).
    let body = reply.into_bytes()?;
    let mut out = Vec::with_capacity(256 + body.len());
    write!(
        out,
        "HTTP/1.1 {status} {}\r\n",
        StatusCode(status).default_reason_phrase()
    )?;
    let own = headers.iter().map(|(name, value)| (*name, value.as_str()));
    for (name, value) in own.chain(DEFAULT_HEADERS) {
        write!(out, "{name}: {value}\r\n")?;
    }
    write!(
        out,
        "Date: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT"),
        body.len()
    )?;
    if !head {
        out.extend_from_slice(&body);
    }
    let mut w = rq.into_writer();
    match w.write_all(&out).and_then(|()| w.flush()) {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ) =>
        {
            Ok(())
        }
        other => other,
    }
}
