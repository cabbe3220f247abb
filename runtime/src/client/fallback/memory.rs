//! The process-wide memory of servers reached only over TCP.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use tokio::time::Instant;

use crate::sync::lock;

/// Servers recently reached only over TCP, by authority, until when: shared by every channel
/// in the process, so a new channel to such a server goes straight to TCP.
static TCP_ONLY_UNTIL: LazyLock<Mutex<HashMap<String, Instant>>> = LazyLock::new(Default::default);

/// Whether `authority` was reached only over TCP recently enough to skip QUIC.
pub(super) fn remembered_tcp(authority: &str) -> bool {
    let mut remembered = lock(&TCP_ONLY_UNTIL);
    match remembered.get(authority) {
        Some(until) if Instant::now() < *until => true,
        Some(_) => {
            remembered.remove(authority);
            false
        }
        None => false,
    }
}

pub(super) fn remember_tcp(authority: &str, until: Instant) {
    let mut remembered = lock(&TCP_ONLY_UNTIL);
    // Entries that have run out go, so the map holds only servers remembered now.
    let now = Instant::now();
    remembered.retain(|_, until| *until > now);
    remembered.insert(authority.to_owned(), until);
}

pub(super) fn forget_tcp(authority: &str) {
    lock(&TCP_ONLY_UNTIL).remove(authority);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[tokio::test(start_paused = true)]
    async fn a_fallback_is_remembered_for_its_time_only() {
        let authority = "remembered.test:1";
        assert!(!remembered_tcp(authority));
        remember_tcp(authority, Instant::now() + ms(300_000));
        tokio::time::advance(ms(299_999)).await;
        assert!(remembered_tcp(authority));
        assert!(!remembered_tcp("other.test:1"));
        tokio::time::advance(ms(1)).await;
        assert!(!remembered_tcp(authority));
        assert!(
            !lock(&TCP_ONLY_UNTIL).contains_key(authority),
            "expired entries go"
        );
        remember_tcp(authority, Instant::now() + ms(300_000));
        forget_tcp(authority);
        assert!(!remembered_tcp(authority));
    }

    #[test]
    fn expired_entries_of_other_servers_go_when_one_is_remembered() {
        let past = Instant::now() - ms(1);
        for n in 0..100 {
            lock(&TCP_ONLY_UNTIL).insert(format!("gone-{n}.test:443"), past);
        }
        remember_tcp("kept.test:443", Instant::now() + ms(300_000));
        let remembered = lock(&TCP_ONLY_UNTIL);
        assert!(
            !remembered.keys().any(|k| k.starts_with("gone-")),
            "expired entries stayed"
        );
        assert!(remembered.contains_key("kept.test:443"));
    }
}
