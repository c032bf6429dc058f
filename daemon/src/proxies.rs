//! The table of running local proxies: who started each, what it serves,
//! and how to stop it. A proxy stops when asked, when the connection it is
//! tied to closes, or when the agent stops; stopping one closes its
//! listener and its open connections and removes its files, so its local
//! credential is worth nothing from then on.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use signet_proto::ProxyInfo;
use tokio::sync::watch;

/// One running proxy.
pub struct Running {
    /// The uid that started it: the only one that may stop or list it.
    pub owner_uid: u32,
    /// What a list shows (never the credential).
    pub info: ProxyInfo,
    /// Files that live as long as the proxy: its Unix socket, its
    /// certificate.
    pub files: Vec<PathBuf>,
    stop: watch::Sender<bool>,
}

/// Every running proxy of the agent.
#[derive(Default)]
pub struct Proxies {
    running: Mutex<HashMap<u64, Running>>,
    next: AtomicU64,
}

/// What a proxy's server waits on: it turns true when the proxy stops.
pub type StopSignal = watch::Receiver<bool>;

impl Proxies {
    /// Records a new proxy; its server must stop when the returned signal
    /// turns true.
    pub fn insert(
        &self,
        owner_uid: u32,
        info: ProxyInfo,
        files: Vec<PathBuf>,
    ) -> (u64, StopSignal) {
        let (stop, signal) = watch::channel(false);
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut info = info;
        info.credential = None;
        if let Ok(mut r) = self.running.lock() {
            r.insert(id, Running { owner_uid, info, files, stop });
        }
        (id, signal)
    }

    /// Stops one proxy by its id (a tied proxy whose connection closed).
    pub fn stop_id(&self, id: u64) {
        let gone = self.running.lock().ok().and_then(|mut r| r.remove(&id));
        if let Some(p) = gone {
            finish(p);
        }
    }

    /// Stops `uid`'s proxies for the token `name`; returns what stopped.
    pub fn stop_named(&self, uid: u32, name: &str) -> Vec<ProxyInfo> {
        let gone: Vec<Running> = match self.running.lock() {
            Ok(mut r) => {
                let ids: Vec<u64> = r
                    .iter()
                    .filter(|(_, p)| p.owner_uid == uid && p.info.name == name)
                    .map(|(id, _)| *id)
                    .collect();
                ids.iter().filter_map(|id| r.remove(id)).collect()
            }
            Err(_) => Vec::new(),
        };
        gone.into_iter()
            .map(|p| {
                let info = p.info.clone();
                finish(p);
                info
            })
            .collect()
    }

    /// `uid`'s running proxies, by token name.
    pub fn list(&self, uid: u32) -> Vec<ProxyInfo> {
        let mut out: Vec<ProxyInfo> = match self.running.lock() {
            Ok(r) => r.values().filter(|p| p.owner_uid == uid).map(|p| p.info.clone()).collect(),
            Err(_) => Vec::new(),
        };
        out.sort_by(|a, b| a.name.cmp(&b.name).then(a.started.cmp(&b.started)));
        out
    }

    /// Stops every proxy: the agent is stopping.
    pub fn stop_all(&self) {
        let all: Vec<Running> = match self.running.lock() {
            Ok(mut r) => r.drain().map(|(_, p)| p).collect(),
            Err(_) => Vec::new(),
        };
        all.into_iter().for_each(finish);
    }
}

fn finish(p: Running) {
    let _ = p.stop.send(true);
    for f in &p.files {
        let _ = std::fs::remove_file(f);
    }
}
