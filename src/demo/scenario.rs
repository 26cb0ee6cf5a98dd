//! The demo's failure scenarios and the faults they inject.

use vigil_democrm::{Mode, ProviderKind, Simulators};
use vigil_incident::model::Layer;
use vigil_testkit::PgServer;

/// One scenario of `vigil demo --scenario`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Scenario {
    /// SendGrid rejects mail from our blocked sending IP.
    BounceStorm,
    /// A carrier stops delivering SMS.
    SmsOutage,
    /// Stripe's API answers 5xx.
    #[value(name = "payment-5xx")]
    Payment5xx,
    /// Repeated locks on the payments table make the CRM's queries slow.
    SlowDb,
}

impl Scenario {
    pub const ALL: [Scenario; 4] = [
        Scenario::BounceStorm,
        Scenario::SmsOutage,
        Scenario::Payment5xx,
        Scenario::SlowDb,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::BounceStorm => "bounce-storm",
            Scenario::SmsOutage => "sms-outage",
            Scenario::Payment5xx => "payment-5xx",
            Scenario::SlowDb => "slow-db",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Scenario::BounceStorm => {
                "SendGrid starts blocking mail from our sending IP (bounce type `blocked`, 5.7.1)"
            }
            Scenario::SmsOutage => "a carrier outage: most SMS end `undelivered` (30008/30003)",
            Scenario::Payment5xx => "Stripe's API answers 500/503 to the CRM's charges",
            Scenario::SlowDb => {
                "repeated exclusive locks on `payments` stall the CRM's payment queries and automations"
            }
        }
    }

    /// The layer the incident service should name.
    pub fn expected_layer(self) -> Layer {
        match self {
            Scenario::BounceStorm => Layer::Integration,
            Scenario::SmsOutage | Scenario::Payment5xx => Layer::Provider,
            Scenario::SlowDb => Layer::Database,
        }
    }

    /// Start the fault.
    pub async fn inject(self, sims: &Simulators, pg: &PgServer) -> anyhow::Result<Fault> {
        Ok(match self {
            Scenario::BounceStorm => {
                sims.set_mode(Mode::BlockedIp {
                    sender_domain: None,
                });
                Fault::Mode
            }
            Scenario::SmsOutage => {
                sims.set_mode(Mode::CarrierOutage);
                Fault::Mode
            }
            Scenario::Payment5xx => {
                sims.set_mode(Mode::Provider5xx {
                    provider: Some(ProviderKind::Stripe),
                });
                Fault::Mode
            }
            Scenario::SlowDb => {
                // A direct connection (not through Vigil, like a cron job would) takes an
                // exclusive lock on `payments` for two seconds at a time, again and again: the
                // CRM's payment statements queue behind it and complete slowly.
                let (client, conn) =
                    tokio_postgres::connect(&pg.url("crm"), tokio_postgres::NoTls).await?;
                let conn = tokio::spawn(conn);
                let stop = tokio_util::sync::CancellationToken::new();
                let locker = tokio::spawn({
                    let stop = stop.clone();
                    async move {
                        while !stop.is_cancelled() {
                            let r = client
                                .batch_execute(
                                    "BEGIN; LOCK TABLE payments IN ACCESS EXCLUSIVE MODE; \
                                     SELECT pg_sleep(2); COMMIT",
                                )
                                .await;
                            if r.is_err() {
                                break;
                            }
                            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                        }
                    }
                });
                Fault::Lock(stop, locker, conn)
            }
        })
    }
}

/// An injected fault, cleared by [`Fault::clear`].
pub enum Fault {
    Mode,
    Lock(
        tokio_util::sync::CancellationToken,
        tokio::task::JoinHandle<()>,
        tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
    ),
}

impl Fault {
    pub async fn clear(self, sims: &Simulators) {
        match self {
            Fault::Mode => sims.set_mode(Mode::Normal),
            Fault::Lock(stop, locker, conn) => {
                stop.cancel();
                let _ = locker.await;
                let _ = conn.await;
            }
        }
    }
}
