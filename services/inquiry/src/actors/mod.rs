//! Background work of the inquiry service: event consumers, the results consumer, the batch
//! sender and the expiry sweep.

pub mod batch_sender;
pub mod events;
pub mod expiry;
pub mod nws_in;

use chukan_mq::HandleError;

pub(crate) fn retry<E>(context: &'static str) -> impl FnOnce(E) -> HandleError
where
    E: std::error::Error + Send + Sync + 'static,
{
    move |e| HandleError::Retry(anyhow::Error::new(e).context(context))
}

pub(crate) fn reject(what: impl std::fmt::Display) -> HandleError {
    HandleError::Reject(anyhow::anyhow!("{what}"))
}
