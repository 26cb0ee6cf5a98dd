//! The PostgreSQL wire-protocol proxy. (Being built.)
