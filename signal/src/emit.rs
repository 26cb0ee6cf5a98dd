//! The producer side: a cheap, cloneable [`Emitter`] that never blocks client traffic.
//!
//! `emit` does a `try_send` into a bounded queue; when the queue is full (the transport is slow or
//! down) the signal is dropped and counted. A transport task drains the queue (see `transport`).

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;

use crate::Signal;

/// Counters shared by every clone of one emitter.
#[derive(Debug, Default)]
pub struct EmitterStats {
    /// Signals accepted into the queue.
    pub queued: Counter,
    /// Signals dropped because the queue was full or the transport is gone.
    pub dropped: Counter,
}

/// A handle producers use to send signals. Cloning is cheap.
#[derive(Clone, Debug)]
pub struct Emitter {
    tx: Option<mpsc::Sender<Signal>>,
    stats: Arc<EmitterStats>,
}

impl Emitter {
    /// A bounded queue of `capacity` signals and its receiving end (for a transport task, the
    /// in-process incident service, or a test that wants to see what was emitted).
    pub fn channel(capacity: usize) -> (Emitter, mpsc::Receiver<Signal>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (
            Emitter {
                tx: Some(tx),
                stats: Arc::default(),
            },
            rx,
        )
    }

    /// An emitter that drops everything (signals switched off).
    pub fn disabled() -> Emitter {
        Emitter {
            tx: None,
            stats: Arc::default(),
        }
    }

    /// Queue a signal without waiting; drops and counts it when the queue is full.
    pub fn emit(&self, signal: Signal) {
        let Some(tx) = &self.tx else {
            return;
        };
        match tx.try_send(signal) {
            Ok(()) => {
                self.stats.queued.inc();
            }
            Err(_) => {
                self.stats.dropped.inc();
            }
        }
    }

    /// Whether emitting does anything (lets producers skip building a signal).
    pub fn is_enabled(&self) -> bool {
        self.tx.is_some()
    }

    pub fn stats(&self) -> &Arc<EmitterStats> {
        &self.stats
    }

    /// Register `vigil_signals_queued_total` and `vigil_signals_dropped_total`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "vigil_signals_queued",
            "Signals accepted into the producer queue",
            self.stats.queued.clone(),
        );
        registry.register(
            "vigil_signals_dropped",
            "Signals dropped because the producer queue was full (transport slow or down)",
            self.stats.dropped.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Channel, Outcome, Source};

    fn sig() -> Signal {
        Signal::new(Source::App, Channel::Automation, Outcome::Failed)
    }

    #[tokio::test]
    async fn full_queue_drops_and_counts_instead_of_blocking() {
        let (em, mut rx) = Emitter::channel(2);
        for _ in 0..5 {
            em.emit(sig());
        }
        assert_eq!(em.stats().queued.get(), 2);
        assert_eq!(em.stats().dropped.get(), 3);
        assert!(rx.recv().await.is_some());
        em.emit(sig());
        assert_eq!(em.stats().queued.get(), 3);
    }

    #[test]
    fn disabled_emitter_is_silent() {
        let em = Emitter::disabled();
        assert!(!em.is_enabled());
        em.emit(sig());
        assert_eq!(em.stats().dropped.get(), 0);
    }
}
