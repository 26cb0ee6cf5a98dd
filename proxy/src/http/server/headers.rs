//! Header rewriting: hop-by-hop removal (RFC 9110 7.6.1, including headers named in
//! `Connection`), `X-Forwarded-*` (inbound values kept only from trusted peers) and `Via`.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers never forwarded (RFC 9110 7.6.1), besides the ones `Connection` names.
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes hop-by-hop headers and every header the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(&name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

/// Appends `Via: <version> vigil`.
pub fn add_via(headers: &mut HeaderMap, version: http::Version) {
    let v = match version {
        http::Version::HTTP_10 => "1.0 vigil",
        http::Version::HTTP_2 => "2.0 vigil",
        _ => "1.1 vigil",
    };
    headers.append(header::VIA, HeaderValue::from_static(v));
}

/// Sets `X-Forwarded-For/-Proto/-Host`. From an untrusted peer, inbound values are replaced.
pub fn add_forwarded(
    headers: &mut HeaderMap,
    peer: IpAddr,
    trusted: bool,
    tls: bool,
    host: Option<&str>,
) {
    let xff = HeaderName::from_static("x-forwarded-for");
    let xfp = HeaderName::from_static("x-forwarded-proto");
    let xfh = HeaderName::from_static("x-forwarded-host");
    let prior: Option<String> = if trusted {
        let parts: Vec<&str> = headers
            .get_all(&xff)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    } else {
        None
    };
    let value = match prior {
        Some(p) => format!("{p}, {peer}"),
        None => peer.to_string(),
    };
    headers.remove(&xff);
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(xff, v);
    }
    if !trusted || !headers.contains_key(&xfp) {
        let proto = if tls { "https" } else { "http" };
        headers.insert(xfp, HeaderValue::from_static(proto));
    }
    if !trusted || !headers.contains_key(&xfh) {
        headers.remove(&xfh);
        if let Some(v) = host.and_then(|h| HeaderValue::from_str(h).ok()) {
            headers.insert(xfh, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, X-Secret-Hop".parse().unwrap());
        h.insert("x-secret-hop", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("te", "trailers".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn forwarded_headers_trust() {
        let peer: IpAddr = "10.1.2.3".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "1.1.1.1".parse().unwrap());
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        add_forwarded(&mut h, peer, false, false, Some("crm.local"));
        assert_eq!(h["x-forwarded-for"], "10.1.2.3");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "crm.local");
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "1.1.1.1".parse().unwrap());
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        add_forwarded(&mut h, peer, true, true, Some("crm.local"));
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 10.1.2.3");
        assert_eq!(h["x-forwarded-proto"], "https");
    }
}
