//! The agent's request handling: any bytes a client can send, served by a
//! real agent (its connection, dispatch, policy, validation and store) with
//! an in-memory keyring and no network. The agent may refuse, never panic.

#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use signet_agent::access::Access;
use signet_agent::agent::{Agent, Peer};
use signet_agent::config::Config;
use signet_agent::conn::Conn;
use signet_agent::http::Http;
use signet_agent::store::Store;
use signet_agent::store::keyring::StoreChoice;
use tokio::io::AsyncWriteExt;

struct World {
    agent: Arc<Agent>,
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let config = Config {
            // Bounded: tokens added by one input stay for the next.
            max_tokens_per_owner: Some(16),
            ..Config::default()
        };
        let (store, _, _) =
            Store::open(&data, StoreChoice::Memory, config.keyring_timeout()).expect("store");
        let agent = Agent {
            // No askpass: a confirmed token's use is refused at once.
            access: Access::with_askpass(&config, None),
            store,
            config,
            started: Instant::now(),
            socket: dir.path().join("agent.sock"),
            http: Http::offline(),
            proxies: Default::default(),
            // On, with small files, so that recording is fuzzed too.
            audit: signet_agent::audit::Audit::open(signet_agent::audit::Settings {
                dir: data.clone(),
                max_bytes: 64 * 1024,
                keep: 1,
            })
            .expect("audit trail"),
        };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
        World { agent: Arc::new(agent), rt, _dir: dir }
    })
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    w.rt.block_on(async {
        // A real socket pair: the agent's connection is a Unix socket,
        // which can carry file descriptors as well as bytes.
        let (mut client, server) = tokio::net::UnixStream::pair().expect("socket pair");
        let (_stop, shutdown) = tokio::sync::watch::channel(false);
        let mut conn = Conn::new(server, &w.agent.config, shutdown);
        let caller = signet_agent::cmd::Caller::main(Peer { uid: 1000, pid: 1 });
        let feed = async {
            let _ = client.write_all(data).await;
            let _ = client.shutdown().await;
            // Drain what the agent answers so it never blocks on a write.
            let _ = tokio::io::copy(&mut client, &mut tokio::io::sink()).await;
        };
        // Owns the connection, so the agent's side closes when it is done
        // and the feeder's drain ends.
        let serve = async move {
            if conn.handshake().await.is_err() {
                return;
            }
            while let Ok(next) = conn.next_request().await {
                let step = match next {
                    Ok(req) => signet_agent::cmd::dispatch(&w.agent, &caller, req, &mut conn).await,
                    Err(answer) => conn.send(&answer).await,
                };
                if step.is_err() {
                    return;
                }
            }
        };
        tokio::join!(feed, serve);
    });
});
