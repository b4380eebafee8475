//! TLS client configuration for the connections the collector opens: pprof scrapes and
//! webhooks over `https://`.
