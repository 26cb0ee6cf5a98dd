//! The provider gateway: the CRM calls `/_provider/<name>/...` and Vigil forwards to the
//! provider over TLS, classifying each outcome.
//!
//! - [`classify`]: (status, headers, body) or a transport failure to a [`GatewayOutcome`].

pub mod classify;

pub use classify::{
    GatewayClass, GatewayOutcome, TransportFailure, classify_failure, classify_response,
};
