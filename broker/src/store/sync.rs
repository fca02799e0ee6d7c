//! Group commit: one thread fsyncs on behalf of every queue. A queue that appended persistent
//! messages hands over its files and the confirm guards waiting on them; the thread takes every
//! job waiting at that moment, fsyncs each distinct file once, and only then drops the guards,
//! which sends the publisher confirms. One fsync thus covers all publishes waiting across
//! connections and queues.

use crate::channel::confirm::ConfirmGuard;
use std::fs::File;
use std::sync::mpsc;
use std::sync::Arc;
use tracing::error;

pub struct SyncJob {
    pub files: Vec<Arc<File>>,
    pub guards: Vec<ConfirmGuard>,
}

/// Handle to the sync thread; cheap to clone. The thread ends when every handle is gone.
#[derive(Clone, Debug)]
pub struct Syncer {
    tx: mpsc::Sender<SyncJob>,
}

impl Syncer {
    pub fn start() -> std::io::Result<Syncer> {
        let (tx, rx) = mpsc::channel::<SyncJob>();
        std::thread::Builder::new()
            .name("warren-sync".into())
            .spawn(move || run(rx))?;
        Ok(Syncer { tx })
    }

    /// Queues a job. If the thread is gone (it never exits while handles live), the guards are
    /// failed so publishers get a nack rather than a confirm nobody checked.
    pub fn submit(&self, job: SyncJob) {
        if let Err(mpsc::SendError(job)) = self.tx.send(job) {
            for g in &job.guards {
                g.fail();
            }
        }
    }
}

fn run(rx: mpsc::Receiver<SyncJob>) {
    let mut jobs = Vec::new();
    let mut files: Vec<Arc<File>> = Vec::new();
    while let Ok(first) = rx.recv() {
        jobs.push(first);
        while let Ok(more) = rx.try_recv() {
            jobs.push(more);
        }
        for job in &mut jobs {
            for f in job.files.drain(..) {
                if !files.iter().any(|known| Arc::ptr_eq(known, &f)) {
                    files.push(f);
                }
            }
        }
        let mut ok = true;
        for f in files.drain(..) {
            if let Err(e) = f.sync_data() {
                error!(error = %e, "fsync failed; nacking the publishes waiting on it");
                ok = false;
            }
        }
        for job in jobs.drain(..) {
            if !ok {
                for g in &job.guards {
                    g.fail();
                }
            }
            drop(job);
        }
    }
}
