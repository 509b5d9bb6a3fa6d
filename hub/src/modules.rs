//! Wiring of the SMS connector and the business modules (issue 8): the consumers `warning`,
//! `dispatch` and `sms` (the last only with `[sms] gateway_url`), and the warning module's
//! durable timers. Called by `app::Hub::start` next to the trail consumer.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use xfhub_connectors::sms::{SmsConnector, SMS_QUEUE};
use xfhub_modules::clock::{Clock, SystemClock};
use xfhub_modules::dispatch::{DispatchModule, DISPATCH_QUEUE};
use xfhub_modules::warning::{self, WarningModule, Words, WARNING_QUEUE};
use xfhub_routes::{Bus, Handler, RetryPolicy};
use xfhub_store::Store;

use crate::config::Config;

/// The queues of this module's consumers (for `app::CONSUMER_QUEUES`).
pub const QUEUES: &[&str] = &[WARNING_QUEUE, DISPATCH_QUEUE, SMS_QUEUE];

/// Starts the consumers and the timer sweeper; returns the word lists in force (the API
/// invalidates them after a change).
pub fn start(
    config: &Config,
    store: &Store,
    bus: &Arc<dyn Bus>,
    keys: &crate::keys::Keys,
    policy: &RetryPolicy,
    stop: &CancellationToken,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<Arc<Words>> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let words = Words::new(
        store.clone(),
        Duration::from_secs(config.warning.words_reload_secs),
    );
    let mut handlers: Vec<Arc<dyn Handler>> = vec![
        Arc::new(WarningModule::new(
            store.clone(),
            words.clone(),
            config.warning.clone(),
            clock.clone(),
        )),
        Arc::new(DispatchModule::new(store.clone(), config.dispatch.clone())),
    ];
    let ring_keys = keys.clone();
    let ring = Arc::new(move || ring_keys.current());
    match SmsConnector::from_config(store.clone(), ring, &config.sms)
        .map_err(|e| anyhow::anyhow!("sms: {e}"))?
    {
        Some(c) => handlers.push(Arc::new(c)),
        None => {
            tracing::info!("SmsConnectorDisabled: no [sms] gateway_url; texts wait in their queue")
        }
    }
    for handler in handlers {
        crate::app::spawn_consumer(tasks, bus, handler, config, policy, stop);
    }
    tasks.spawn(warning::run_timers(
        store.clone(),
        clock,
        config.warning.workorder_days,
        Duration::from_secs(config.warning.timer_interval_secs),
        stop.clone(),
    ));
    Ok(words)
}
