//! Background work of the notice service: the code-link and status-report consumers and the
//! dispatcher of scheduled notices.

pub mod code_links;
pub mod dispatcher;
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
