//! The producer-side pump: queue -> batches -> sink, with bounded retries.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::Sink;
use crate::Signal;

/// Batching and retry policy of a pump.
#[derive(Debug, Clone)]
pub struct PumpConfig {
    /// Largest batch sent at once.
    pub batch_max: usize,
    /// Attempts per batch before it is dropped (and counted).
    pub attempts: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl Default for PumpConfig {
    fn default() -> Self {
        PumpConfig {
            batch_max: 256,
            attempts: 8,
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_secs(5),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransportLabel {
    transport: &'static str,
}

/// `vigil_signals_sent_total{transport}`, `vigil_signal_send_errors_total{transport}` and
/// `vigil_signals_send_dropped_total{transport}`.
#[derive(Clone, Debug, Default)]
pub struct PumpMetrics {
    sent: Family<TransportLabel, Counter>,
    errors: Family<TransportLabel, Counter>,
    dropped: Family<TransportLabel, Counter>,
}

impl PumpMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "vigil_signals_sent",
            "Signals delivered to the transport",
            self.sent.clone(),
        );
        registry.register(
            "vigil_signal_send_errors",
            "Failed attempts to deliver a batch of signals (retried)",
            self.errors.clone(),
        );
        registry.register(
            "vigil_signals_send_dropped",
            "Signals dropped after every delivery attempt failed",
            self.dropped.clone(),
        );
    }

    /// Signals delivered through `transport` so far.
    pub fn sent(&self, transport: &'static str) -> u64 {
        self.sent.get_or_create(&TransportLabel { transport }).get()
    }

    /// Signals given up on for `transport` so far.
    pub fn dropped(&self, transport: &'static str) -> u64 {
        self.dropped
            .get_or_create(&TransportLabel { transport })
            .get()
    }
}

/// Drain `rx` into `sink` until every emitter is dropped (the queue is then flushed).
pub fn spawn_pump(
    mut rx: mpsc::Receiver<Signal>,
    sink: Sink,
    config: PumpConfig,
    metrics: PumpMetrics,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let label = TransportLabel {
            transport: sink.kind(),
        };
        let mut batch = Vec::with_capacity(config.batch_max);
        loop {
            batch.clear();
            if rx.recv_many(&mut batch, config.batch_max).await == 0 {
                return;
            }
            let mut backoff = config.backoff_initial;
            let mut attempt = 1;
            loop {
                match sink.send(&batch).await {
                    Ok(()) => {
                        metrics
                            .sent
                            .get_or_create(&label)
                            .inc_by(batch.len() as u64);
                        break;
                    }
                    Err(e) => {
                        metrics.errors.get_or_create(&label).inc();
                        if attempt >= config.attempts {
                            metrics
                                .dropped
                                .get_or_create(&label)
                                .inc_by(batch.len() as u64);
                            tracing::warn!(
                                transport = label.transport,
                                signals = batch.len(),
                                error = %e,
                                "dropping a batch of signals after {attempt} attempts"
                            );
                            break;
                        }
                        tracing::debug!(transport = label.transport, error = %e, "signal batch send failed; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(config.backoff_max);
                        attempt += 1;
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use futures::FutureExt;
    use futures::future::BoxFuture;

    use super::*;
    use crate::transport::{HandlerError, SignalHandler};
    use crate::{Channel, Emitter, Outcome, Source};

    #[derive(Default)]
    struct Flaky {
        failures_left: Mutex<u32>,
        got: Mutex<Vec<String>>,
    }

    impl SignalHandler for Flaky {
        fn handle<'a>(&'a self, batch: &'a [Signal]) -> BoxFuture<'a, Result<(), HandlerError>> {
            async move {
                let mut left = self.failures_left.lock().unwrap();
                if *left > 0 {
                    *left -= 1;
                    return Err("store down".into());
                }
                self.got
                    .lock()
                    .unwrap()
                    .extend(batch.iter().map(|s| s.id.clone()));
                Ok(())
            }
            .boxed()
        }
    }

    fn cfg(attempts: u32) -> PumpConfig {
        PumpConfig {
            batch_max: 10,
            attempts,
            backoff_initial: Duration::from_millis(1),
            backoff_max: Duration::from_millis(2),
        }
    }

    #[tokio::test]
    async fn retries_then_delivers_everything_and_flushes_on_close() {
        let handler = Arc::new(Flaky {
            failures_left: Mutex::new(3),
            ..Default::default()
        });
        let (em, rx) = Emitter::channel(100);
        let metrics = PumpMetrics::default();
        let pump = spawn_pump(rx, Sink::Local(handler.clone()), cfg(5), metrics.clone());
        for i in 0..25 {
            em.emit(
                Signal::new(Source::App, Channel::Automation, Outcome::Failed)
                    .with_id(format!("s{i}")),
            );
        }
        drop(em);
        pump.await.unwrap();
        let got = handler.got.lock().unwrap().clone();
        assert_eq!(got.len(), 25);
        assert_eq!(got[0], "s0");
        assert_eq!(metrics.sent("local"), 25);
        assert_eq!(metrics.dropped("local"), 0);
    }

    #[tokio::test]
    async fn gives_up_on_a_batch_after_the_configured_attempts() {
        let handler = Arc::new(Flaky {
            failures_left: Mutex::new(2),
            ..Default::default()
        });
        let (em, rx) = Emitter::channel(100);
        let metrics = PumpMetrics::default();
        let pump = spawn_pump(rx, Sink::Local(handler.clone()), cfg(2), metrics.clone());
        em.emit(Signal::new(
            Source::App,
            Channel::Automation,
            Outcome::Failed,
        ));
        // Let the first batch fail twice and be dropped before the next one is queued.
        while metrics.dropped("local") == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        em.emit(Signal::new(Source::App, Channel::Automation, Outcome::Failed).with_id("later"));
        drop(em);
        pump.await.unwrap();
        assert_eq!(metrics.dropped("local"), 1);
        assert_eq!(*handler.got.lock().unwrap(), vec!["later".to_string()]);
    }
}
