//! Tasks that cannot outlive their owner: aborted when the guard is dropped.

use tokio::task::JoinHandle;

/// Aborts its tasks when dropped, so that no background task outlives the connection
/// (or request) that started it.
#[derive(Default)]
pub(crate) struct TaskGuard(Vec<JoinHandle<()>>);

impl TaskGuard {
    /// Spawns `fut` as one of the guarded tasks.
    pub(crate) fn spawn<F>(&mut self, fut: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.0.retain(|h| !h.is_finished());
        self.0.push(tokio::spawn(fut));
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}
