//! Crash safety: SIGKILL the agent in the middle of a stream of adds,
//! renames and removes, restart it, and check the store's invariant:
//! every token in the index has its secret in the keyring, and every secret
//! of this agent in the keyring belongs to a token in the index.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use signet_client::{Client, NewToken, Secret, TokenKind};
use signet_tests::{Backend, TestEnv, eventually};

/// Operations of churn each round completes before its kill: three is one of
/// each kind (add; add and rename; add and remove), and keeps a slow machine
/// from killing an agent that has done next to nothing.
const MIN_OPS_PER_ROUND: u32 = 3;

/// How long a round may take to reach [`MIN_OPS_PER_ROUND`]: far more than
/// a loaded machine needs, so that only a stuck agent runs into it.
const CHURN_DEADLINE: Duration = Duration::from_secs(60);

/// Adds, renames and removes tokens until the agent goes away, publishing in
/// `done` how many operations it completed. Each secret names the token it was
/// created for, so a mix-up would show.
fn churn(
    socket: std::path::PathBuf,
    round: u32,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU32>,
) -> u32 {
    let Ok(mut c) = Client::connect(Some(&socket)) else { return 0 };
    let mut n = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let name = format!("t{round}-{n}");
        let secret = Secret::from_str_value(&format!("secret-{name}"));
        if c.add(NewToken::new(&name, TokenKind::Bearer, "https://api.example/", secret)).is_err() {
            break;
        }
        if n % 3 == 1 && c.rename(&name, &format!("r{round}-{n}")).is_err() {
            break;
        }
        if n % 3 == 2 && c.remove(&name).is_err() {
            break;
        }
        n += 1;
        done.store(n, Ordering::Relaxed);
    }
    n
}

/// A small deterministic PRNG: kill times vary between rounds but a failing
/// run can be repeated.
fn next(seed: &mut u64) -> u64 {
    *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    *seed >> 33
}

#[test]
fn sigkill_at_any_instant_never_splits_index_and_keyring() {
    kill_rounds(Backend::SecretService, 10);
}

/// The same with the vault file: every kill also lands somewhere in an
/// append to the vault (or a compaction), and the restarted agent must
/// find every token's secret sealed there, and nothing else.
#[test]
fn sigkill_at_any_instant_never_splits_index_and_vault() {
    kill_rounds(Backend::File, 6);
}

fn kill_rounds(backend: Backend, rounds: u32) {
    let Some(mut env) = TestEnv::started(backend) else { return };
    let mut seed = 0x5eed_u64;
    let mut total_ops = 0;
    for round in 0..rounds {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU32::new(0));
        let worker = {
            let (sock, stop, done) = (env.socket(), stop.clone(), done.clone());
            std::thread::spawn(move || churn(sock, round, stop, done))
        };
        // A fixed delay before the kill would let a loaded machine kill an
        // agent that has barely begun: wait for churn, not for time.
        eventually(CHURN_DEADLINE, || {
            done.load(Ordering::Relaxed) >= MIN_OPS_PER_ROUND || worker.is_finished()
        });
        let ops = done.load(Ordering::Relaxed);
        assert!(
            ops >= MIN_OPS_PER_ROUND,
            "round {round}: the churn stopped or stalled after {ops} ops, before the kill:\n{}",
            env.agent_log()
        );
        // Then the random part, so that the kill lands anywhere in an operation.
        std::thread::sleep(Duration::from_millis(next(&mut seed) % 200));
        env.kill_agent();
        stop.store(true, Ordering::Relaxed);
        total_ops += worker.join().expect("worker");

        // Whatever state the kill left on disk, the index is whole JSON.
        let _ = env.index();
        env.start_agent();

        let index = env.index();
        let tokens = index["tokens"].as_array().expect("tokens");
        let mut by_id: BTreeMap<String, String> = BTreeMap::new();
        for t in tokens {
            assert_eq!(t["state"], "active", "recovery left a pending entry: {t}");
            by_id.insert(t["id"].as_str().unwrap().into(), t["name"].as_str().unwrap().into());
        }
        let items = env.keyring_items();
        let keyring_ids: Vec<&String> = items.iter().map(|(id, _)| id).collect();
        let index_ids: Vec<&String> = by_id.keys().collect();
        let mut sorted = keyring_ids.clone();
        sorted.sort();
        assert_eq!(sorted, index_ids, "round {round}: keyring and index disagree");
        for (id, secret) in &items {
            let name = &by_id[id];
            // Renamed tokens keep the secret of their original name.
            let original = name.replacen('r', "t", 1);
            assert_eq!(
                String::from_utf8_lossy(secret),
                format!("secret-{original}"),
                "round {round}"
            );
        }
        // The agent serves exactly what the index holds.
        let listed = env.signet(&["list", "--json"]).json();
        assert_eq!(listed.as_array().unwrap().len(), by_id.len());
    }
    assert!(
        total_ops > 2 * rounds,
        "the churn barely ran ({total_ops} ops): the test proves little"
    );
    eprintln!("crash test ({backend:?}): {total_ops} completed operations over {rounds} SIGKILLs");
}
