//! Placeholder; filled by the analyzer work.
