//! Background work of the notice service: the status-report consumer and the dispatcher of
//! scheduled notices. (Its copy of the code links is `chukan_runtime::code_linked::SealedCopy`.)

pub mod dispatcher;
pub mod nws_in;
