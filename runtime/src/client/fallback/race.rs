//! Happy eyeballs between QUIC and TCP, as a function of two connection attempts.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use crate::Error;

/// How a race between QUIC and TCP was won.
#[derive(Debug)]
pub(super) enum Raced<Q, T> {
    /// QUIC connected first, or TCP failed and QUIC connected after all.
    Quic(Q),
    /// QUIC failed, then TCP connected.
    TcpAfterQuicFailed(T, Error),
    /// TCP connected while QUIC was still trying, after its head start.
    TcpWhileQuicSlow(T),
}

/// Happy eyeballs: `quic` starts at once; `tcp` after `head_start`, or as soon as `quic`
/// fails. The first to connect wins, QUIC if both are ready together. Fails only when both
/// do, with both causes. A future not yet polled has not started, so `tcp` costs nothing when
/// QUIC wins its head start.
pub(super) async fn race<Q, T>(
    quic: impl Future<Output = Result<Q, Error>>,
    tcp: impl Future<Output = Result<T, Error>>,
    head_start: Duration,
) -> Result<Raced<Q, T>, Error> {
    let mut quic = pin!(quic);
    let quic_early = tokio::select! {
        result = &mut quic => Some(result),
        () = tokio::time::sleep(head_start) => None,
    };
    match quic_early {
        Some(Ok(conn)) => return Ok(Raced::Quic(conn)),
        Some(Err(quic_err)) => return tcp_after_quic_failed(quic_err, tcp).await,
        None => {}
    }
    let mut tcp = pin!(tcp);
    tokio::select! {
        biased;
        result = &mut quic => match result {
            Ok(conn) => Ok(Raced::Quic(conn)),
            Err(quic_err) => tcp_after_quic_failed(quic_err, tcp).await,
        },
        result = &mut tcp => match result {
            Ok(channel) => Ok(Raced::TcpWhileQuicSlow(channel)),
            Err(tcp_err) => match quic.await {
                Ok(conn) => Ok(Raced::Quic(conn)),
                Err(quic_err) => Err(both_failed(quic_err, tcp_err)),
            },
        },
    }
}

/// The end of a race whose QUIC attempt failed: TCP's attempt decides.
async fn tcp_after_quic_failed<Q, T>(
    quic_err: Error,
    tcp: impl Future<Output = Result<T, Error>>,
) -> Result<Raced<Q, T>, Error> {
    match tcp.await {
        Ok(channel) => Ok(Raced::TcpAfterQuicFailed(channel, quic_err)),
        Err(tcp_err) => Err(both_failed(quic_err, tcp_err)),
    }
}

fn both_failed(quic: Error, tcp: Error) -> Error {
    Error::BothFailed {
        quic: Box::new(quic),
        tcp: Box::new(tcp),
    }
}

#[cfg(test)]
mod tests {
    //! On paused time: each test runs in an instant and checks when things happened to the
    //! millisecond.

    use std::sync::atomic::{AtomicBool, Ordering};

    use tokio::time::Instant;

    use super::*;

    const HEAD_START: Duration = Duration::from_millis(250);

    /// An attempt that takes `after` and then succeeds with `value` or fails.
    async fn attempt<T>(after: Duration, outcome: Result<T, &str>) -> Result<T, Error> {
        tokio::time::sleep(after).await;
        outcome.map_err(Error::config)
    }

    /// An attempt that records whether it was ever started.
    async fn watched<T>(
        started: &AtomicBool,
        after: Duration,
        outcome: Result<T, &str>,
    ) -> Result<T, Error> {
        started.store(true, Ordering::SeqCst);
        attempt(after, outcome).await
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[tokio::test(start_paused = true)]
    async fn quic_within_its_head_start_wins_and_tcp_never_starts() {
        let tcp_started = AtomicBool::new(false);
        let start = Instant::now();
        let raced = race(
            attempt(ms(40), Ok("quic")),
            watched(&tcp_started, ms(1), Ok("tcp")),
            HEAD_START,
        )
        .await;
        assert!(matches!(raced, Ok(Raced::Quic("quic"))), "{raced:?}");
        assert_eq!(start.elapsed(), ms(40));
        assert!(!tcp_started.load(Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_quic_starts_tcp_at_once() {
        let start = Instant::now();
        let raced = race(
            attempt::<&str>(ms(10), Err("refused")),
            attempt(ms(30), Ok("tcp")),
            HEAD_START,
        )
        .await;
        match raced {
            Ok(Raced::TcpAfterQuicFailed("tcp", quic_err)) => {
                assert!(quic_err.to_string().contains("refused"), "{quic_err}");
            }
            other => panic!("{other:?}"),
        }
        // 10 ms for QUIC to fail, then 30 ms of TCP: no head start wasted.
        assert_eq!(start.elapsed(), ms(40));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_quic_loses_to_tcp_after_its_head_start() {
        let start = Instant::now();
        let raced = race(
            attempt(ms(10_000), Ok("quic")),
            attempt(ms(30), Ok("tcp")),
            HEAD_START,
        )
        .await;
        assert!(
            matches!(raced, Ok(Raced::TcpWhileQuicSlow("tcp"))),
            "{raced:?}"
        );
        assert_eq!(start.elapsed(), HEAD_START + ms(30));
    }

    #[tokio::test(start_paused = true)]
    async fn quic_after_its_head_start_still_wins_if_first() {
        let start = Instant::now();
        let raced = race(
            attempt(ms(300), Ok("quic")),
            attempt(ms(100), Ok("tcp")),
            HEAD_START,
        )
        .await;
        assert!(matches!(raced, Ok(Raced::Quic("quic"))), "{raced:?}");
        assert_eq!(start.elapsed(), ms(300));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_tcp_waits_for_a_slow_quic() {
        let start = Instant::now();
        let raced = race(
            attempt(ms(400), Ok("quic")),
            attempt::<&str>(ms(10), Err("reset")),
            HEAD_START,
        )
        .await;
        assert!(matches!(raced, Ok(Raced::Quic("quic"))), "{raced:?}");
        assert_eq!(start.elapsed(), ms(400));
    }

    #[tokio::test(start_paused = true)]
    async fn both_failing_keeps_both_causes() {
        for (quic_after, tcp_after) in [(ms(10), ms(10)), (ms(400), ms(10)), (ms(300), ms(100))] {
            let raced = race(
                attempt::<()>(quic_after, Err("udp blocked")),
                attempt::<()>(tcp_after, Err("tcp refused")),
                HEAD_START,
            )
            .await;
            match raced {
                Err(Error::BothFailed { quic, tcp }) => {
                    assert!(quic.to_string().contains("udp blocked"), "{quic}");
                    assert!(tcp.to_string().contains("tcp refused"), "{tcp}");
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
