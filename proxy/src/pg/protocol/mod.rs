//! PostgreSQL wire protocol 3.0 codec, both directions.
//!
//! - [`decoder`]: incremental framing (startup packets and tagged messages), size limit.
//! - [`buf`]: byte writer/reader helpers shared by the message families.
//! - [`startup`]: StartupMessage, SSLRequest, GSSENCRequest, CancelRequest, NegotiateProtocolVersion.
//! - [`auth`]: Authentication* (backend) and password/SASL messages (frontend).
//! - [`simple`]: Query, RowDescription, DataRow, CommandComplete, EmptyQueryResponse, ReadyForQuery.
//! - [`extended`]: Parse/Bind/Describe/Execute/Close/Sync/Flush and their completions.
//! - [`copy`]: CopyData/CopyDone/CopyFail and Copy{In,Out}Response.
//! - [`status`]: ErrorResponse/NoticeResponse, ParameterStatus, BackendKeyData, NotificationResponse.
//!
//! Messages are forwarded as raw frames ([`RawMessage`]); only the ones the proxy must look at are
//! decoded, and only the ones it rewrites or synthesizes are encoded.

pub mod auth;
pub mod buf;
pub mod copy;
pub mod decoder;
pub mod extended;
pub mod simple;
pub mod startup;
pub mod status;

pub use decoder::{Decoder, Msg, Next, RawMessage};

/// A malformed or oversized message.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("message of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("invalid message length {0}")]
    BadLength(i64),
    #[error("malformed {what} message")]
    Malformed { what: &'static str },
    #[error("unexpected message type '{}'", char::from(*.0))]
    Unexpected(u8),
}

impl ProtocolError {
    pub(crate) fn malformed(what: &'static str) -> ProtocolError {
        ProtocolError::Malformed { what }
    }
}
