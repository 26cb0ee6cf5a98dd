//! Wiring of the signal transport chosen by `[signals]`: the producer side (an [`Emitter`] and its
//! pump) for the proxies, and the Redis Streams consumer for an incident service in this process.

use std::sync::Arc;

use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;
use vigil_signal::Emitter;
use vigil_signal::transport::redis_streams::ConsumerMetrics;
use vigil_signal::transport::{
    PumpConfig, PumpMetrics, RedisConsumer, RedisConsumerConfig, RedisSink, SignalHandler, Sink,
    TransportError, http::HttpSink, spawn_pump,
};

use crate::config::{SignalTransport, SignalsConfig};

/// The producer side: clone `emitter` into every producer; `pump` ends once every clone is
/// dropped and the queue is flushed.
pub struct Producer {
    pub emitter: Emitter,
    pub pump: Option<JoinHandle<()>>,
}

/// Build the producer side. `local` is the in-process incident service, when this process runs one.
pub fn producer(
    cfg: &SignalsConfig,
    local: Option<Arc<dyn SignalHandler>>,
    registry: &mut Registry,
) -> Result<Producer, TransportError> {
    let sink = match cfg.transport {
        SignalTransport::Local => match local {
            Some(handler) => Sink::Local(handler),
            None => {
                tracing::warn!(
                    "[signals] transport = \"local\" but this process runs no [incident]: signals are off"
                );
                let emitter = Emitter::disabled();
                emitter.register(registry);
                return Ok(Producer {
                    emitter,
                    pump: None,
                });
            }
        },
        SignalTransport::Redis => Sink::Redis(RedisSink::new(
            cfg.url.as_deref().unwrap_or_default(),
            &cfg.stream,
            cfg.max_len,
        )?),
        SignalTransport::Http => Sink::Http(HttpSink::new(
            cfg.url.as_deref().unwrap_or_default(),
            cfg.token.clone(),
        )?),
    };
    let (emitter, rx) = Emitter::channel(cfg.queue);
    emitter.register(registry);
    let metrics = PumpMetrics::default();
    metrics.register(registry);
    let pump = spawn_pump(rx, sink, PumpConfig::default(), metrics);
    Ok(Producer {
        emitter,
        pump: Some(pump),
    })
}

/// The Redis Streams consumer feeding `handler`, when the transport is `redis`.
pub fn consumer(
    cfg: &SignalsConfig,
    handler: Arc<dyn SignalHandler>,
    registry: &mut Registry,
) -> Option<RedisConsumer> {
    if cfg.transport != SignalTransport::Redis {
        return None;
    }
    let metrics = ConsumerMetrics::default();
    metrics.register(registry);
    let config = RedisConsumerConfig::new(
        cfg.url.as_deref().unwrap_or_default(),
        &cfg.stream,
        &cfg.group,
        &cfg.consumer_name(),
    );
    Some(RedisConsumer::new(config, handler, metrics))
}
