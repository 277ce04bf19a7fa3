//! The metrics endpoint (`--metrics-listen`): `GET /metrics` over HTTP/1.x
//! (RFC 9112), answered from the reactor itself. The listener and each
//! scrape connection are slab entries like the FTP ones: no thread, no
//! async runtime, nothing that blocks the loop.
//!
//! One request per connection (`Connection: close`): read the request head
//! (at most `MAX_HEAD_BYTES`, parsed by `httparse`), render the metrics
//! into the connection's own buffer (at most `RENDER_MAX_BYTES` of body),
//! write it as the socket takes it, close. A scraper has `--login-timeout`
//! from its connection to the end of its response, and at most
//! `MAX_SCRAPES` scrapers are served at once by a reactor.
//!
//! It never touches an FTP session.
//!
//! # Invariants
//! - `open` is the number of `Entry::Scrape` in the slab, at most
//!   `MAX_SCRAPES`.
//! - A scrape holds at most `MAX_HEAD_BYTES` + one read of request, and
//!   once answered, one response (≤ `RENDER_MAX_BYTES` + its head), never
//!   both: the request head is freed when the response is made.
//! - Every scrape entry has a deadline in the wheel.

use super::*;
use crate::metrics::RENDER_MAX_BYTES;

/// Scrape connections served at once by one reactor. Past it, a new
/// scraper takes the place of the oldest one still sending its request
/// (closed without an answer; counted as `limit="metrics_scrapes"`), and
/// only when all of them are being answered is it refused `503`.
/// Prometheus scrapes each target from one connection at a time; an HA
/// pair of servers and a person with curl fit well.
pub const MAX_SCRAPES: usize = 8;
/// The longest request head (request line and headers) read: past it,
/// `431` (RFC 6585 §5). A scraper's head is ~200 bytes.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Headers parsed; more is `431` too.
const MAX_HEADERS: usize = 32;
/// The refusal at `MAX_SCRAPES`.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 20\r\nConnection: close\r\nRetry-After: 1\r\n\r\nToo many scrapers.\r\n";
/// The exposition format's media type (text format 0.0.4).
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The metrics listener's state: where it is, and how many scrapes run.
pub(super) struct Scrapes {
    /// The listener's slab key; `None` without `--metrics-listen` or once
    /// shutdown closed it.
    pub(super) listener_key: Option<usize>,
    /// The address it is bound to (port 0 resolved).
    pub(super) addr: Option<SocketAddr>,
    /// Scrape connections open.
    pub(super) open: usize,
    /// Their slab keys, oldest first (at most `MAX_SCRAPES`): at the bound
    /// a new scraper takes the place of the oldest one still sending its
    /// request, so silent connections cannot lock Prometheus out.
    pub(super) order: std::collections::VecDeque<usize>,
}

/// One scrape connection.
pub struct Scrape {
    pub(super) tcp: TcpStream,
    /// The request head so far (until answered).
    head: Vec<u8>,
    /// The whole response once made; `sent` bytes of it are written.
    out: Vec<u8>,
    sent: usize,
    /// Its deadline: `--login-timeout` after the connection.
    pub(super) timer: Option<crate::timer::TimerId>,
}

impl Scrapes {
    pub(super) fn none() -> Scrapes {
        Scrapes { listener_key: None, addr: None, open: 0, order: std::collections::VecDeque::new() }
    }
}

impl Server {
    /// Put the metrics listener in the slab: `bound` (bound before the
    /// sandbox), or else `--metrics-listen` bound now.
    pub(super) fn bind_metrics(poll: &Poll, slab: &mut Slab<Entry>, bound: Option<std::net::TcpListener>, addr: Option<SocketAddr>) -> Result<Scrapes, StartError> {
        let l = match (bound, addr) {
            (Some(l), _) => l,
            (None, Some(addr)) => std::net::TcpListener::bind(addr).map_err(|e| StartError(format!("cannot listen on {addr} (--metrics-listen): {e}")))?,
            (None, None) => return Ok(Scrapes::none()),
        };
        let _ = l.set_nonblocking(true);
        let mut l = TcpListener::from_std(l);
        let bound = l.local_addr().map_err(|e| StartError(e.to_string()))?;
        let key = slab.vacant_key();
        poll.registry()
            .register(&mut l, Token(key), Interest::READABLE)
            .map_err(|e| StartError(format!("cannot register listener: {e}")))?;
        slab.insert(Entry::MetricsListener(l));
        Ok(Scrapes { listener_key: Some(key), addr: Some(bound), open: 0, order: std::collections::VecDeque::with_capacity(MAX_SCRAPES) })
    }

    pub(super) fn accept_scrape(&mut self, key: usize) {
        if self.life.shutting_down {
            return;
        }
        for _ in 0..ACCEPT_BUDGET {
            let accepted = match self.slab.get(key) {
                Some(Entry::MetricsListener(l)) => l.accept(),
                _ => return,
            };
            let (mut tcp, peer) = match accepted {
                Ok(x) => x,
                Err(e) if would_block(&e) => return,
                Err(e) if interrupted(&e) => continue,
                Err(e) => {
                    // Out of descriptors: the FTP listener's backoff will
                    // show it; a scraper retries on its own.
                    debug!("metrics accept failed: {e}");
                    return;
                }
            };
            if self.scrapes.open >= MAX_SCRAPES {
                // The oldest scrape that has not finished its request
                // makes room (as the FTP side evicts the oldest connection
                // that has not logged in); if every one is being answered,
                // the newcomer gets 503.
                let oldest = self.scrapes.order.iter().copied().find(|&k| matches!(self.slab.get(k), Some(Entry::Scrape(s)) if s.out.is_empty()));
                self.env.metrics.refused(Limit::MetricsScrapes);
                match oldest {
                    Some(k) => {
                        debug!("metrics: {MAX_SCRAPES} scrapes at once; closed the oldest still sending its request for {peer}");
                        self.close_scrape(k);
                    }
                    None => {
                        debug!("metrics: refused {peer}: {MAX_SCRAPES} scrapes at once");
                        let _ = tcp.write(BUSY);
                        continue;
                    }
                }
            }
            let skey = self.slab.vacant_key();
            if let Err(e) = self.poll.registry().register(&mut tcp, Token(skey), Interest::READABLE | Interest::WRITABLE) {
                warn!("metrics: register {peer}: {e}");
                continue;
            }
            let timer = Some(self.wheel.schedule(self.now + self.env.config.login_timeout, skey));
            self.slab.insert(Entry::Scrape(Scrape { tcp, head: Vec::new(), out: Vec::new(), sent: 0, timer }));
            self.scrapes.open += 1;
            self.scrapes.order.push_back(skey);
        }
        self.wake_later(key);
    }

    pub(super) fn scrape_ready(&mut self, key: usize, readable: bool) {
        let Some(Entry::Scrape(s)) = self.slab.get_mut(key) else { return };
        if s.out.is_empty() && readable {
            match read_head(s) {
                Ok(Some(response)) => respond(s, response, &self.env.metrics),
                Ok(None) => return,
                Err(()) => {
                    self.close_scrape(key);
                    return;
                }
            }
        }
        let Some(Entry::Scrape(s)) = self.slab.get_mut(key) else { return };
        if s.out.is_empty() {
            return;
        }
        while s.sent < s.out.len() {
            match s.tcp.write(&s.out[s.sent..]) {
                Ok(0) => break,
                Ok(n) => s.sent += n,
                Err(e) if interrupted(&e) => {}
                Err(e) if would_block(&e) => return,
                Err(_) => break,
            }
        }
        // All of it written (close(2) sends it before the FIN), or the
        // peer is gone. Unread request bytes would make the close a RST,
        // which can destroy the response before it is read: drop what is
        // here (bounded).
        let mut sink = [0u8; 4096];
        for _ in 0..16 {
            match s.tcp.read(&mut sink) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
        self.close_scrape(key);
    }

    pub(super) fn close_scrape(&mut self, key: usize) {
        let Some(entry @ Entry::Scrape(_)) = self.slab.get_mut(key) else { return };
        let Entry::Scrape(s) = std::mem::replace(entry, Entry::Closed) else { return };
        if let Some(id) = s.timer {
            self.wheel.cancel(id);
        }
        self.scrapes.open -= 1;
        self.scrapes.order.retain(|&k| k != key);
        self.closed.push(key);
    }

    /// Shutdown: no more scrapes; those in flight are cut.
    pub(super) fn close_metrics(&mut self) {
        if let Some(l) = self.scrapes.listener_key.take() {
            self.close_entry(l);
        }
        while let Some(&k) = self.scrapes.order.front() {
            self.close_scrape(k);
        }
    }
}

/// What to answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Response {
    /// `200`: the metrics (`head_only` for HEAD).
    Metrics { head_only: bool },
    /// An error status and its reason phrase.
    Error(u16, &'static str),
}

/// Read what the socket holds into the head, and parse it: `Some` once
/// there is something to answer, `None` to wait for more, `Err` when the
/// scraper left before its request ended.
fn read_head(s: &mut Scrape) -> Result<Option<Response>, ()> {
    let mut buf = [0u8; 2048];
    loop {
        match s.tcp.read(&mut buf) {
            Ok(0) => return Err(()),
            Ok(n) => {
                s.head.extend_from_slice(&buf[..n]);
                if let Some(r) = parse(&s.head) {
                    return Ok(Some(r));
                }
            }
            Err(e) if interrupted(&e) => {}
            Err(e) if would_block(&e) => return Ok(None),
            Err(_) => return Err(()),
        }
    }
}

/// The answer to a request head, or `None` while it is incomplete and
/// within its bound.
fn parse(head: &[u8]) -> Option<Response> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let bounded = &head[..head.len().min(MAX_HEAD_BYTES)];
    let response = match req.parse(bounded) {
        Ok(httparse::Status::Partial) if head.len() >= MAX_HEAD_BYTES => {
            Response::Error(431, "Request Header Fields Too Large")
        }
        Ok(httparse::Status::Partial) => return None,
        Err(httparse::Error::TooManyHeaders) => Response::Error(431, "Request Header Fields Too Large"),
        Err(_) => Response::Error(400, "Bad Request"),
        Ok(httparse::Status::Complete(_)) => {
            let path = req.path.unwrap_or("");
            let path = path.split_once('?').map_or(path, |(p, _)| p);
            match (path, req.method.unwrap_or("")) {
                ("/metrics", "GET") => Response::Metrics { head_only: false },
                ("/metrics", "HEAD") => Response::Metrics { head_only: true },
                ("/metrics", _) => Response::Error(405, "Method Not Allowed"),
                _ => Response::Error(404, "Not Found"),
            }
        }
    };
    Some(response)
}

/// Make the whole response in the scrape's buffer (the request head is
/// freed: it is not needed any more).
fn respond(s: &mut Scrape, response: Response, metrics: &Metrics) {
    use std::io::Write as _;
    s.head = Vec::new();
    let mut body = Vec::new();
    let (status, reason, content_type, head_only) = match response {
        Response::Metrics { head_only } => {
            body.reserve(RENDER_MAX_BYTES / 2);
            metrics.render(&mut body);
            (200, "OK", CONTENT_TYPE, head_only)
        }
        Response::Error(status, reason) => {
            body.extend_from_slice(reason.as_bytes());
            body.extend_from_slice(b"\r\n");
            (status, reason, "text/plain; charset=utf-8", false)
        }
    };
    let mut out = Vec::with_capacity(160 + if head_only { 0 } else { body.len() });
    let _ = write!(out, "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    if status == 405 {
        out.extend_from_slice(b"Allow: GET, HEAD\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(&body);
    }
    s.out = out;
    s.sent = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_and_head_of_metrics_are_answered_the_rest_is_not() {
        let cases: &[(&[u8], Option<Response>)] = &[
            (b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", Some(Response::Metrics { head_only: false })),
            (b"GET /metrics?name[]=x HTTP/1.0\r\n\r\n", Some(Response::Metrics { head_only: false })),
            (b"HEAD /metrics HTTP/1.1\r\n\r\n", Some(Response::Metrics { head_only: true })),
            (b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", Some(Response::Error(405, "Method Not Allowed"))),
            (b"GET / HTTP/1.1\r\n\r\n", Some(Response::Error(404, "Not Found"))),
            (b"GET /metricsx HTTP/1.1\r\n\r\n", Some(Response::Error(404, "Not Found"))),
            (b"USER anonymous\r\n\r\n", Some(Response::Error(400, "Bad Request"))),
            (b"GET /metrics HTTP/1.1\r\nHost: x\r\n", None),
            (b"GET /metr", None),
            (b"", None),
        ];
        for (head, want) in cases {
            assert_eq!(parse(head), *want, "{:?}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn an_over_long_or_over_full_head_is_431() {
        let mut long = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        long.resize(MAX_HEAD_BYTES, b'a');
        assert_eq!(parse(&long), Some(Response::Error(431, "Request Header Fields Too Large")));
        long.truncate(MAX_HEAD_BYTES - 1);
        assert_eq!(parse(&long), None, "one byte under the bound still waits");
        let mut many = b"GET /metrics HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse(&many), Some(Response::Error(431, "Request Header Fields Too Large")));
    }
}
