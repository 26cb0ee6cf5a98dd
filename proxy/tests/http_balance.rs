//! Upstream balancing across two CRM instances where one is slow: `least_requests` sends most
//! requests to the fast one, `round_robin` alternates regardless of load.

mod http_support;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use vigil_proxy::http::HttpConfig;
use vigil_proxy::http::config::Balance;

use http_support::Proxy;

/// An upstream answering every request after `delay`, naming itself in `x-upstream`.
async fn backend(name: &'static str, delay: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let svc = service_fn(move |_req| async move {
                tokio::time::sleep(delay).await;
                Ok::<_, Infallible>(
                    Response::builder()
                        .header("x-upstream", name)
                        .body(Full::new(Bytes::from_static(b"{}")))
                        .unwrap(),
                )
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// Sends `total` GETs, `concurrency` at a time, and counts which instance served each.
async fn spread(balance: Balance, total: usize, concurrency: usize) -> HashMap<String, usize> {
    let slow = backend("slow", Duration::from_millis(250)).await;
    let fast = backend("fast", Duration::ZERO).await;
    let cfg = HttpConfig {
        upstream: vec![format!("http://{slow}"), format!("http://{fast}")],
        balance,
        signal_window_secs: 3600,
        ..HttpConfig::default()
    };
    let proxy = Proxy::start(cfg).await;
    let client = reqwest::Client::new();
    let mut counts = HashMap::new();
    let mut next = 0;
    while next < total {
        let batch = concurrency.min(total - next);
        let mut set = tokio::task::JoinSet::new();
        for i in next..next + batch {
            let (c, url) = (client.clone(), proxy.url(&format!("/contacts/{i}")));
            set.spawn(async move {
                // Staggered so that earlier requests are in flight when later ones are picked.
                tokio::time::sleep(Duration::from_millis(5 * (i % concurrency) as u64)).await;
                let r = c.get(url).send().await.unwrap();
                assert_eq!(r.status(), 200);
                r.headers()["x-upstream"].to_str().unwrap().to_string()
            });
        }
        while let Some(who) = set.join_next().await {
            *counts.entry(who.unwrap()).or_insert(0) += 1;
        }
        next += batch;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_requests_avoids_the_slow_instance() {
    let counts = spread(Balance::LeastRequests, 48, 8).await;
    let slow = counts.get("slow").copied().unwrap_or(0);
    let fast = counts.get("fast").copied().unwrap_or(0);
    assert_eq!(slow + fast, 48);
    // Each batch: the first request may land on the idle slow instance, then it is busy for
    // 250 ms and every later request of the batch goes to the fast one.
    assert!(
        slow <= 12,
        "least_requests sent {slow} of 48 to the slow instance: {counts:?}"
    );
    assert!(
        slow >= 1,
        "the slow instance is not ejected, only less loaded: {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_ignores_load() {
    let counts = spread(Balance::RoundRobin, 24, 8).await;
    let slow = counts.get("slow").copied().unwrap_or(0);
    assert!(
        (10..=14).contains(&slow),
        "round_robin alternates: {counts:?}"
    );
}

#[test]
fn balance_is_configurable() {
    let c: HttpConfig =
        toml::from_str("upstream = [\"http://127.0.0.1:1\"]\nbalance = \"least_requests\"\n")
            .unwrap();
    assert_eq!(c.balance, Balance::LeastRequests);
    assert_eq!(HttpConfig::default().balance, Balance::RoundRobin);
    assert!(toml::from_str::<HttpConfig>("balance = \"random\"\n").is_err());
}
