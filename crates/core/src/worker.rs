//! Background work a service hands to the binary, with how to stop it.

use futures_util::future::BoxFuture;

/// When a worker is stopped during graceful shutdown: intake first, then consumers (so
/// nothing new arrives while they drain), then the outbox (so what they wrote is sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum StopStage {
    Intake,
    Consumers,
    Outbox,
}

pub struct Worker {
    pub name: String,
    pub stage: StopStage,
    /// Resolves when the worker ends by itself; `Err` means it died and the process should stop.
    pub finished: BoxFuture<'static, anyhow::Result<()>>,
    /// Asks the worker to stop and resolves once it has drained.
    pub stop: Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("name", &self.name)
            .field("stage", &self.stage)
            .finish_non_exhaustive()
    }
}
