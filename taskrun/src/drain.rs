//! Drain before kill: a task that leaves the desired set (scale-down, new version, drained
//! node) first leaves the catalog — so DNS answers and lbconf's HAProxy backends stop sending it
//! new requests — then gets `--kill-drain-delay` to finish the ones in flight, and only then is
//! stopped (SIGTERM, grace, SIGKILL; or `docker stop`). This is what lets a rolling upgrade
//! behind HAProxy lose no request. The order lives here, in one function both drivers use.

use std::future::Future;
use std::time::Duration;

/// Default `--kill-drain-delay`.
pub const DEFAULT_DELAY: Duration = Duration::from_secs(1);

/// Runs `deregister` to completion, then waits `delay` — cut short when `ended` resolves (the
/// task stopped by itself meanwhile: its result is returned and there is nothing left to stop).
/// `None`: the delay elapsed and the caller stops the task now. A zero delay does nothing.
pub async fn drain<T>(
    delay: Duration,
    deregister: impl Future<Output = ()>,
    ended: impl Future<Output = T>,
) -> Option<T> {
    if delay.is_zero() {
        return None;
    }
    deregister.await;
    tokio::select! {
        t = ended => Some(t),
        _ = tokio::time::sleep(delay) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::time::Instant;

    type Log = Arc<Mutex<Vec<(&'static str, Duration)>>>;

    fn note(log: &Log, start: Instant, what: &'static str) {
        log.lock().unwrap().push((what, start.elapsed()));
    }

    /// The kill sequence of a driver, with the steps recorded: what `agent` does.
    async fn kill_sequence(log: Log, delay: Duration, ends_after: Option<Duration>) -> bool {
        let start = Instant::now();
        let deregister = {
            let log = log.clone();
            async move {
                // The catalog takes a moment to answer.
                tokio::time::sleep(Duration::from_millis(50)).await;
                note(&log, start, "deregistered");
            }
        };
        let ended = async move {
            match ends_after {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending::<()>().await,
            }
        };
        let early = drain(delay, deregister, ended).await;
        if early.is_none() {
            note(&log, start, "stopped");
        }
        early.is_some()
    }

    #[tokio::test(start_paused = true)]
    async fn deregisters_then_waits_the_delay_then_stops() {
        let log = Log::default();
        let ended_early = kill_sequence(log.clone(), Duration::from_secs(1), None).await;
        assert!(!ended_early);
        let steps = log.lock().unwrap().clone();
        assert_eq!(
            steps,
            [
                ("deregistered", Duration::from_millis(50)),
                ("stopped", Duration::from_millis(1050)),
            ],
            "the stop comes a whole delay after the deregistration"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_ends_during_the_drain_is_not_stopped() {
        let log = Log::default();
        let ended_early = kill_sequence(
            log.clone(),
            Duration::from_secs(5),
            Some(Duration::from_secs(2)),
        )
        .await;
        assert!(ended_early);
        let steps = log.lock().unwrap().clone();
        assert_eq!(steps, [("deregistered", Duration::from_millis(50))]);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_disables_the_drain() {
        let log = Log::default();
        let start = Instant::now();
        assert!(!kill_sequence(log.clone(), Duration::ZERO, None).await);
        let steps = log.lock().unwrap().clone();
        assert_eq!(
            steps,
            [("stopped", Duration::ZERO)],
            "no deregistration wait"
        );
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
