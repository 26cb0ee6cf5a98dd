//! The HTTP proxy: reverse proxy, provider gateway, webhook taps. (Being built.)
