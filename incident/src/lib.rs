//! Placeholder; filled by the incident work.
