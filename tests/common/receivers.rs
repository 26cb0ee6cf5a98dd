//! Local notification receivers for black-box tests: one HTTP server standing in for a Slack
//! incoming webhook (`/slack`), the PagerDuty Events v2 endpoint (`/pd`) and a generic signed
//! webhook (`/hook`). Every request is recorded when it arrives and marked answered once the
//! receiver has replied 202; one request can be held unanswered (to kill the sender while it
//! is in flight).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};

/// One request as received.
#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// The receiver replied (202); false for a request still held or cut off by the sender.
    pub answered: bool,
}

impl Request {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    /// What the request announces, one key per page: PagerDuty `dedup_key/event_action`, the
    /// webhook's `Idempotency-Key`, and for Slack (no key on the wire) `incident/EVENT` for
    /// every incident line of the (possibly coalesced) message.
    pub fn page_keys(&self) -> Vec<String> {
        match self.path.as_str() {
            "/pd" => {
                let v = self.json();
                vec![format!(
                    "{}/{}",
                    v["dedup_key"].as_str().unwrap_or_default(),
                    v["event_action"].as_str().unwrap_or_default()
                )]
            }
            "/hook" => vec![self.header("idempotency-key").unwrap_or_default()],
            "/slack" => {
                let v = self.json();
                let text = v["text"].as_str().unwrap_or_default();
                text.lines()
                    .filter_map(|l| {
                        let event = l.strip_prefix('[')?.split(']').next()?;
                        let id = l.rsplit_once(", incident ")?.1.strip_suffix(')')?;
                        Some(format!("{id}/{event}"))
                    })
                    .collect()
            }
            _ => Vec::new(),
        }
    }
}

#[derive(Clone, Default)]
struct St {
    requests: Arc<Mutex<Vec<Request>>>,
    /// Hold the request with this path and 1-based index on that path unanswered.
    hold: Arc<Mutex<Option<(String, usize)>>>,
    holding: Arc<AtomicBool>,
}

/// See the module docs.
pub struct Receivers {
    pub addr: SocketAddr,
    st: St,
}

impl Receivers {
    pub async fn start() -> Receivers {
        let st = St::default();
        let app = axum::Router::new().fallback(record).with_state(st.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receivers { addr, st }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Never answer the `nth` (1-based) request to `path`.
    pub fn hold(&self, path: &str, nth: usize) {
        *self.st.hold.lock().unwrap() = Some((path.to_string(), nth));
    }

    /// A held request has arrived (and is still unanswered).
    pub fn holding(&self) -> bool {
        self.st.holding.load(Ordering::SeqCst)
    }

    pub fn requests(&self, path: &str) -> Vec<Request> {
        self.st
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    pub fn total(&self) -> usize {
        self.st.requests.lock().unwrap().len()
    }

    /// Pages per key among the answered requests to `path`.
    pub fn answered_pages(&self, path: &str) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for r in self.requests(path).iter().filter(|r| r.answered) {
            for k in r.page_keys() {
                *out.entry(k).or_default() += 1;
            }
        }
        out
    }

    /// Pages per key among every request to `path`, answered or not.
    pub fn received_pages(&self, path: &str) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for r in self.requests(path) {
            for k in r.page_keys() {
                *out.entry(k).or_default() += 1;
            }
        }
        out
    }
}

async fn record(State(st): State<St>, uri: Uri, headers: HeaderMap, body: Bytes) -> StatusCode {
    let path = uri.path().to_string();
    let (index, nth_on_path) = {
        let mut requests = st.requests.lock().unwrap();
        let nth = requests.iter().filter(|r| r.path == path).count() + 1;
        requests.push(Request {
            path: path.clone(),
            headers,
            body: body.to_vec(),
            answered: false,
        });
        (requests.len() - 1, nth)
    };
    let held = st
        .hold
        .lock()
        .unwrap()
        .as_ref()
        .is_some_and(|(p, n)| *p == path && *n == nth_on_path);
    if held {
        st.holding.store(true, Ordering::SeqCst);
        // Until the sender goes away (the connection closes and this future is dropped).
        std::future::pending::<()>().await;
    }
    st.requests.lock().unwrap()[index].answered = true;
    StatusCode::ACCEPTED
}
