//! A local HTTP receiver that records requests (stands in for Slack, PagerDuty, webhooks).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;

#[derive(Debug, Clone)]
pub struct Hit {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Hit {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

#[derive(Clone)]
struct St {
    hits: Arc<Mutex<Vec<Hit>>>,
    fail_left: Arc<AtomicUsize>,
    fail_status: u16,
}

pub struct LocalReceiver {
    pub addr: SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl LocalReceiver {
    /// Answers `fail_status` to the first `fail_first` requests, then 202.
    pub async fn start(fail_first: usize, fail_status: u16) -> LocalReceiver {
        let st = St {
            hits: Arc::default(),
            fail_left: Arc::new(AtomicUsize::new(fail_first)),
            fail_status,
        };
        let hits = st.hits.clone();
        let app = axum::Router::new().fallback(record).with_state(st);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        LocalReceiver { addr, hits }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Successful deliveries (requests answered 202).
    pub fn hits(&self, path: &str) -> Vec<Hit> {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.path == path)
            .cloned()
            .collect()
    }
}

async fn record(
    State(st): State<St>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let failing = st
        .fail_left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        let mut h = HeaderMap::new();
        if st.fail_status == 429 {
            h.insert("retry-after", "30".parse().unwrap());
        }
        return (StatusCode::from_u16(st.fail_status).unwrap(), h).into_response();
    }
    st.hits.lock().unwrap().push(Hit {
        path: uri.path().to_string(),
        headers,
        body: body.to_vec(),
    });
    StatusCode::ACCEPTED.into_response()
}
