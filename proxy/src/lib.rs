//! Placeholder; filled by the proxy work.
